package fusefs_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sftpgate/sftpgate/internal/fsapi"
)

// writeInterrupted writes data to name through the mount, marks the handle
// interrupted as sftpd does when a session ends with the file open, and
// closes it.
func writeInterrupted(t *testing.T, path string, data []byte, flags int) {
	t.Helper()
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := fsapi.Interrupt(f); err != nil {
		t.Fatalf("mark interrupted: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close of an interrupted upload: got %v, want nil (the writer is gone)", err)
	}
}

// TestInterruptedUploadResume: an upload cut off (the SFTP session ended
// with the file open) is never published as a partial object; the file
// shows its partial size in the mount so a client can resume, and the
// resumed upload publishes the whole object.
func TestInterruptedUploadResume(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	data := pattern(7, 3<<20)
	half := len(data) / 2
	path := filepath.Join(w.dir, "big.bin")

	writeInterrupted(t, path, data[:half], os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if _, err := statObject(w.bucket, w.key("big.bin")); !isNoSuchKey(err) {
		t.Fatalf("object after an interrupted upload: got %v, want NoSuchKey (never a partial object)", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat of the interrupted file: %v", err)
	}
	if fi.Size() != int64(half) {
		t.Fatalf("size of the interrupted file: got %d, want %d (what was written, for a resume)", fi.Size(), half)
	}

	// Resume as OpenSSH reput does: open without truncation, write from the
	// current size.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data[half:], int64(half)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close of the resumed upload: %v", err)
	}
	if got := mustGetObject(t, w.bucket, w.key("big.bin")); !bytes.Equal(got, data) {
		t.Fatalf("object after resume: got %d bytes, want the %d written (content equal: %v)", len(got), len(data), bytes.Equal(got[:min(len(got), len(data))], data[:min(len(got), len(data))]))
	}
}

// TestInterruptedUploadKeepsOldObject: an interrupted overwrite leaves the
// object as it was, at shutdown too.
func TestInterruptedUploadKeepsOldObject(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	old := []byte("the old content\n")
	putObject(t, w.bucket, w.key("doc.txt"), old)
	path := filepath.Join(w.dir, "doc.txt")
	if err := eventually(5*time.Second, func() error { _, err := os.Stat(path); return err }); err != nil {
		t.Fatal(err)
	}
	writeInterrupted(t, path, pattern(8, 1<<20), os.O_WRONLY|os.O_TRUNC)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.g.m.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := mustGetObject(t, w.bucket, w.key("doc.txt")); !bytes.Equal(got, old) {
		t.Fatalf("object after an interrupted overwrite and Shutdown: got %d bytes, want the old %d", len(got), len(old))
	}
}

// TestInterruptedUploadExpires: an interrupted upload nobody resumes is
// discarded by the janitor after the lifespan, without being published.
func TestInterruptedUploadExpires(t *testing.T) {
	o := testOptions(t)
	o.Lifespan = 2 * time.Second
	w := mountWorkspace(t, o)
	path := filepath.Join(w.dir, "gone.bin")
	writeInterrupted(t, path, pattern(9, 64<<10), os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	err := eventually(20*time.Second, func() error {
		if st := w.g.m.Stats(); len(st) > 0 && st[0].DirtyFiles+st[0].CleanFiles > 0 {
			return os.ErrExist
		}
		return nil
	})
	if err != nil {
		t.Fatalf("interrupted upload still in the cache after its lifespan: %+v", w.g.m.Stats())
	}
	if _, err := statObject(w.bucket, w.key("gone.bin")); !isNoSuchKey(err) {
		t.Fatalf("object of an expired interrupted upload: got %v, want NoSuchKey", err)
	}
	err = eventually(5*time.Second, func() error {
		if _, err := os.Stat(path); err == nil {
			return os.ErrExist
		}
		return nil
	})
	if err != nil {
		t.Fatalf("expired interrupted upload still visible in the mount")
	}
}

// TestInterruptedUploadSuperseded: an interrupted upload whose object is
// written since by someone else (another gateway node, another client of
// the bucket) gives way to that object once the attribute TTL has passed:
// stat, read and a resume see the new object, never the stale partial
// copy, and the resume's close publishes on top of the new object. The
// same holds when the object is deleted under an interrupted overwrite,
// and an interrupted new file is kept while its object stays absent.
func TestInterruptedUploadSuperseded(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	ttl := w.g.opts.AttrTTL
	path := filepath.Join(w.dir, "cut.bin")
	writeInterrupted(t, path, pattern(1, 256<<10), os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	time.Sleep(ttl + 200*time.Millisecond)
	if fi, err := os.Stat(path); err != nil || fi.Size() != 256<<10 {
		t.Fatalf("interrupted new file, object still absent: got %v, %v, want the 262144 bytes kept for a resume", fi, err)
	}

	// The whole file arrives through another node.
	whole := pattern(2, 1<<20)
	putObject(t, w.bucket, w.key("cut.bin"), whole)
	if err := eventually(3*ttl+2*time.Second, func() error {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if fi.Size() != int64(len(whole)) {
			return fmt.Errorf("size %d, want %d", fi.Size(), len(whole))
		}
		return nil
	}); err != nil {
		t.Fatalf("interrupted upload after the object was written elsewhere: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, whole) {
		t.Fatalf("read after the object was written elsewhere: %d bytes, %v, want the new object's %d", len(got), err, len(whole))
	}

	// An interrupted overwrite whose object is then deleted elsewhere.
	writeInterrupted(t, path, pattern(3, 64<<10), os.O_WRONLY|os.O_TRUNC)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := server.Client.RemoveObject(ctx, w.bucket, w.key("cut.bin"), minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := eventually(3*ttl+2*time.Second, func() error {
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			return fmt.Errorf("stat: got %v, want not exist", err)
		}
		return nil
	}); err != nil {
		t.Fatalf("interrupted overwrite after the object was deleted elsewhere: %v", err)
	}
}
