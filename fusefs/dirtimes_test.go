package fusefs_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"golang.org/x/sync/errgroup"

	"github.com/sftpgate/sftpgate/fusefs"
)

// TestDirMtime sets directory times through the mount (os.Chtimes, as the
// SFTP setstat of sftpd does) and reads them back through stat and
// listings; they are stored on the dir/ marker, which an implied directory
// gets on its first chtimes.
func TestDirMtime(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	want := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

	checkMarker := func(t *testing.T, key string, want time.Time) {
		t.Helper()
		info, err := statObject(w.bucket, key)
		if err != nil {
			t.Fatalf("marker %s: %v", key, err)
		}
		if info.Size != 0 {
			t.Errorf("marker %s: got %d bytes, want 0", key, info.Size)
		}
		raw := info.Metadata.Get("X-Amz-Meta-Mtime")
		if got := fmt.Sprintf("%d.%09d", want.Unix(), want.Nanosecond()); raw != got {
			t.Errorf("marker %s: got X-Amz-Meta-Mtime %q, want %q", key, raw, got)
		}
	}
	checkStat := func(t *testing.T, p string, want time.Time) {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		if !fi.IsDir() || !fi.ModTime().Equal(want) {
			t.Errorf("stat %s: got dir=%v mtime %v, want a directory with mtime %v", p, fi.IsDir(), fi.ModTime().UTC(), want)
		}
	}
	listed := func(t *testing.T, dir string) map[string]time.Time {
		t.Helper()
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("ReadDir: %v", err)
		}
		out := map[string]time.Time{}
		for _, e := range entries {
			fi, err := e.Info()
			if err != nil {
				t.Fatalf("Info %s: %v", e.Name(), err)
			}
			out[e.Name()] = fi.ModTime()
		}
		return out
	}

	t.Run("mkdir then chtimes", func(t *testing.T) {
		p := filepath.Join(w.dir, "made")
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, want, want); err != nil {
			t.Fatalf("Chtimes: %v", err)
		}
		checkMarker(t, w.key("made/"), want)
		checkStat(t, p, want)
		if got := listed(t, w.dir)["made"]; !got.Equal(want) {
			t.Errorf("listing: got mtime %v, want %v", got.UTC(), want)
		}
	})

	t.Run("implied directory gets a marker", func(t *testing.T) {
		putObject(t, w.bucket, w.key("implied/f.txt"), []byte("x"))
		p := filepath.Join(w.dir, "implied")
		if err := os.Chtimes(p, want, want); err != nil {
			t.Fatalf("Chtimes: %v", err)
		}
		checkMarker(t, w.key("implied/"), want)
		checkStat(t, p, want)
		if got := readDirNames(t, p); len(got) != 1 || got[0] != "f.txt" {
			t.Errorf("entries of implied/: got %q, want [f.txt]", got)
		}
	})

	t.Run("nested, with sub-second time", func(t *testing.T) {
		p := filepath.Join(w.dir, "a", "b")
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		nano := want.Add(123456789 * time.Nanosecond)
		if err := os.Chtimes(p, nano, nano); err != nil {
			t.Fatalf("Chtimes: %v", err)
		}
		checkMarker(t, w.key("a/b/"), nano)
		checkStat(t, p, nano)
	})

	t.Run("markers written by others, seen by a fresh mount", func(t *testing.T) {
		// rclone's S3 backend writes directory markers with this metadata.
		other := time.Date(2019, 7, 8, 9, 10, 11, 0, time.UTC)
		putObjectOpts(t, w.bucket, w.key("ext/"), nil, minio.PutObjectOptions{
			UserMetadata: map[string]string{"Mtime": fmt.Sprintf("%d", other.Unix())},
		})
		putObject(t, w.bucket, w.key("plain/"), nil)
		plain, err := statObject(w.bucket, w.key("plain/"))
		if err != nil {
			t.Fatal(err)
		}
		w2 := mountWorkspaceOn(t, testOptions(t), w.bucket, w.prefix, false)
		// A listing first (READDIRPLUS: the entries' attributes come with it),
		// then stat by path.
		got := listed(t, w2.dir)
		for name, want := range map[string]time.Time{"ext": other, "made": want, "implied": want, "plain": plain.LastModified} {
			if !got[name].Equal(want) {
				t.Errorf("listing of a fresh mount, %s: got %v, want %v", name, got[name].UTC(), want.UTC())
			}
		}
		checkStat(t, filepath.Join(w2.dir, "ext"), other)
		checkStat(t, filepath.Join(w2.dir, "made"), want)
	})

	t.Run("read-only workspace refuses", func(t *testing.T) {
		ro := mountWorkspaceOn(t, testOptions(t), w.bucket, w.prefix, true)
		err := os.Chtimes(filepath.Join(ro.dir, "made"), time.Now(), time.Now())
		wantErrno(t, "Chtimes in a read-only workspace", err, syscall.EROFS)
		checkMarker(t, w.key("made/"), want)
	})
}

