package fusefs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestGetxattrAskedOncePerMount writes a file in 200 pwrites through a
// real mount and checks that the kernel asked the daemon for an extended
// attribute at most once (the security.capability check before a write,
// answered ENOSYS, which the kernel remembers for the mount), not once
// per write, and that reading and setting an attribute still fail with
// ENOTSUP.
func TestGetxattrAskedOncePerMount(t *testing.T) {
	m := startCounters(t, time.Minute)
	dir, release, err := m.Acquire(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	name := filepath.Join(dir, "files", "x.bin")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	const writes = 200
	piece := make([]byte, 32<<10)
	for i := range writes {
		if _, err := f.WriteAt(piece, int64(i*len(piece))); err != nil {
			f.Close()
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	got := opCount(m.Counters(), "getxattr", syscall.ENOTSUP)
	if got != 1 {
		// Zero would mean the kernel no longer asks (nothing to save);
		// more than one, that it asks on every write.
		t.Errorf("getxattr answered %d times for %d writes, want 1", got, writes)
	}
	if _, err := unix.Getxattr(name, "user.test", make([]byte, 64)); !errors.Is(err, syscall.ENOTSUP) {
		t.Errorf("getxattr: got %v, want ENOTSUP", err)
	}
	if err := unix.Setxattr(name, "user.test", []byte("v"), 0); !errors.Is(err, syscall.ENOTSUP) {
		t.Errorf("setxattr: got %v, want ENOTSUP", err)
	}
	if got := opCount(m.Counters(), "getxattr", syscall.ENOTSUP); got > 1 {
		t.Errorf("getxattr answered %d times after an explicit getxattr, want 1 (the kernel answers itself)", got)
	}
}
