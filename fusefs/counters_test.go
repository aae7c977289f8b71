package fusefs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// startCounters starts startManager's manager with the given lifespan and
// no idle unmount during the test.
func startCounters(t *testing.T, lifespan time.Duration) *Manager {
	t.Helper()
	m, _, _ := startManager(t, func(o *Options) {
		o.Lifespan, o.IdleDelay = lifespan, 10*time.Minute
	})
	return m
}

// procMounts returns the mount points at or under root, from /proc/mounts.
func procMounts(t *testing.T, root string) []string {
	t.Helper()
	f, err := os.Open("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		if p := unescapeMountinfo(fields[1]); p == root || strings.HasPrefix(p, root+"/") {
			out = append(out, p)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// opCount returns the count of op answered with e.
func opCount(c Counters, op string, e syscall.Errno) int64 {
	for _, oc := range c.Ops {
		if oc.Op == op && oc.Errno == e {
			return oc.N
		}
	}
	return 0
}

// aliceStats returns the stats of alice's read-write view.
func aliceStats(t *testing.T, m *Manager) ViewStats {
	t.Helper()
	for _, vs := range m.Stats() {
		if vs.User == "alice" && !vs.ReadOnly {
			return vs
		}
	}
	t.Fatalf("stats: no read-write view of alice in %+v", m.Stats())
	return ViewStats{}
}

func TestCountersOpsWritebackAndJanitor(t *testing.T) {
	const lifespan = 2 * time.Second
	m := startCounters(t, lifespan)
	dir, release, err := m.Acquire(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ws := filepath.Join(dir, "files")

	if _, err := os.Stat(filepath.Join(ws, "missing")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("stat missing: got %v, want ENOENT", err)
	}

	data := bytes.Repeat([]byte("counters"), 4096) // 32 KiB
	f, err := os.Create(filepath.Join(ws, "a.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		t.Fatal(err)
	}
	vs := aliceStats(t, m)
	if vs.DirtyFiles != 1 || vs.DirtyBytes != int64(len(data)) || vs.CleanFiles != 0 {
		t.Errorf("stats while open with unflushed data: got %d dirty files (%d bytes), %d clean, want 1 dirty (%d bytes), 0 clean",
			vs.DirtyFiles, vs.DirtyBytes, vs.CleanFiles, len(data))
	}
	closed := time.Now()
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	vs = aliceStats(t, m)
	if time.Since(closed) < lifespan && (vs.DirtyFiles != 0 || vs.CleanFiles != 1 || vs.CleanBytes != int64(len(data))) {
		t.Errorf("stats after close: got %d dirty files, %d clean (%d bytes), want 0 dirty, 1 clean (%d bytes)",
			vs.DirtyFiles, vs.CleanFiles, vs.CleanBytes, len(data))
	}

	// The clean copy goes after its lifespan.
	var c Counters
	if err := eventuallyErr(10*time.Second, func() error {
		c = m.Counters()
		if c.JanitorRemovedFiles == 0 {
			return errors.New("not removed yet")
		}
		return nil
	}); err != nil {
		t.Errorf("janitor: no removal 10s after close with a lifespan of %v", lifespan)
	}
	if c.JanitorRemovedFiles != 1 || c.JanitorRemovedBytes != int64(len(data)) {
		t.Errorf("janitor removals: got %d files, %d bytes, want 1 file, %d bytes", c.JanitorRemovedFiles, c.JanitorRemovedBytes, len(data))
	}
	if vs := aliceStats(t, m); vs.CleanFiles != 0 || vs.CleanBytes != 0 {
		t.Errorf("stats after the janitor: got %d clean files (%d bytes), want none", vs.CleanFiles, vs.CleanBytes)
	}

	if err := os.Remove(filepath.Join(ws, "a.bin")); err != nil {
		t.Errorf("unlink: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ro", "x"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write in the read-only workspace: got %v, want EROFS", err)
	}

	c = m.Counters()
	t.Logf("counters: %+v", c)
	for _, tt := range []struct {
		op    string
		errno syscall.Errno
	}{
		{"lookup", syscall.ENOENT},
		{"create", 0},
		{"write", 0},
		{"flush", 0},
		{"unlink", 0},
		{"create", syscall.EROFS},
	} {
		if got := opCount(c, tt.op, tt.errno); got < 1 {
			t.Errorf("counters: got %d %s with errno %d (%v), want at least 1; all: %+v", got, tt.op, tt.errno, tt.errno, c.Ops)
		}
	}
	for _, oc := range c.Ops {
		if oc.N <= 0 || oc.Op == "" {
			t.Errorf("counters: got entry %+v, want only named ops with a positive count", oc)
		}
	}
}

// eventuallyErr calls cond every 50ms until it returns nil or timeout
// passes, and returns cond's last error.
func eventuallyErr(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCountersUnmount(t *testing.T) {
	m := startCounters(t, time.Minute)
	ctx := context.Background()
	ro := MountOptions{ReadOnly: true}

	if err := m.Unmount(ctx, "alice", ro); !errors.Is(err, ErrNotMounted) {
		t.Errorf("unmount before any mount: got %v, want ErrNotMounted", err)
	}
	dir, release, err := m.AcquireWith(ctx, "alice", ro)
	if err != nil {
		t.Fatal(err)
	}
	if got := procMounts(t, dir); len(got) != 1 {
		t.Fatalf("mounts at %s after acquire: got %v, want it mounted", dir, got)
	}
	err = m.Unmount(ctx, "alice", ro)
	if !errors.Is(err, ErrBusy) || !strings.Contains(fmtErr(err), "1 holder") {
		t.Errorf("unmount while held: got %v, want ErrBusy saying 1 holder", err)
	}
	if got := procMounts(t, dir); len(got) != 1 {
		t.Errorf("mounts at %s after a refused unmount: got %v, want it still mounted", dir, got)
	}
	if err := m.Unmount(ctx, "alice", MountOptions{}); !errors.Is(err, ErrNotMounted) {
		t.Errorf("unmount of the read-write view (never mounted): got %v, want ErrNotMounted", err)
	}

	release()
	start := time.Now()
	if err := m.Unmount(ctx, "alice", ro); err != nil {
		t.Fatalf("unmount after release: %v", err)
	}
	if got := procMounts(t, dir); len(got) != 0 {
		t.Errorf("mounts at %s when Unmount returned: got %v, want none", dir, got)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("unmount took %v, want it done at once", took)
	}
	if len(m.Stats()) != 0 {
		t.Errorf("stats after unmount: got %+v, want no view", m.Stats())
	}
	if err := m.Unmount(ctx, "alice", ro); !errors.Is(err, ErrNotMounted) {
		t.Errorf("second unmount: got %v, want ErrNotMounted", err)
	}
	if err := m.Unmount(ctx, "../x", ro); !errors.Is(err, ErrInvalidUser) {
		t.Errorf("unmount of a bad user name: got %v, want ErrInvalidUser", err)
	}

	// The view can be mounted again.
	dir2, release2, err := m.AcquireWith(ctx, "alice", ro)
	if err != nil {
		t.Fatalf("acquire after unmount: %v", err)
	}
	defer release2()
	if names, err := os.ReadDir(dir2); err != nil || len(names) != 2 {
		t.Errorf("listing after a new mount: got %v, %v, want 2 workspaces", names, err)
	}
}

func TestCountersOpStats(t *testing.T) {
	var s opStats
	for _, tt := range []struct {
		op fuseOp
		st fuse.Status
	}{
		{opLookup, fuse.OK}, {opLookup, fuse.OK}, {opLookup, fuse.ENOENT},
		{opWrite, fuse.Status(syscall.ENOSPC)}, {opWrite, fuse.Status(syscall.EFBIG)},
		{opWrite, fuse.Status(syscall.ETIMEDOUT)}, {opGetxattr, fuse.Status(syscall.EOPNOTSUPP)},
		{opStatfs, fuse.OK},
	} {
		s.add(tt.op, tt.st)
	}
	want := []OpCount{
		{"lookup", 0, 2}, {"lookup", syscall.ENOENT, 1},
		{"getxattr", syscall.ENOTSUP, 1},
		{"write", syscall.ENOSPC, 1}, {"write", OtherErrno, 2},
		{"statfs", 0, 1},
	}
	got := s.list()
	slices.SortStableFunc(got, func(a, b OpCount) int { return strings.Compare(a.Op, b.Op) })
	slices.SortStableFunc(want, func(a, b OpCount) int { return strings.Compare(a.Op, b.Op) })
	if !slices.Equal(got, want) {
		t.Errorf("list: got %+v, want %+v", got, want)
	}
	for op, name := range opNames {
		if name == "" {
			t.Errorf("op %d has no name", op)
		}
	}
}

// fmtErr is err's message, "" for nil.
func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
