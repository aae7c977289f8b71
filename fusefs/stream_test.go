package fusefs_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sftpgate/sftpgate/fusefs"
)

// incompleteUploads returns "key uploadID" of the multipart uploads in
// progress under prefix.
func incompleteUploads(tb testing.TB, bucket, prefix string) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []string
	for u := range server.Client.ListIncompleteUploads(ctx, bucket, prefix, true) {
		if u.Err != nil {
			tb.Fatalf("list incomplete uploads %s/%s: %v", bucket, prefix, u.Err)
		}
		out = append(out, u.Key+" "+u.UploadID)
	}
	return out
}

// waitPartsSent waits until a multipart upload of bucket/key is in
// progress with at least one part stored, and checks that the object is
// still as before: absent when oldSize is negative, else of oldSize bytes.
func waitPartsSent(tb testing.TB, bucket, key string, oldSize int64) {
	tb.Helper()
	core := minio.Core{Client: server.Client}
	err := eventually(30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for u := range server.Client.ListIncompleteUploads(ctx, bucket, key, false) {
			if u.Err != nil {
				return u.Err
			}
			if u.Key != key {
				continue
			}
			res, err := core.ListObjectParts(ctx, bucket, key, u.UploadID, 0, 100)
			if err != nil {
				return err
			}
			if len(res.ObjectParts) > 0 {
				return nil
			}
		}
		return fmt.Errorf("no multipart upload of %s with parts stored", key)
	})
	if err != nil {
		tb.Fatalf("before close: %v", err)
	}
	info, err := statObject(bucket, key)
	switch {
	case oldSize < 0 && !isNoSuchKey(err):
		tb.Errorf("before close, object %s: got %v, want none (not visible before close)", key, err)
	case oldSize >= 0 && (err != nil || info.Size != oldSize):
		tb.Errorf("before close, object %s: got %d bytes, %v, want the old %d bytes", key, info.Size, err, oldSize)
	}
}

// writeChunks writes data to f at off in 1 MiB writes.
func writeChunks(tb testing.TB, f *os.File, data []byte, off int64) {
	tb.Helper()
	for len(data) > 0 {
		n := min(len(data), 1<<20)
		if _, err := f.WriteAt(data[:n], off); err != nil {
			tb.Fatalf("WriteAt(%d): %v", off, err)
		}
		data, off = data[n:], off+int64(n)
	}
}

// checkObject compares bucket/key with want by size and SHA-256.
func checkObject(tb testing.TB, bucket, key string, want []byte) {
	tb.Helper()
	sum, n := objectSHA256(tb, bucket, key)
	if n != int64(len(want)) {
		tb.Errorf("object %s size: got %d, want %d", key, n, len(want))
	}
	if w := sha256.Sum256(want); sum != w {
		tb.Errorf("object %s SHA-256: got %x, want %x", key, sum, w)
	}
}

// TestStreamUpload writes 100 MiB sequentially: parts are stored while
// the file is still open, and the object appears whole at close, with the
// mtime and mode the mount shows (set explicitly before close, or not).
func TestStreamUpload(t *testing.T) {
	const size = 100<<20 + 12345
	tests := []struct {
		name  string
		mtime time.Time // set with utimes before close, when not zero
		mode  os.FileMode
	}{
		{name: "plain"},
		{name: "utimes and chmod before close", mtime: time.Unix(1700000000, 123456789), mode: 0o640},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := mountWorkspace(t, testOptions(t))
			src := pattern(11, size)
			p := filepath.Join(w.dir, "seq.bin")
			f, err := os.Create(p)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			defer f.Close()
			writeChunks(t, f, src[:40<<20], 0)
			waitPartsSent(t, w.bucket, w.key("seq.bin"), -1)
			writeChunks(t, f, src[40<<20:], 40<<20)
			if !tt.mtime.IsZero() {
				if err := os.Chtimes(p, tt.mtime, tt.mtime); err != nil {
					t.Fatalf("Chtimes: %v", err)
				}
				if err := f.Chmod(tt.mode); err != nil {
					t.Fatalf("Chmod: %v", err)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			checkObject(t, w.bucket, w.key("seq.bin"), src)
			if left := incompleteUploads(t, w.bucket, ""); len(left) > 0 {
				t.Errorf("incomplete uploads after close: got %q, want none", left)
			}
			time.Sleep(w.g.opts.AttrTTL + 100*time.Millisecond) // the kernel's attributes expire
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if !tt.mtime.IsZero() && !fi.ModTime().Equal(tt.mtime) {
				t.Errorf("mtime through the mount: got %v, want %v", fi.ModTime(), tt.mtime)
			}
			info, err := statObject(w.bucket, w.key("seq.bin"))
			if err != nil {
				t.Fatalf("stat object: %v", err)
			}
			want := fmt.Sprintf("%d.%09d", fi.ModTime().Unix(), fi.ModTime().Nanosecond())
			if got := info.UserMetadata["Mtime"]; got != want {
				t.Errorf("object mtime metadata: got %q, want %q (the mount's)", got, want)
			}
			if tt.mode != 0 {
				if got, want := info.UserMetadata["Mode"], fmt.Sprintf("%04o", tt.mode); got != want {
					t.Errorf("object mode metadata: got %q, want %q", got, want)
				}
			}
		})
	}
}

