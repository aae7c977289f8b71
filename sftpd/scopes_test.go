package sftpd

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgate/sftpgate/auth"
)

// scopedClient starts a server where carol's token is scoped to
// docs/reports (r), drop (w) and pub/in (rw), fills her directory, and
// returns an SFTP client logged in with that token and her directory.
func scopedClient(t *testing.T) (*sftp.Client, string) {
	t.Helper()
	cl, _, root := scopedConn(t)
	return cl, root
}

// scopedConn is scopedClient that also returns the SSH connection.
func scopedConn(t *testing.T) (*sftp.Client, *ssh.Client, string) {
	t.Helper()
	scopes, err := parseScopes("node:docs/reports:r", "node:drop:w", "node:pub/in:rw")
	if err != nil {
		t.Fatal(err)
	}
	fa := &fakeAuth{
		users:  map[string]string{"carol": "carol-token"},
		scopes: map[string]auth.Scopes{"carol-token": scopes},
	}
	ts := startServer(t, func(c *Config) { c.Auth = fa })
	root := filepath.Join(ts.mounts.base, "carol")
	for name, data := range map[string]string{
		"docs/reports/q1.txt":     "q1",
		"docs/reports-old/x.txt":  "old",
		"docs/secret.txt":         "secret",
		"priv/p.txt":              "private",
		"drop/seen.txt":           "dropped",
		"pub/in/a.txt":            "a",
		"pub/out/b.txt":           "b",
		"pub/in-other/hidden.txt": "hidden",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := ssh.Dial("tcp", ts.addr, clientConfig("carol", ssh.Password("carol-token")))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	cl, err := sftp.NewClient(conn)
	if err != nil {
		t.Fatalf("sftp client: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl, conn, root
}

func parseScopes(specs ...string) (auth.Scopes, error) {
	var ss auth.Scopes
	for _, s := range specs {
		sc, err := auth.ParseScope(s)
		if err != nil {
			return nil, err
		}
		ss = append(ss, sc)
	}
	return ss, nil
}

func names(t *testing.T, cl *sftp.Client, dir string) []string {
	t.Helper()
	fis, err := cl.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir(%q): %v", dir, err)
	}
	var out []string
	for _, fi := range fis {
		out = append(out, fi.Name())
	}
	slices.Sort(out)
	return out
}

func TestScopesListOnlyTheWay(t *testing.T) {
	cl, _ := scopedClient(t)
	for dir, want := range map[string][]string{
		"/":             {"docs", "drop", "pub"},
		"/docs":         {"reports"},
		"/pub":          {"in"},
		"/docs/reports": {"q1.txt"},
		"/drop":         {"seen.txt"},
	} {
		if got := names(t, cl, dir); !slices.Equal(got, want) {
			t.Errorf("ReadDir(%q) = %q, want %q", dir, got, want)
		}
	}
	for _, p := range []string{"/", "/docs", "/pub", "/docs/reports", "/docs/reports/q1.txt"} {
		fi, err := cl.Stat(p)
		if err != nil {
			t.Fatalf("Stat(%q): %v", p, err)
		}
		if fi.Mode()&0o222 != 0 {
			t.Errorf("Stat(%q) mode %v, want no write bits", p, fi.Mode())
		}
	}
	if fi, err := cl.Stat("/pub/in"); err != nil || fi.Mode()&0o200 == 0 {
		t.Errorf("Stat(/pub/in) = %v, %v; want a writable directory", fi, err)
	}
	for _, p := range []string{"/priv", "/priv/p.txt", "/docs/secret.txt", "/docs/reports-old", "/docs/reports-old/x.txt", "/pub/out", "/pub/in-other"} {
		if _, err := cl.Stat(p); statusCode(err) != fxNoSuchFile {
			t.Errorf("Stat(%q) = %v, want no such file", p, err)
		}
		if _, err := cl.ReadDir(p); statusCode(err) != fxNoSuchFile {
			t.Errorf("ReadDir(%q) = %v, want no such file", p, err)
		}
	}
}

func TestScopeReadOnly(t *testing.T) {
	cl, root := scopedClient(t)
	f, err := cl.Open("/docs/reports/q1.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil || string(b) != "q1" {
		t.Fatalf("read = %q, %v; want q1", b, err)
	}
	for _, p := range []string{"/docs/secret.txt", "/priv/p.txt", "/docs/reports-old/x.txt"} {
		if _, err := cl.Open(p); statusCode(err) != fxNoSuchFile {
			t.Errorf("Open(%q) = %v, want no such file", p, err)
		}
	}
	denied := map[string]func() error{
		"create in scope":     func() error { _, err := cl.Create("/docs/reports/new.txt"); return err },
		"create in parent":    func() error { _, err := cl.Create("/docs/new.txt"); return err },
		"create at root":      func() error { _, err := cl.Create("/new.txt"); return err },
		"remove":              func() error { return cl.Remove("/docs/reports/q1.txt") },
		"mkdir in scope":      func() error { return cl.Mkdir("/docs/reports/d") },
		"mkdir in parent":     func() error { return cl.Mkdir("/docs/d") },
		"chmod":               func() error { return cl.Chmod("/docs/reports/q1.txt", 0o600) },
		"rename in ro scope":  func() error { return cl.Rename("/docs/reports/q1.txt", "/docs/reports/q2.txt") },
		"truncate":            func() error { return cl.Truncate("/docs/reports/q1.txt", 0) },
		"remove parent":       func() error { return cl.RemoveDirectory("/docs") },
		"posix-rename parent": func() error { return cl.PosixRename("/docs/reports", "/docs/r2") },
	}
	for name, op := range denied {
		if err := op(); statusCode(err) != fxPermissionDenied {
			t.Errorf("%s: %v, want permission denied", name, err)
		}
	}
	if _, err := cl.Create("/priv/x.txt"); statusCode(err) != fxNoSuchFile {
		t.Errorf("Create(/priv/x.txt) = %v, want no such file", err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "docs/reports/q1.txt")); err != nil || string(b) != "q1" {
		t.Errorf("q1.txt on disk = %q, %v; want it untouched", b, err)
	}
	if _, err := os.Stat(filepath.Join(root, "docs/new.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("docs/new.txt on disk: %v, want none", err)
	}
}

func TestScopeWriteOnly(t *testing.T) {
	cl, root := scopedClient(t)
	// pkg/sftp's Create opens read-write: the open works, reads do not.
	f, err := cl.Create("/drop/up.txt")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := f.Write([]byte("uploaded")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if _, err := f.ReadAt(make([]byte, 4), 0); statusCode(err) != fxPermissionDenied {
		t.Errorf("ReadAt on the upload handle = %v, want permission denied", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "drop/up.txt")); err != nil || string(b) != "uploaded" {
		t.Fatalf("drop/up.txt on disk = %q, %v; want uploaded", b, err)
	}
	for _, p := range []string{"/drop/up.txt", "/drop/seen.txt"} {
		if _, err := cl.Open(p); statusCode(err) != fxPermissionDenied {
			t.Errorf("Open(%q) = %v, want permission denied", p, err)
		}
	}
	if fi, err := cl.Stat("/drop/up.txt"); err != nil || fi.Size() != 8 {
		t.Errorf("Stat = %v, %v; want size 8", fi, err)
	}
	if err := cl.Mkdir("/drop/sub"); err != nil {
		t.Errorf("Mkdir: %v", err)
	}
	if err := cl.Rename("/drop/up.txt", "/drop/sub/up.txt"); err != nil {
		t.Errorf("Rename within the scope: %v", err)
	}
	if err := cl.Remove("/drop/sub/up.txt"); err != nil {
		t.Errorf("Remove: %v", err)
	}
}

func TestScopeRenameAcrossEdgeRefused(t *testing.T) {
	cl, root := scopedClient(t)
	tests := []struct{ from, to string }{
		{"/pub/in/a.txt", "/drop/a.txt"},           // into another writable scope
		{"/pub/in/a.txt", "/pub/a.txt"},            // into the parent
		{"/pub/in/a.txt", "/pub/out/a.txt"},        // into a hidden directory
		{"/pub/in/a.txt", "/docs/reports/a.txt"},   // into a read-only scope
		{"/pub/in", "/pub/in2"},                    // the scope's root itself
		{"/docs/reports/q1.txt", "/pub/in/q1.txt"}, // out of a read-only scope
		{"/drop/seen.txt", "/pub/in/seen.txt"},     // out of a write-only scope
	}
	for _, tt := range tests {
		for name, rename := range map[string]func(string, string) error{"rename": cl.Rename, "posix-rename": cl.PosixRename} {
			if err := rename(tt.from, tt.to); statusCode(err) != fxPermissionDenied {
				t.Errorf("%s(%q, %q) = %v, want permission denied", name, tt.from, tt.to, err)
			}
		}
	}
	for _, p := range []string{"pub/in/a.txt", "docs/reports/q1.txt", "drop/seen.txt"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("%s after refused renames: %v", p, err)
		}
	}
	if err := cl.Rename("/pub/in/a.txt", "/pub/in/c.txt"); err != nil {
		t.Errorf("rename within the scope: %v", err)
	}
	f, err := cl.Open("/pub/in/c.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b, err := io.ReadAll(f); err != nil || !bytes.Equal(b, []byte("a")) {
		t.Errorf("read renamed file = %q, %v; want a", b, err)
	}
}

func TestScopeChecksum(t *testing.T) {
	_, conn, _ := scopedConn(t)
	if out, errs, code := runExec(t, conn, "md5sum /docs/reports/q1.txt", ""); code != 0 || !strings.HasSuffix(out, "  /docs/reports/q1.txt\n") {
		t.Errorf("md5sum in a read scope: got %q (stderr %q, exit %d), want a sum", out, errs, code)
	}
	for _, tt := range []struct{ cmd, stderr string }{
		{"md5sum /docs/secret.txt", "No such file or directory"},
		{"md5sum /priv/p.txt", "No such file or directory"},
		{"md5sum /drop/seen.txt", "Permission denied"},
	} {
		out, errs, code := runExec(t, conn, tt.cmd, "")
		if out != "" || code != 1 || !strings.Contains(errs, tt.stderr) {
			t.Errorf("%s: got stdout %q, stderr %q, exit %d; want stderr %q, exit 1", tt.cmd, out, errs, code, tt.stderr)
		}
	}
}
