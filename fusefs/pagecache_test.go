package fusefs_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// TestPageCacheKeptPerVersion: the kernel keeps a file's pages from one
// open to the next while the object is the same version (a re-read, or a
// read after writing it, costs no FUSE read), and drops them as soon as
// the object changed, even behind the mount with the same size, mtime and
// mode, so a stale page is never read.
func TestPageCacheKeptPerVersion(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	p := filepath.Join(w.dir, "cached.bin")
	first := pattern(1, 3<<20)
	if err := os.WriteFile(p, first, 0o644); err != nil {
		t.Fatal(err)
	}
	readBack := func(what string, want []byte) {
		t.Helper()
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: read %d bytes (%v), want the %d of that version", what, len(got), err, len(want))
		}
	}
	before := fuseReads(w.g.m.Counters())
	readBack("read after writing", first)
	readBack("second read", first)
	if n := fuseReads(w.g.m.Counters()) - before; n != 0 {
		t.Errorf("reading a file written through the mount, twice: %d FUSE reads, want 0 (pages kept)", n)
	}

	// Same size, same metadata (mtime, mode): only the ETag tells.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := server.Client.StatObject(ctx, w.bucket, w.key("cached.bin"), minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	second := pattern(2, len(first))
	if _, err := server.Client.PutObject(ctx, w.bucket, w.key("cached.bin"), bytes.NewReader(second), int64(len(second)),
		minio.PutObjectOptions{UserMetadata: info.UserMetadata}); err != nil {
		t.Fatal(err)
	}
	before = fuseReads(w.g.m.Counters())
	err = eventually(5*time.Second, func() error {
		got, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, second) {
			if !bytes.Equal(got, first) {
				t.Fatalf("read a mix of the two versions")
			}
			return os.ErrExist // still the first version: wait
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after the object changed behind the mount, still reading the old version: %v", err)
	}
	if fuseReads(w.g.m.Counters()) == before {
		t.Errorf("the new version was read without any FUSE read")
	}
	before = fuseReads(w.g.m.Counters())
	readBack("re-read of the new version", second)
	if n := fuseReads(w.g.m.Counters()) - before; n != 0 {
		t.Errorf("re-read of an unchanged version: %d FUSE reads, want 0", n)
	}

	// A write through another handle of the same file drops them too.
	third := pattern(3, len(first))
	if err := os.WriteFile(p, third, 0o644); err != nil {
		t.Fatal(err)
	}
	readBack("read after rewriting", third)
}
