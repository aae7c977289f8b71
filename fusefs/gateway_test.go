package fusefs_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"golang.org/x/sys/unix"

	"github.com/sftpgate/sftpgate/fusefs"
)

// gateway is one Manager under test with what the test needs around it.
type gateway struct {
	m       *fusefs.Manager
	grants  *fakeGrants
	counter *countingTransport
	opts    fusefs.Options
	// shutdownErrOK is set by tests that leave an upload failing on
	// purpose: Shutdown may then report it.
	shutdownErrOK bool
}

// testOptions returns Options for a Manager with its directories under a
// fresh temporary directory. Tests adjust the result before newGateway.
func testOptions(tb testing.TB) fusefs.Options {
	tb.Helper()
	base := tb.TempDir()
	return testOptionsIn(filepath.Join(base, "mnt"), filepath.Join(base, "tmp"))
}

// testOptionsIn is testOptions with the given directories.
func testOptionsIn(mountRoot, tmpDir string) fusefs.Options {
	return fusefs.Options{
		MountRoot:   mountRoot,
		TmpDir:      tmpDir,
		Lifespan:    15 * time.Minute,
		IdleDelay:   10 * time.Minute,
		PartSize:    8 << 20,
		Concurrency: 4,
		MinFree:     -1,
		AttrTTL:     time.Second,
		GrantsTTL:   time.Second,
	}
}

// newClient returns a minio-go client for server whose object GETs are
// counted.
func newClient(tb testing.TB) (*minio.Client, *countingTransport) {
	tb.Helper()
	c, ct, err := newCountingClient()
	if err != nil {
		tb.Fatal(err)
	}
	return c, ct
}

func newCountingClient() (*minio.Client, *countingTransport, error) {
	tr, err := minio.DefaultTransport(false)
	if err != nil {
		return nil, nil, err
	}
	ct := &countingTransport{next: tr, gets: map[string]int{}, lookups: map[string]int{}}
	c, err := minio.New(server.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(server.AccessKey, server.SecretKey, ""),
		Transport: ct,
	})
	return c, ct, err
}

// newGateway starts a Manager with o (Client, Grants and Logger filled in
// when unset) and shuts it down in cleanup, making sure nothing stays
// mounted under o.MountRoot.
func newGateway(tb testing.TB, o fusefs.Options) *gateway {
	tb.Helper()
	g, err := startGateway(tb, o)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// startGateway is newGateway for any goroutine: it returns its error
// instead of failing the test.
func startGateway(tb testing.TB, o fusefs.Options) (*gateway, error) {
	g := &gateway{grants: newFakeGrants()}
	if o.Client == nil {
		var err error
		if o.Client, g.counter, err = newCountingClient(); err != nil {
			return nil, err
		}
	}
	if o.Grants == nil {
		o.Grants = g.grants
	}
	if o.Logger == nil {
		logs := &lockedBuffer{}
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		tb.Cleanup(func() {
			if tb.Failed() {
				tb.Logf("manager log:\n%s", logs.String())
			}
		})
	}
	g.opts = o
	// Registered first, so it runs last: whatever happened, leave no mount.
	tb.Cleanup(func() { detachMounts(tb, o.MountRoot) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := fusefs.NewManager(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("NewManager: %w", err)
	}
	g.m = m
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil && !g.shutdownErrOK {
			tb.Errorf("Shutdown: %v", err)
		}
		if left := mountsUnder(tb, o.MountRoot); len(left) > 0 {
			tb.Errorf("after Shutdown, still mounted: %v", left)
		}
	})
	return g, nil
}

// acquire mounts user's view and releases it in cleanup.
func (g *gateway) acquire(tb testing.TB, user string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, release, err := g.m.Acquire(ctx, user)
	if err != nil {
		tb.Fatalf("Acquire(%q): %v", user, err)
	}
	tb.Cleanup(release)
	return dir
}

// workspace is a workspace mounted for a test.
type workspace struct {
	g      *gateway
	dir    string // the workspace's directory in the mount
	root   string // the user's mount directory
	bucket string
	prefix string
}

// key returns the object key of name (slash-separated, relative to the workspace).
func (w *workspace) key(name string) string { return w.prefix + name }

// mountWorkspace starts a gateway with o, grants user "alice" one
// read-write workspace "ws" on a fresh bucket with prefix "home/alice/",
// and mounts it.
func mountWorkspace(tb testing.TB, o fusefs.Options) *workspace {
	tb.Helper()
	g := newGateway(tb, o)
	bucket := server.NewBucket(tb, "ws")
	w := &workspace{g: g, bucket: bucket, prefix: "home/alice/"}
	g.grants.set("alice", fusefs.Workspace{Slug: "ws", Bucket: bucket, Prefix: w.prefix})
	w.root = g.acquire(tb, "alice")
	w.dir = filepath.Join(w.root, "ws")
	return w
}

// mountsUnder returns the mount points at or below root (from /proc/mounts).
func mountsUnder(tb testing.TB, root string) []string {
	tb.Helper()
	f, err := os.Open("/proc/mounts")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 2 {
			continue
		}
		p := unescapeMount(fields[1])
		if p == root || strings.HasPrefix(p, root+"/") {
			out = append(out, p)
		}
	}
	return out
}

// unescapeMount undoes the octal escapes of /proc/mounts (\040 for space …).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// detachMounts lazily unmounts whatever is still mounted under root, so a
// failing test never leaves a stale mount behind.
func detachMounts(tb testing.TB, root string) {
	tb.Helper()
	left := mountsUnder(tb, root)
	for i := len(left) - 1; i >= 0; i-- {
		if err := unix.Unmount(left[i], unix.MNT_DETACH); err != nil {
			tb.Errorf("detach %s: %v", left[i], err)
		}
	}
}
