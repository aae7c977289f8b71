package fusefs_test

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestControlNames checks that a name with a control character (C0, DEL,
// C1) or invalid UTF-8 cannot be created on a mount: create, mkdir,
// rename and mknod fail with EINVAL and nothing reaches the store.
func TestControlNames(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	src := filepath.Join(w.dir, "src.txt")
	if err := os.WriteFile(src, []byte("x"), 0o644); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	for _, name := range []string{"evil\nfake-entry.txt", "esc\x1b[2J", "del\x7f", "c1\u0085", "tab\tname", "bad\xff"} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(w.dir, name)
			wantErrno(t, "create", os.WriteFile(p, []byte("x"), 0o644), syscall.EINVAL)
			wantErrno(t, "mkdir", os.Mkdir(p, 0o755), syscall.EINVAL)
			wantErrno(t, "rename", os.Rename(src, p), syscall.EINVAL)
			wantErrno(t, "mknod", unix.Mknod(p, unix.S_IFREG|0o644, 0), syscall.EINVAL)
		})
	}
	if got := readDirNames(t, w.dir); !slices.Equal(got, []string{"src.txt"}) {
		t.Errorf("entries: got %q, want [src.txt]", got)
	}
	if got := listKeys(t, w.bucket, ""); !slices.Equal(got, []string{w.key("src.txt")}) {
		t.Errorf("keys: got %q, want only src.txt", got)
	}
}
