package sftpd

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestParseChecksum(t *testing.T) {
	tests := []struct {
		line string
		want checksumCmd
		ok   bool
	}{
		{"md5sum /ws/a.txt", checksumCmd{"md5sum", "/ws/a.txt"}, true},
		{"sha1sum '/ws/with space.txt'", checksumCmd{"sha1sum", "/ws/with space.txt"}, true},
		{`sha256sum "/ws/q\"uote.txt"`, checksumCmd{"sha256sum", `/ws/q"uote.txt`}, true},
		{`sha512sum /ws/back\ slash`, checksumCmd{"sha512sum", "/ws/back slash"}, true},
		{"md5sum", checksumCmd{"md5sum", ""}, true},
		{"md5sum -", checksumCmd{"md5sum", ""}, true},
		{"md5sum a b", checksumCmd{}, false},
		{"md5sum --help", checksumCmd{}, false},
		{"md5sum /a; rm -rf /", checksumCmd{}, false},
		{"md5sum $(id)", checksumCmd{}, false},
		{`md5sum "$HOME"`, checksumCmd{}, false},
		{"md5sum 'unterminated", checksumCmd{}, false},
		{"md5sum /a | cat", checksumCmd{}, false},
		{"cat /etc/passwd", checksumCmd{}, false},
		{"md5sum *", checksumCmd{}, false},
		{"", checksumCmd{}, false},
	}
	for _, tt := range tests {
		got, ok := parseChecksum(tt.line)
		if ok != tt.ok || got != tt.want {
			t.Errorf("parseChecksum(%q): got %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

// runExec runs command on a new session and returns stdout, stderr and
// the exit status.
func runExec(t *testing.T, c *ssh.Client, command, stdin string) (string, string, int) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	s.Stdin = strings.NewReader(stdin)
	err = s.Run(command)
	code := 0
	if ee, ok := err.(*ssh.ExitError); ok {
		code = ee.ExitStatus()
	} else if err != nil {
		t.Fatalf("run %q: %v", command, err)
	}
	return out.String(), errb.String(), code
}

// TestExecChecksums: the checksum commands answer as coreutils does, for a
// file of the session and for standard input; other commands are refused;
// no path leaves the session root.
func TestExecChecksums(t *testing.T) {
	ts := startServer(t, nil)
	data := bytes.Repeat([]byte("checksum me\n"), 100000)
	if err := os.WriteFile(filepath.Join(ts.root(t), "f.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(ts.root(t)), "secret"), []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := ts.dial(t)
	sums := map[string]func([]byte) string{
		"md5sum":    func(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) },
		"sha1sum":   func(b []byte) string { s := sha1.Sum(b); return hex.EncodeToString(s[:]) },
		"sha256sum": func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) },
		"sha512sum": func(b []byte) string { s := sha512.Sum512(b); return hex.EncodeToString(s[:]) },
	}
	for name, sum := range sums {
		out, errs, code := runExec(t, c, name+" '/f.bin'", "")
		if want := sum(data) + "  /f.bin\n"; out != want || code != 0 {
			t.Errorf("%s /f.bin: got %q (stderr %q, exit %d), want %q", name, out, errs, code, want)
		}
		out, _, code = runExec(t, c, name, "hello")
		if want := sum([]byte("hello")) + "  -\n"; out != want || code != 0 {
			t.Errorf("%s of stdin: got %q (exit %d), want %q", name, out, code, want)
		}
	}
	for _, tt := range []struct{ cmd, stderr string }{
		{"sha256sum /missing", "sha256sum: /missing: No such file or directory"},
		{"sha256sum /", "sha256sum: /: Is a directory"},
		{"sha256sum ../secret", "sha256sum: ../secret: No such file or directory"},
		{"sha256sum /../../secret", "sha256sum: /../../secret: No such file or directory"},
	} {
		out, errs, code := runExec(t, c, tt.cmd, "")
		if out != "" || code != 1 || !strings.Contains(errs, tt.stderr) {
			t.Errorf("%s: got stdout %q, stderr %q, exit %d; want stderr %q, exit 1", tt.cmd, out, errs, code, tt.stderr)
		}
	}
	_, errs, code := runExec(t, c, "cat /f.bin", "")
	if code != 1 || !strings.Contains(errs, sftpOnlyMessage) {
		t.Errorf("cat: got stderr %q, exit %d; want the SFTP-only refusal", errs, code)
	}
	_, _, code = runExec(t, c, "md5sum", strings.Repeat("x", checksumStdinMax+1))
	if code != 1 {
		t.Errorf("md5sum of stdin over %d bytes: exit %d, want 1", checksumStdinMax, code)
	}
}
