package fusefs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestKnownDirLookups creates files in a directory this view made (mkdir)
// and in one it listed completely and writes into: within the attribute
// TTL no name is
// looked up in the store (no HEAD, no listing of "name/"); names that
// exist still resolve; an object put directly shows within the TTL; and
// once the TTL passed, the directory is listed again.
func TestKnownDirLookups(t *testing.T) {
	const ttl = 2 * time.Second
	o := testOptions(t)
	o.AttrTTL = ttl
	w := mountWorkspace(t, o)
	ct := w.g.counter

	create := func(t *testing.T, rel string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(w.dir, rel), []byte("data of "+rel), 0o644); err != nil {
			t.Fatalf("WriteFile(%s): %v", rel, err)
		}
		if got := string(mustGetObject(t, w.bucket, w.key(rel))); got != "data of "+rel {
			t.Fatalf("object %s: got %q, want %q", rel, got, "data of "+rel)
		}
	}
	// within runs f and reports whether it ended within the TTL from start
	// (on a slow machine it may not, and the lookups are then due).
	within := func(start time.Time, f func()) bool {
		f()
		return time.Since(start) < ttl
	}

	t.Run("mkdir", func(t *testing.T) {
		start := time.Now()
		if err := os.Mkdir(filepath.Join(w.dir, "d"), 0o755); err != nil {
			t.Fatalf("Mkdir: %v", err)
		}
		var rels []string
		in := within(start, func() {
			for i := range 5 {
				rel := fmt.Sprintf("d/f%d", i)
				create(t, rel)
				rels = append(rels, rel)
			}
		})
		if !in {
			t.Fatalf("5 files took longer than the TTL %v: the machine is too slow for this test", ttl)
		}
		for _, rel := range rels {
			if n := ct.lookupsOf(w.bucket, w.key(rel)); n != 0 {
				t.Errorf("lookups of %s: got %d, want 0", rel, n)
			}
		}
		// Created names resolve (the kernel may also have them cached).
		if fi, err := os.Stat(filepath.Join(w.dir, "d/f3")); err != nil || fi.Size() != int64(len("data of d/f3")) {
			t.Errorf("Stat(d/f3): got %v, %v; want size %d", fi, err, len("data of d/f3"))
		}
	})

	t.Run("listing", func(t *testing.T) {
		putObject(t, w.bucket, w.key("e/a"), []byte("a"))
		putObject(t, w.bucket, w.key("e/sub/b"), []byte("b"))
		start := time.Now()
		if names := readDirNames(t, filepath.Join(w.dir, "e")); len(names) != 2 {
			t.Fatalf("entries of e: got %v, want [a sub]", names)
		}
		// A directory only read shows at once what others write.
		putObject(t, w.bucket, w.key("e/put"), []byte("put"))
		if b, err := os.ReadFile(filepath.Join(w.dir, "e/put")); err != nil || string(b) != "put" {
			t.Fatalf("ReadFile(e/put) just after the put: got %q, %v; want %q", b, err, "put")
		}
		// The first file this view writes there is looked up, the next not.
		in := within(start, func() {
			create(t, "e/first")
			create(t, "e/new")
		})
		if !in {
			t.Fatalf("two files took longer than the TTL %v", ttl)
		}
		if n := ct.lookupsOf(w.bucket, w.key("e/new")); n != 0 {
			t.Errorf("lookups of e/new: got %d, want 0", n)
		}
		if b, err := os.ReadFile(filepath.Join(w.dir, "e/a")); err != nil || string(b) != "a" {
			t.Errorf("ReadFile(e/a): got %q, %v; want %q", b, err, "a")
		}
		// A name found by a lookup stays found, whatever the kernel forgets.
		if b, err := os.ReadFile(filepath.Join(w.dir, "e/put")); err != nil || string(b) != "put" {
			t.Errorf("ReadFile(e/put) again: got %q, %v; want %q", b, err, "put")
		}
		if fi, err := os.Stat(filepath.Join(w.dir, "e/sub")); err != nil || !fi.IsDir() {
			t.Errorf("Stat(e/sub): got %v, %v; want a directory", fi, err)
		}
	})

	t.Run("coherence", func(t *testing.T) {
		// Written behind the view's back: visible once the TTL passed.
		if _, err := os.Stat(filepath.Join(w.dir, "d/other")); !os.IsNotExist(err) {
			t.Fatalf("Stat(d/other) before the put: got %v, want ENOENT", err)
		}
		putObject(t, w.bucket, w.key("d/other"), []byte("other"))
		err := eventually(3*ttl, func() error {
			_, err := os.Stat(filepath.Join(w.dir, "d/other"))
			return err
		})
		if err != nil {
			t.Errorf("Stat(d/other) after the put: %v", err)
		}
	})

	t.Run("expires", func(t *testing.T) {
		// Past the TTL, the directory is listed again (one request) rather
		// than the new name looked up.
		time.Sleep(ttl + 200*time.Millisecond)
		before := ct.listingsOf(w.bucket, w.key("d/"))
		create(t, "d/late")
		if n := ct.lookupsOf(w.bucket, w.key("d/late")); n != 0 {
			t.Errorf("lookups of d/late: got %d, want 0", n)
		}
		if n := ct.listingsOf(w.bucket, w.key("d/")) - before; n < 1 {
			t.Errorf("listings of d/ after the TTL: got %d, want at least 1", n)
		}
		if fi, err := os.Stat(filepath.Join(w.dir, "d/other")); err != nil || fi.Size() != int64(len("other")) {
			t.Errorf("Stat(d/other): got %v, %v; want size %d", fi, err, len("other"))
		}
	})
}
