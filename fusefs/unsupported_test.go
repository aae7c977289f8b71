package fusefs_test

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUnsupported checks that symlinks, hard links, special files and
// xattrs fail with EPERM or ENOTSUP, never silently.
func TestUnsupported(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	file := filepath.Join(w.dir, "file.txt")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	tests := []struct {
		name string
		op   func() error
	}{
		{"symlink", func() error { return os.Symlink("file.txt", filepath.Join(w.dir, "sym")) }},
		{"link", func() error { return os.Link(file, filepath.Join(w.dir, "hard")) }},
		{"mkfifo", func() error { return unix.Mkfifo(filepath.Join(w.dir, "fifo"), 0o644) }},
		{"mknod char", func() error {
			return unix.Mknod(filepath.Join(w.dir, "null"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3)))
		}},
		{"setxattr", func() error { return unix.Setxattr(file, "user.test", []byte("v"), 0) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErrno(t, tt.name, tt.op(), syscall.EPERM, syscall.ENOTSUP)
		})
	}
	if got := readDirNames(t, w.dir); !slices.Equal(got, []string{"file.txt"}) {
		t.Errorf("entries: got %q, want [file.txt]", got)
	}
	if got := listKeys(t, w.bucket, ""); !slices.Equal(got, []string{w.key("file.txt")}) {
		t.Errorf("keys: got %q, want only file.txt", got)
	}
}
