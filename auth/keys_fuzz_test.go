package auth

import (
	"bytes"
	"testing"
)

// FuzzParseAuthorizedKey feeds arbitrary lines to the key parser: it must
// never panic, and a line it accepts must give back, once normalised, the
// same key and from="..." patterns.
func FuzzParseAuthorizedKey(f *testing.F) {
	const ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ2+b4xq6kS3C6Wg1hIHDxhSzjY2g5DX2o9iMc7xQ5w"
	for _, s := range []string{
		"", ed, ed + " me@host", `from="10.0.0.0/8,!10.1.2.3" ` + ed,
		`from="" ` + ed, `from="a\"b" ` + ed, `restrict,no-pty ` + ed, `command="x" ` + ed,
		`from="*.example.com" ` + ed, "ssh-rsa AAAA", "-----BEGIN OPENSSH PRIVATE KEY-----",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		p, err := ParseAuthorizedKey(line)
		if err != nil {
			return
		}
		q, err := ParseAuthorizedKey(p.Line)
		if err != nil {
			t.Fatalf("normalised line %q refused: %v", p.Line, err)
		}
		if !bytes.Equal(q.Key.Marshal(), p.Key.Marshal()) || q.From != p.From {
			t.Fatalf("normalised line %q: got key/from %q, want %q", p.Line, q.From, p.From)
		}
		_ = matchFrom(p.From, "127.0.0.1:22")
	})
}
