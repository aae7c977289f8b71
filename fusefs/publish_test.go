package fusefs_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sftpgate/sftpgate/internal/fsapi"
)

// openW opens path for writing through the mount.
func openW(t *testing.T, path string, flags int) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return f
}

func writeAt(t *testing.T, f *os.File, p []byte, off int64) {
	t.Helper()
	if _, err := f.WriteAt(p, off); err != nil {
		t.Fatalf("write at %d: %v", off, err)
	}
}

// TestEveryClosePublishes: a close publishes the copy as it stands, other
// handles' bytes included, even while another writer still has it open.
func TestEveryClosePublishes(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	path := filepath.Join(w.dir, "f.bin")
	a := openW(t, path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	b := openW(t, path, os.O_WRONLY)
	writeAt(t, a, []byte("aaaa"), 0)
	writeAt(t, b, []byte("bbbb"), 4)
	if err := a.Close(); err != nil {
		t.Fatalf("close A: %v", err)
	}
	if got := mustGetObject(t, w.bucket, w.key("f.bin")); string(got) != "aaaabbbb" {
		t.Fatalf("object after A's close (B still open): got %q, want %q", got, "aaaabbbb")
	}
	writeAt(t, b, []byte("cc"), 8)
	if err := b.Close(); err != nil {
		t.Fatalf("close B: %v", err)
	}
	if got := mustGetObject(t, w.bucket, w.key("f.bin")); string(got) != "aaaabbbbcc" {
		t.Fatalf("object after B's close: got %q, want %q", got, "aaaabbbbcc")
	}
}

// TestInterruptedWriterKeepsOthersClose is the reproduction of the lost
// upload: A writes, B opens, A's session ends (interrupted), B writes and
// closes: B's close publishes, whatever the order.
func TestInterruptedWriterKeepsOthersClose(t *testing.T) {
	for _, tt := range []struct {
		name string
		bOff int64 // where B writes: 0 rewrites all, else a disjoint region
	}{
		{"B rewrites all", 0},
		{"B writes a disjoint region", 1 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := mountWorkspace(t, testOptions(t))
			path := filepath.Join(w.dir, "f.bin")
			da, db := pattern(1, 1<<20), pattern(2, 1<<20)
			a := openW(t, path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
			writeAt(t, a, da, 0)
			b := openW(t, path, os.O_WRONLY)
			if err := fsapi.Interrupt(a); err != nil {
				t.Fatalf("interrupt A: %v", err)
			}
			if err := a.Close(); err != nil {
				t.Fatalf("close of interrupted A: %v", err)
			}
			if _, err := statObject(w.bucket, w.key("f.bin")); !isNoSuchKey(err) {
				t.Fatalf("object after A's interruption: got %v, want NoSuchKey", err)
			}
			writeAt(t, b, db, tt.bOff)
			if err := b.Close(); err != nil {
				t.Fatalf("close B: %v", err)
			}
			want := db
			if tt.bOff != 0 {
				want = append(append([]byte{}, da...), db...)
			}
			checkObject(t, w.bucket, w.key("f.bin"), want)
		})
	}
}

// TestInterruptedCutToPrefix: a copy left by an interrupted writer is cut
// to its contiguous written prefix, so a resume from its size leaves no
// hole; the object is untouched.
func TestInterruptedCutToPrefix(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	putObject(t, w.bucket, w.key("f.bin"), []byte("old"))
	path := filepath.Join(w.dir, "f.bin")
	data := pattern(3, 3<<20)
	f := openW(t, path, os.O_WRONLY|os.O_TRUNC)
	writeAt(t, f, data[2<<20:], 2<<20) // out of order: a hole in [1M, 2M)
	writeAt(t, f, data[:1<<20], 0)
	if err := fsapi.Interrupt(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got := mustGetObject(t, w.bucket, w.key("f.bin")); string(got) != "old" {
		t.Fatalf("object after an interrupted rewrite: got %d bytes, want the old 3", len(got))
	}
	err := eventually(5*time.Second, func() error {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if fi.Size() != 1<<20 {
			return fmt.Errorf("size %d, want %d (the prefix before the hole)", fi.Size(), 1<<20)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("interrupted copy: %v", err)
	}
	// Resume from the size.
	f = openW(t, path, os.O_WRONLY)
	writeAt(t, f, data[1<<20:], 1<<20)
	if err := f.Close(); err != nil {
		t.Fatalf("close of the resume: %v", err)
	}
	checkObject(t, w.bucket, w.key("f.bin"), data)
}

// TestFailedUploadKeepsCopy: when a close's upload fails (the bucket is
// gone), the close fails, nothing is published behind the client's back
// later, and the whole copy waits for the retry, which publishes it.
func TestFailedUploadKeepsCopy(t *testing.T) {
	o := testOptions(t)
	o.Lifespan = time.Hour
	w := mountWorkspace(t, o)
	path := filepath.Join(w.dir, "f.bin")
	data := pattern(4, 2<<20)
	f := openW(t, path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	writeAt(t, f, data, 0)
	ctx := context.Background()
	if err := server.Client.RemoveBucket(ctx, w.bucket); err != nil {
		t.Fatalf("remove bucket: %v", err)
	}
	if err := f.Close(); err == nil {
		t.Fatalf("close with the bucket gone: got nil, want an error")
	}
	if err := server.Client.MakeBucket(ctx, w.bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket: %v", err)
	}
	time.Sleep(1500 * time.Millisecond) // a janitor round or more
	if _, err := statObject(w.bucket, w.key("f.bin")); !isNoSuchKey(err) {
		t.Fatalf("object after a failed close: got %v, want NoSuchKey (never published behind the client's back)", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != int64(len(data)) {
		t.Fatalf("copy after a failed close: %v, %v; want the whole %d bytes", fi, err, len(data))
	}
	f = openW(t, path, os.O_WRONLY)
	if err := f.Close(); err != nil {
		t.Fatalf("retry close: %v", err)
	}
	checkObject(t, w.bucket, w.key("f.bin"), data)
}

// TestRenameOpenPublished: renaming a file open for writing moves its
// published object at once; the next close publishes at the new name.
func TestRenameOpenPublished(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	src, dst := filepath.Join(w.dir, "a.txt"), filepath.Join(w.dir, "b.txt")
	if err := os.WriteFile(src, []byte("version 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := openW(t, src, os.O_WRONLY|os.O_TRUNC)
	writeAt(t, f, []byte("version 2, longer"), 0)
	if err := os.Rename(src, dst); err != nil {
		t.Fatalf("rename: %v", err)
	}
	if _, err := statObject(w.bucket, w.key("a.txt")); !isNoSuchKey(err) {
		t.Errorf("old name after rename: got %v, want NoSuchKey", err)
	}
	if got := mustGetObject(t, w.bucket, w.key("b.txt")); string(got) != "version 1" {
		t.Errorf("new name after rename, before close: got %q, want the published %q", got, "version 1")
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if got := mustGetObject(t, w.bucket, w.key("b.txt")); string(got) != "version 2, longer" {
		t.Errorf("new name after close: got %q, want %q", got, "version 2, longer")
	}
}

// TestTruncatePathPublishes: a truncate on a path no writer holds is an
// open, a change and a close: it publishes.
func TestTruncatePathPublishes(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	putObject(t, w.bucket, w.key("t.txt"), []byte("0123456789"))
	if err := os.Truncate(filepath.Join(w.dir, "t.txt"), 4); err != nil {
		t.Fatalf("truncate: %v", err)
	}
	if got := mustGetObject(t, w.bucket, w.key("t.txt")); string(got) != "0123" {
		t.Fatalf("object after truncate: got %q, want %q", got, "0123")
	}
}

// TestFailedWriteKeepsSize: a write refused (EFBIG past the largest
// offset) changes no size, and the handle's close fails and publishes
// nothing.
func TestFailedWriteKeepsSize(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	path := filepath.Join(w.dir, "s.bin")
	f := openW(t, path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	writeAt(t, f, []byte("abc"), 0)
	if _, err := f.WriteAt([]byte("x"), 1<<62); err == nil {
		t.Fatalf("write at 2^62: got nil, want an error")
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() != 3 {
		t.Fatalf("size after a failed write: %v, %v; want 3", fi, err)
	}
	f.Close()
}

// TestCleanCopiesHoldNoFD: copies kept for a resume hold no descriptor.
func TestCleanCopiesHoldNoFD(t *testing.T) {
	o := testOptions(t)
	w := mountWorkspace(t, o)
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(w.dir, "c"+string(rune('a'+i))), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	err := eventually(10*time.Second, func() error {
		if n := cacheFDs(t, o.TmpDir); n != 0 {
			return fmt.Errorf("%d descriptors open on the cache directory, want 0", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Still readable from the parked copies.
	if got, err := os.ReadFile(filepath.Join(w.dir, "ca")); err != nil || string(got) != "x" {
		t.Fatalf("read back: %q, %v", got, err)
	}
}

// cacheFDs counts this process's descriptors on files under dir.
func cacheFDs(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, de := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", de.Name()))
		if err == nil && strings.HasPrefix(target, dir+"/") && strings.HasSuffix(target, ".data") {
			n++
		}
	}
	return n
}

// TestUserCopiesLimit: a user's copies being written are bounded; the next
// open for writing is EMFILE, and others are not affected.
func TestUserCopiesLimit(t *testing.T) {
	o := testOptions(t)
	o.MaxUserCopies = 2
	w := mountWorkspace(t, o)
	var open []*os.File
	for _, n := range []string{"1", "2"} {
		open = append(open, openW(t, filepath.Join(w.dir, n), os.O_WRONLY|os.O_CREATE|os.O_TRUNC))
	}
	_, err := os.OpenFile(filepath.Join(w.dir, "3"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	wantErrno(t, "third open for writing", err, syscall.EMFILE)
	// A second handle on a copy already held is fine.
	f := openW(t, filepath.Join(w.dir, "1"), os.O_WRONLY)
	f.Close()
	for _, f := range open {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	f = openW(t, filepath.Join(w.dir, "3"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	f.Close()
	if got := mustGetObject(t, w.bucket, w.key("3")); !bytes.Equal(got, nil) && len(got) != 0 {
		t.Fatalf("object 3: got %q, want empty", got)
	}
}

// TestUserCopyBytesLimit: the bytes a user has being written are bounded;
// a write past the bound is EDQUOT and changes nothing, its handle's close
// fails, and finishing other uploads frees room.
func TestUserCopyBytesLimit(t *testing.T) {
	o := testOptions(t)
	o.MaxUserCopyBytes = 2<<20 + 512<<10
	w := mountWorkspace(t, o)
	a := openW(t, filepath.Join(w.dir, "a"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	writeAt(t, a, pattern(1, 2<<20), 0)
	b := openW(t, filepath.Join(w.dir, "b"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	defer b.Close()
	// The kernel splits the write; what fits goes in, the rest is refused.
	_, err := b.WriteAt(pattern(2, 1<<20), 0)
	wantErrno(t, "write past the user's bound", err, syscall.EDQUOT)
	if fi, err := b.Stat(); err != nil || fi.Size() > 512<<10 {
		t.Fatalf("size after a refused write: %v, %v; want at most the 512 KiB left", fi, err)
	}
	wantErrno(t, "close of the refused handle", b.Close(), syscall.EDQUOT)
	// Its copy waits as an interrupted upload and still counts: remove it.
	if err := os.Remove(filepath.Join(w.dir, "b")); err != nil {
		t.Fatalf("remove the interrupted upload: %v", err)
	}
	if _, err := statObject(w.bucket, w.key("b")); !isNoSuchKey(err) {
		t.Fatalf("object of the refused upload: got %v, want NoSuchKey", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("close a: %v", err)
	}
	b = openW(t, filepath.Join(w.dir, "b"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	writeAt(t, b, pattern(2, 2<<20), 0)
	if err := b.Close(); err != nil {
		t.Fatalf("close b once a is published: %v", err)
	}
}
