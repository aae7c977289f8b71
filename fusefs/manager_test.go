package fusefs_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/fusefs"
)

// TestAcquireShared checks that one user's sessions share one mount, that
// Stats follows holders and open files, and that the mount goes after the
// last release and IdleDelay.
func TestAcquireShared(t *testing.T) {
	o := testOptions(t)
	o.IdleDelay = 300 * time.Millisecond
	g := newGateway(t, o)
	bucket := server.NewBucket(t, "shared")
	g.grants.set("dave", fusefs.Workspace{Slug: "ws", Bucket: bucket})

	const sessions = 4
	dirs := make([]string, sessions)
	releases := make([]func(), sessions)
	errs := make([]error, sessions)
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			dirs[i], releases[i], errs[i] = g.m.Acquire(ctx, "dave")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Acquire %d: %v", i, err)
		}
	}
	for i := range dirs {
		if dirs[i] != dirs[0] {
			t.Errorf("Acquire %d: got dir %s, want %s like the first", i, dirs[i], dirs[0])
		}
	}
	if want := filepath.Join(o.MountRoot, "dave"); dirs[0] != want {
		t.Errorf("dir: got %s, want %s", dirs[0], want)
	}
	if m := mountsUnder(t, o.MountRoot); len(m) != 1 {
		t.Errorf("mounts: got %q, want one", m)
	}

	f, err := os.Create(filepath.Join(dirs[0], "ws", "open.txt"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := f.Write(make([]byte, 5000)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	s, ok := statsOf(g.m, "dave")
	switch {
	case !ok:
		t.Errorf("Stats: no entry for dave")
	case s.Holders != sessions || s.OpenFiles != 1 || s.DirtyBytes != 5000 || s.Dir != dirs[0] || s.ReadOnly:
		t.Errorf("Stats: got %+v, want %d holders, 1 open file, 5000 dirty bytes, dir %s, read-write", s, sessions, dirs[0])
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The kernel sends RELEASE after close returns: allow it a moment.
	err = eventually(5*time.Second, func() error {
		if s, _ := statsOf(g.m, "dave"); s.OpenFiles != 0 || s.DirtyBytes != 0 {
			return fmt.Errorf("got %d open files, %d dirty bytes, want 0 and 0", s.OpenFiles, s.DirtyBytes)
		}
		return nil
	})
	if err != nil {
		t.Errorf("Stats after close: %v", err)
	}

	for _, release := range releases[1:] {
		release()
	}
	time.Sleep(2 * o.IdleDelay)
	if m := mountsUnder(t, o.MountRoot); len(m) != 1 {
		t.Errorf("mounts while one holder is left: got %q, want one", m)
	}
	releases[0]()
	err = eventually(10*time.Second, func() error {
		if m := mountsUnder(t, o.MountRoot); len(m) != 0 {
			return fmt.Errorf("still mounted: %q", m)
		}
		if _, ok := statsOf(g.m, "dave"); ok {
			return fmt.Errorf("still in Stats")
		}
		return nil
	})
	if err != nil {
		t.Errorf("after the last release and IdleDelay: %v", err)
	}

	// Mounted again on demand.
	dir := g.acquire(t, "dave")
	if b, err := os.ReadFile(filepath.Join(dir, "ws", "open.txt")); err != nil || len(b) != 5000 {
		t.Errorf("ReadFile after remount: got %d bytes, %v, want 5000", len(b), err)
	}
}

// statsOf returns the Stats entry of user.
func statsOf(m *fusefs.Manager, user string) (fusefs.ViewStats, bool) {
	for _, s := range m.Stats() {
		if s.User == user {
			return s, true
		}
	}
	return fusefs.ViewStats{}, false
}
