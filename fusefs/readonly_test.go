package fusefs_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/fusefs"
)

// writePaths are the write operations that a read-only place must refuse,
// each run on a directory holding file.txt, sub/ and sub/inner.txt.
var writePaths = []struct {
	name string
	op   func(dir string) error
}{
	{"create", func(d string) error {
		f, err := os.OpenFile(filepath.Join(d, "new.txt"), os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			f.Close()
		}
		return err
	}},
	{"open for write", func(d string) error {
		f, err := os.OpenFile(filepath.Join(d, "file.txt"), os.O_WRONLY, 0)
		if err == nil {
			f.Close()
		}
		return err
	}},
	{"open read-write", func(d string) error {
		f, err := os.OpenFile(filepath.Join(d, "file.txt"), os.O_RDWR, 0)
		if err == nil {
			f.Close()
		}
		return err
	}},
	{"open with O_TRUNC", func(d string) error {
		f, err := os.OpenFile(filepath.Join(d, "file.txt"), os.O_WRONLY|os.O_TRUNC, 0)
		if err == nil {
			f.Close()
		}
		return err
	}},
	{"truncate", func(d string) error { return os.Truncate(filepath.Join(d, "file.txt"), 1) }},
	{"mkdir", func(d string) error { return os.Mkdir(filepath.Join(d, "newdir"), 0o755) }},
	{"rmdir", func(d string) error { return syscall.Rmdir(filepath.Join(d, "sub")) }},
	{"unlink", func(d string) error { return syscall.Unlink(filepath.Join(d, "file.txt")) }},
	{"rename file", func(d string) error {
		return os.Rename(filepath.Join(d, "file.txt"), filepath.Join(d, "moved.txt"))
	}},
	{"rename dir", func(d string) error { return os.Rename(filepath.Join(d, "sub"), filepath.Join(d, "sub2")) }},
	{"chmod", func(d string) error { return os.Chmod(filepath.Join(d, "file.txt"), 0o600) }},
	{"utimes", func(d string) error {
		return os.Chtimes(filepath.Join(d, "file.txt"), time.Unix(1, 0), time.Unix(1, 0))
	}},
}

// fillReadOnly puts file.txt and sub/inner.txt under prefix.
func fillReadOnly(t *testing.T, bucket, prefix string) []string {
	t.Helper()
	putObject(t, bucket, prefix+"file.txt", []byte("read me"))
	putObject(t, bucket, prefix+"sub/inner.txt", []byte("inner"))
	return listKeys(t, bucket, "")
}

// checkReadOnly runs every write path on dir (EROFS each), then checks that
// reads work and that nothing changed in the bucket.
func checkReadOnly(t *testing.T, dir, bucket string, keys []string) {
	t.Helper()
	for _, tt := range writePaths {
		t.Run(tt.name, func(t *testing.T) {
			wantErrno(t, tt.name, tt.op(dir), syscall.EROFS)
		})
	}
	if b, err := os.ReadFile(filepath.Join(dir, "file.txt")); err != nil || string(b) != "read me" {
		t.Errorf("ReadFile(file.txt): got %q, %v, want %q", b, err, "read me")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "sub", "inner.txt")); err != nil || string(b) != "inner" {
		t.Errorf("ReadFile(sub/inner.txt): got %q, %v, want %q", b, err, "inner")
	}
	if got, want := readDirNames(t, dir), []string{"file.txt", "sub"}; !slices.Equal(got, want) {
		t.Errorf("ReadDir: got %q, want %q", got, want)
	}
	if got := listKeys(t, bucket, ""); !slices.Equal(got, keys) {
		t.Errorf("keys after the refused writes: got %q, want %q", got, keys)
	}
}

// TestReadOnlyWorkspace checks that a read-only grant refuses every write
// path with EROFS while reads work, next to a read-write workspace.
func TestReadOnlyWorkspace(t *testing.T) {
	g := newGateway(t, testOptions(t))
	bucket := server.NewBucket(t, "ro")
	keys := fillReadOnly(t, bucket, "shared/")
	g.grants.set("alice",
		fusefs.Workspace{Slug: "common", Bucket: bucket, Prefix: "shared/", ReadOnly: true},
		fusefs.Workspace{Slug: "mine", Bucket: server.NewBucket(t, "rw"), Prefix: ""},
	)
	root := g.acquire(t, "alice")
	checkReadOnly(t, filepath.Join(root, "common"), bucket, keys)
	if err := os.WriteFile(filepath.Join(root, "mine", "ok.txt"), []byte("ok"), 0o644); err != nil {
		t.Errorf("write in the read-write workspace: %v", err)
	}
}

// TestReadOnlyMount checks AcquireWith(ReadOnly) on a read-write grant.
func TestReadOnlyMount(t *testing.T) {
	g := newGateway(t, testOptions(t))
	bucket := server.NewBucket(t, "romount")
	keys := fillReadOnly(t, bucket, "")
	g.grants.set("bob", fusefs.Workspace{Slug: "ws", Bucket: bucket})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root, release, err := g.m.AcquireWith(ctx, "bob", fusefs.MountOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("AcquireWith: %v", err)
	}
	t.Cleanup(release)
	checkReadOnly(t, filepath.Join(root, "ws"), bucket, keys)
	var ro bool
	for _, s := range g.m.Stats() {
		if s.User == "bob" {
			ro = s.ReadOnly
		}
	}
	if !ro {
		t.Errorf("Stats()[bob].ReadOnly: got false, want true")
	}
}
