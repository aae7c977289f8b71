package sftpd

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestChroot(t *testing.T) {
	ts := startServer(t, nil)
	cl := ts.sftp(t)
	root := ts.root(t)
	outside := filepath.Join(ts.mounts.base, "secret")
	const secret = "outside secret"
	if err := os.WriteFile(outside, []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "inside"), []byte("inside"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"rel-escape": "../secret",
		"abs-escape": outside,
		"etc":        "/etc/passwd",
		"dirlink":    "..",
		"rootlink":   "/",
	} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}

	read := func(p string) (string, error) {
		f, err := cl.Open(p)
		if err != nil {
			return "", err
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		return string(b), err
	}

	t.Run("paths", func(t *testing.T) {
		for _, p := range []string{"..", "/..", "../secret", "/../secret", "../../etc/passwd", "/etc/passwd", "/../../../../etc/passwd", "./../secret"} {
			got, err := read(p)
			if err == nil && (got == secret || strings.Contains(got, "root:")) {
				t.Errorf("read %q: got outside content %q", p, got)
			}
			if err == nil && p != ".." && p != "/.." {
				t.Errorf("read %q: got %q, want an error", p, got)
			}
		}
		if got, err := read("/../inside"); err != nil || got != "inside" {
			t.Errorf("read /../inside: got %q, %v, want the file inside", got, err)
		}
	})
	t.Run("symlinks", func(t *testing.T) {
		for _, p := range []string{"/rel-escape", "/abs-escape", "/etc", "/dirlink/secret", "/rootlink/etc/passwd"} {
			got, err := read(p)
			if err == nil {
				t.Errorf("read %q: got %q, want refused", p, got)
				continue
			}
			if code := statusCode(err); code != fxPermissionDenied && code != fxNoSuchFile {
				t.Errorf("read %q: got %v, want permission denied or no such file", p, err)
			}
		}
		if _, err := cl.Stat("/rel-escape"); statusCode(err) != fxPermissionDenied {
			t.Errorf("stat through escaping link: got %v, want permission denied", err)
		}
		if _, err := cl.ReadDir("/dirlink"); err == nil {
			t.Error("readdir through a link to ..: got a listing, want refused")
		}
	})
	t.Run("writes through links", func(t *testing.T) {
		f, err := cl.OpenFile("/rel-escape", os.O_WRONLY|os.O_TRUNC|os.O_CREATE)
		if err == nil {
			f.Write([]byte("pwned"))
			f.Close()
			t.Error("open for write through an escaping link: got a handle")
		}
		if err := cl.Mkdir("/dirlink/newdir"); err == nil {
			t.Error("mkdir through a link to ..: got ok")
		}
		if err := cl.Truncate("/abs-escape", 0); err == nil {
			t.Error("truncate through an escaping link: got ok")
		}
		if err := cl.Chmod("/rel-escape", 0o777); err == nil {
			t.Error("chmod through an escaping link: got ok")
		}
		if err := cl.Rename("/inside", "/dirlink/moved"); err == nil {
			t.Error("rename into a link to ..: got ok")
		}
		if err := cl.Remove("/dirlink/secret"); err == nil {
			t.Error("remove through a link to ..: got ok")
		}
		if got, err := os.ReadFile(outside); err != nil || string(got) != secret {
			t.Errorf("outside file: got %q, %v, want it untouched", got, err)
		}
		for _, p := range []string{"newdir", "moved"} {
			if _, err := os.Lstat(filepath.Join(ts.mounts.base, p)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s created outside the root: %v", p, err)
			}
		}
	})
	t.Run("root listing", func(t *testing.T) {
		for _, p := range []string{"/", "..", "/../.."} {
			fis, err := cl.ReadDir(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, fi := range fis {
				if fi.Name() == "secret" || fi.Name() == "alice" {
					t.Errorf("listing %q shows %q from outside the root", p, fi.Name())
				}
			}
		}
	})
}

func TestCloseErrorReachesClient(t *testing.T) {
	t.Cleanup(func() { closeFile = (*os.File).Close })
	closeFile = func(f *os.File) error {
		err := f.Close()
		if strings.HasSuffix(f.Name(), "fail-upload") {
			return &os.PathError{Op: "close", Path: f.Name(), Err: syscall.EIO}
		}
		if strings.HasSuffix(f.Name(), "full") {
			return &os.PathError{Op: "close", Path: f.Name(), Err: syscall.ENOSPC}
		}
		return err
	}
	ts := startServer(t, nil)
	cl := ts.sftp(t)
	tests := []struct{ name, msg string }{
		{"/fail-upload", "input/output error"},
		{"/full", "no space left on device"},
		{"/fine", ""},
	}
	for _, tt := range tests {
		f, err := cl.Create(tt.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("data")); err != nil {
			t.Fatal(err)
		}
		err = f.Close()
		if tt.msg == "" {
			if err != nil {
				t.Errorf("%s: close got %v, want nil", tt.name, err)
			}
			continue
		}
		if statusCode(err) != fxFailure || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: close got %v, want failure %q", tt.name, err, tt.msg)
		}
	}
	if logs := ts.log.String(); !strings.Contains(logs, "path=/fail-upload") || !strings.Contains(logs, "input/output error") {
		t.Errorf("failed upload not in the audit log: %q", logs)
	}
}

func FuzzRootRel(f *testing.F) {
	for _, s := range []string{"", ".", "/", "..", "/..", "../../etc/passwd", "/a/b/../../..", "a//b/", "\x00", "/./.././x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got := rootRel(p)
		if got == "" || strings.HasPrefix(got, "/") {
			t.Fatalf("rootRel(%q) = %q, want a non-empty relative name", p, got)
		}
		if got == ".." || strings.HasPrefix(got, "../") || strings.Contains(got, "/../") || strings.HasSuffix(got, "/..") {
			t.Fatalf("rootRel(%q) = %q climbs out", p, got)
		}
		if sp := sessionPath(p); !strings.HasPrefix(sp, "/") || rootRel(sp) != got {
			t.Fatalf("sessionPath(%q) = %q does not agree with rootRel %q", p, sp, got)
		}
	})
}