// TestStreamFallback breaks the pattern of a sequential writer in ways
// that touch parts already sent: the object is still right at close and
// no multipart upload is left behind.
func TestStreamFallback(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, f *os.File, src []byte) []byte
	}{
		{name: "write into the first part", change: func(t *testing.T, f *os.File, src []byte) []byte {
			patch := []byte("written again at 100")
			if _, err := f.WriteAt(patch, 100); err != nil {
				t.Fatalf("WriteAt: %v", err)
			}
			copy(src[100:], patch)
			return src
		}},
		{name: "truncate below the parts sent", change: func(t *testing.T, f *os.File, src []byte) []byte {
			if err := f.Truncate(1 << 20); err != nil {
				t.Fatalf("Truncate: %v", err)
			}
			// The writer goes on where it was: a hole of zeros between.
			clear(src[1<<20 : 40<<20])
			return src
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const size = 60 << 20
			w := mountWorkspace(t, testOptions(t))
			src := pattern(12, size)
			f, err := os.Create(filepath.Join(w.dir, "fb.bin"))
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			defer f.Close()
			writeChunks(t, f, src[:40<<20], 0)
			waitPartsSent(t, w.bucket, w.key("fb.bin"), -1)
			src = tt.change(t, f, src)
			writeChunks(t, f, src[40<<20:], 40<<20)
			if err := f.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			checkObject(t, w.bucket, w.key("fb.bin"), src)
			if left := incompleteUploads(t, w.bucket, ""); len(left) > 0 {
				t.Errorf("incomplete uploads after close: got %q, want none", left)
			}
		})
	}
}

