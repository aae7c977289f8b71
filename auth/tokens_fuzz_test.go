package auth

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzVerifyToken feeds arbitrary strings to the token parser: it must
// never panic and never accept anything it did not sign.
func FuzzVerifyToken(f *testing.F) {
	key := bytes.Repeat([]byte{0x5a}, hmacKeyLen)
	valid := signToken(key, bytes.Repeat([]byte{1}, tokenRandLen))
	otherKey := signToken(bytes.Repeat([]byte{0xa5}, hmacKeyLen), bytes.Repeat([]byte{1}, tokenRandLen))
	a43 := strings.Repeat("A", 43)
	for _, s := range []string{
		"",
		".",
		a43 + "." + a43,
		a43 + "." + a43 + "=",
		a43 + "=." + a43,
		strings.Repeat("_", 43) + "." + strings.Repeat("-", 43),
		strings.Repeat("+", 43) + "." + strings.Repeat("/", 43),
		a43 + a43 + ".",
		otherKey,
		valid[:len(valid)-1] + "B",
		valid[:len(valid)-1] + "=",
		strings.ToUpper(valid),
		valid + valid,
		"\x00" + valid[1:],
		strings.Repeat("é", 43),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := verifyToken(key, s)
		if s == valid {
			if r != "" {
				t.Fatalf("the one valid token was refused: %q", r)
			}
			return
		}
		if r == "" {
			t.Fatalf("verifyToken accepted %q", s)
		}
		if r != ReasonMalformed && r != ReasonBadSignature {
			t.Fatalf("got reason %q, want malformed or bad-signature", r)
		}
		if r == ReasonBadSignature && !tokenShape.MatchString(s) {
			t.Fatalf("%q has not the token shape but got bad-signature", s)
		}
	})
}
