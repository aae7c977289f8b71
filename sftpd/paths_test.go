package sftpd

import (
	"errors"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/pkg/sftp"
)

func TestCheckPath(t *testing.T) {
	tests := []struct {
		name, path string
		want       error
		msg        string
	}{
		{"plain", "/ws/a b/c.txt", nil, ""},
		{"non-ASCII letters", "/ws/été/日本.txt", nil, ""},
		{"no-break space", "/ws/a\u00a0b", nil, ""},
		{"newline", "/ws/evil\nfake-entry.txt", errNameControl, "file name contains a control character"},
		{"tab", "/ws/a\tb", errNameControl, "file name contains a control character"},
		{"escape sequence", "/ws/\x1b[2J", errNameControl, "file name contains a control character"},
		{"NUL", "/ws/a\x00b", errNameControl, "file name contains a control character"},
		{"DEL", "/ws/a\x7f", errNameControl, "file name contains a control character"},
		{"C1 NEL", "/ws/a\u0085", errNameControl, "file name contains a control character"},
		{"C1 CSI", "/ws/a\u009b31m", errNameControl, "file name contains a control character"},
		{"in a directory", "/ws/d\r/f", errNameControl, "file name contains a control character"},
		{"invalid UTF-8", "/ws/a\xffb", errNameUTF8, "file name is not valid UTF-8"},
		{"truncated UTF-8", "/ws/a\xc3", errNameUTF8, "file name is not valid UTF-8"},
		{"C1 as a raw byte", "/ws/a\x85", errNameUTF8, "file name is not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPath(tt.path)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("checkPath(%q): got %v, want %v", tt.path, err, tt.want)
			}
			if err == nil {
				return
			}
			st := toStatus(err)
			if !errors.Is(st, sftp.ErrSSHFxFailure) || st.Error() != tt.msg {
				t.Errorf("toStatus: got %v (%q), want SSH_FX_FAILURE %q", st, st.Error(), tt.msg)
			}
		})
	}
}

// FuzzCheckPath checks that checkPath accepts exactly the valid UTF-8
// paths without control characters.
func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"/ws/a", "a\nb", "\x1b[2J", "\u0085", "\xff", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		ok := utf8.ValidString(p)
		for _, r := range p {
			if unicode.IsControl(r) {
				ok = false
			}
		}
		if err := checkPath(p); (err == nil) != ok {
			t.Errorf("checkPath(%q): got %v, want ok %v", p, err, ok)
		}
	})
}