// TestStreamResume appends to a file whose local copy is kept (a resumed
// upload): what was there and what is appended are streamed before close.
func TestStreamResume(t *testing.T) {
	const size = 50<<20 + 4321
	w := mountWorkspace(t, testOptions(t))
	src := pattern(14, size)
	p := filepath.Join(w.dir, "resumed.bin")
	if err := os.WriteFile(p, src[:20<<20], 0o644); err != nil {
		t.Fatalf("first part: %v", err)
	}
	before := w.g.counter.objectGets(w.bucket, w.key("resumed.bin"))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer f.Close()
	for off := 20 << 20; off < size; off += 1 << 20 {
		if _, err := f.Write(src[off:min(off+1<<20, size)]); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if off == 30<<20 {
			waitPartsSent(t, w.bucket, w.key("resumed.bin"), 20<<20)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	checkObject(t, w.bucket, w.key("resumed.bin"), src)
	if got := w.g.counter.objectGets(w.bucket, w.key("resumed.bin")) - before; got != 0 {
		t.Errorf("object GETs during the resumed upload: got %d, want 0", got)
	}
	if left := incompleteUploads(t, w.bucket, ""); len(left) > 0 {
		t.Errorf("incomplete uploads after close: got %q, want none", left)
	}
}

// TestStreamRename renames a file while it is being written and streamed:
// the object lands at the new key only, and no multipart upload is left.
func TestStreamRename(t *testing.T) {
	const size = 70<<20 + 99
	w := mountWorkspace(t, testOptions(t))
	src := pattern(13, size)
	f, err := os.Create(filepath.Join(w.dir, "old.bin"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer f.Close()
	writeChunks(t, f, src[:40<<20], 0)
	waitPartsSent(t, w.bucket, w.key("old.bin"), -1)
	if err := os.Rename(filepath.Join(w.dir, "old.bin"), filepath.Join(w.dir, "new.bin")); err != nil {
		t.Fatalf("Rename: %v", err)
	}
	writeChunks(t, f, src[40<<20:], 40<<20)
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	checkObject(t, w.bucket, w.key("new.bin"), src)
	if _, err := statObject(w.bucket, w.key("old.bin")); !isNoSuchKey(err) {
		t.Errorf("object at the old key: got %v, want none", err)
	}
	if left := incompleteUploads(t, w.bucket, ""); len(left) > 0 {
		t.Errorf("incomplete uploads after close: got %q, want none", left)
	}
}

// BenchmarkWrite1GiB is the write half of BenchmarkGateway alone: 1 GiB
// put directly with minio-go, then written through the mount (until close
// returns), best of benchReps each way.
func BenchmarkWrite1GiB(b *testing.B) {
	o := benchOptions(b)
	o.MinFree = 0 // the default reserve
	w := mountWorkspace(b, o)
	const gib = 1 << 30
	for range b.N {
		var wDirect, wMount time.Duration
		for rep := range benchReps {
			wDirect = best(wDirect, putDirect(b, w, fmt.Sprintf("direct-%d.bin", rep), gib))
			start := time.Now()
			writeThroughMount(b, filepath.Join(w.dir, fmt.Sprintf("mount-%d.bin", rep)), gib)
			wMount = best(wMount, time.Since(start))
		}
		ratio := wDirect.Seconds() / wMount.Seconds()
		b.ReportMetric(ratio, "write-ratio")
		fmt.Printf("write 1 GiB: PutObject %s, mount (until close) %s, ratio %.2fx\n", fmtRate(gib, wDirect), fmtRate(gib, wMount), ratio)
		for _, off := range []int64{0, 500 << 20, gib - 3<<20} {
			checkRange(b, w.bucket, w.key("mount-0.bin"), off, 3<<20, gib)
		}
	}
}

// streamCrashSize is what TestCrashHelper writes, sequentially, when
// envCrashStream is set.
const streamCrashSize = 40<<20 + 777

// envCrashStream makes TestCrashHelper write sequentially and wait until
// parts of the file are stored in a multipart upload before it is killed.
const envCrashStream = "SFTPGATE_FUSEFS_CRASH_STREAM"

// TestStreamCrashRecovery kills a process while a file it writes
// sequentially is being streamed: the next start aborts the multipart
// upload the crash left, publishes nothing, and keeps the copy for a
// resume that completes it.
func TestStreamCrashRecovery(t *testing.T) {
	o := testOptions(t)
	bucket := server.NewBucket(t, "crash")
	key := "files/" + crashFile
	t.Setenv(envCrashStream, "1")
	_, exited := crashHelper(t, o, bucket)
	if left := incompleteUploads(t, bucket, ""); len(left) == 0 {
		t.Fatalf("before recovery: got no multipart upload in progress, want the stream's")
	}
	g := newGateway(t, o)
	g.grants.set("alice", fusefs.Workspace{Slug: "ws", Bucket: bucket, Prefix: "files/"})
	if left := incompleteUploads(t, bucket, ""); len(left) > 0 {
		t.Errorf("incomplete uploads after recovery: got %q, want none", left)
	}
	if _, err := getObject(bucket, key); !isNoSuchKey(err) {
		t.Errorf("object after recovery: got %v, want NoSuchKey (no close returned)", err)
	}
	dir := g.acquire(t, "alice")
	resumeAndCheck(t, filepath.Join(dir, "ws", crashFile), bucket, key, pattern(crashSeed, streamCrashSize))
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Errorf("the killed process is still stuck after recovery")
	}
}