// mountWorkspaceOn is mountWorkspace on an existing bucket and prefix, in
// a gateway of its own (so a mount that has seen nothing yet).
func mountWorkspaceOn(tb testing.TB, o fusefs.Options, bucket, prefix string, readOnly bool) *workspace {
	tb.Helper()
	g := newGateway(tb, o)
	w := &workspace{g: g, bucket: bucket, prefix: prefix}
	g.grants.set("alice", fusefs.Workspace{Slug: "ws", Bucket: bucket, Prefix: prefix, ReadOnly: readOnly})
	w.root = g.acquire(tb, "alice")
	w.dir = filepath.Join(w.root, "ws")
	return w
}

// requestCounter counts every HTTP request a minio-go client sends.
type requestCounter struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (c *requestCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// TestDirMtimeListingCost lists 1,000 subdirectories through a fresh
// mount, as `ls -l` does (readdir, then lstat of each entry), twice, and
// reports the time and the requests each listing sent: once with a marker
// and an mtime each, once implied by a file each (no marker: they show the
// mount's time). The second listing, with the directories known, must not
// send a request per directory.
func TestDirMtimeListingCost(t *testing.T) {
	const n = 1000
	mt := time.Date(2022, 1, 2, 3, 4, 5, 0, time.UTC)
	t.Run("markers", func(t *testing.T) {
		bucket := server.NewBucket(t, "dirs")
		prefix := "home/alice/"
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(16)
		start := time.Now()
		for i := range n {
			g.Go(func() error {
				_, err := server.Client.PutObject(gctx, bucket, fmt.Sprintf("%sd%04d/", prefix, i), strings.NewReader(""), 0,
					minio.PutObjectOptions{UserMetadata: map[string]string{"Mtime": fmt.Sprintf("%d", mt.Unix()+int64(i))}})
				return err
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatalf("put markers: %v", err)
		}
		t.Logf("put %d markers: %v", n, time.Since(start))
		listingCost(t, bucket, prefix, n, func(i int, got time.Time, _, _ time.Time) bool {
			return got.Equal(mt.Add(time.Duration(i) * time.Second))
		})
	})
	t.Run("implied", func(t *testing.T) {
		bucket := server.NewBucket(t, "dirs")
		prefix := "home/alice/"
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("%sd%04d/f.txt", prefix, i)
		}
		putMany(t, bucket, keys)
		listingCost(t, bucket, prefix, n, func(_ int, got time.Time, from, to time.Time) bool {
			return !got.Before(from) && !got.After(to)
		})
	})
}

// listingCost mounts bucket/prefix in a gateway whose requests are
// counted, lists it twice as `ls -l` does and checks each of the n
// directories' mtime with ok (given the window in which the mount was made).
func listingCost(t *testing.T, bucket, prefix string, n int, ok func(i int, mtime, from, to time.Time) bool) {
	t.Helper()
	tr, err := minio.DefaultTransport(false)
	if err != nil {
		t.Fatal(err)
	}
	rc := &requestCounter{next: tr}
	o := testOptions(t)
	if o.Client, err = minio.New(server.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(server.AccessKey, server.SecretKey, ""),
		Transport: rc,
	}); err != nil {
		t.Fatal(err)
	}
	from := time.Now()
	w := mountWorkspaceOn(t, o, bucket, prefix, false)
	to := time.Now()
	lsl := func(round string) int64 {
		before := rc.n.Load()
		start := time.Now()
		entries, err := os.ReadDir(w.dir)
		if err != nil {
			t.Fatalf("ReadDir: %v", err)
		}
		wrong := 0
		for i, e := range entries {
			fi, err := e.Info()
			if err != nil {
				t.Fatalf("Info %s: %v", e.Name(), err)
			}
			if !ok(i, fi.ModTime(), from, to) {
				wrong++
			}
		}
		requests := rc.n.Load() - before
		t.Logf("%s listing of %d directories (readdir + lstat each): %v, %d requests, %d with a wrong mtime",
			round, len(entries), time.Since(start), requests, wrong)
		if len(entries) != n {
			t.Errorf("%s listing: got %d entries, want %d", round, len(entries), n)
		}
		if wrong > 0 {
			t.Errorf("%s listing: %d directories with a wrong mtime", round, wrong)
		}
		return requests
	}
	lsl("first")
	time.Sleep(1500 * time.Millisecond) // past AttrTTL: the kernel asks again
	if got := lsl("second"); got > int64(n/10) {
		t.Errorf("second listing: got %d requests, want far fewer than one per directory", got)
	}
}
