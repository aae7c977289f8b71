package auth

import (
	"strings"
	"testing"
)

// FuzzParseScope checks that whatever ParseScope accepts is a clean scope
// that prints back to itself: a slug, a path without "..", "." or empty
// components, and a permission.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"node:docs/reports:r", "node:docs:rw", "node:a/./b//c/:w", "node:a/../b:r", "node::r", "node:a/b:c:r", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := ParseScope(s)
		if err != nil {
			return
		}
		if !sc.Read && !sc.Write {
			t.Fatalf("ParseScope(%q) = %+v: no permission", s, sc)
		}
		if ValidateSlug(sc.Workspace) != nil {
			t.Fatalf("ParseScope(%q) = %+v: bad workspace", s, sc)
		}
		if sc.Path != "" {
			for _, c := range strings.Split(sc.Path, "/") {
				if c == "" || c == "." || c == ".." {
					t.Fatalf("ParseScope(%q) = %+v: path component %q", s, sc, c)
				}
			}
		}
		back, err := ParseScope(sc.String())
		if err != nil || back != sc {
			t.Fatalf("ParseScope(%q) = %+v, %v; want %+v", sc.String(), back, err, sc)
		}
	})
}
