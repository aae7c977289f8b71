package fusefs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// TestParallelWriteAt writes a 64 MiB file from 8 goroutines in shuffled
// 32 KiB chunks and checks the object that lands in MinIO.
func TestParallelWriteAt(t *testing.T) {
	const (
		size    = 64 << 20
		chunk   = 32 << 10
		writers = 8
	)
	w := mountWorkspace(t, testOptions(t))
	src := pattern(64, size)
	order := rand.New(rand.NewPCG(1, 2)).Perm(size / chunk)

	f, err := os.Create(filepath.Join(w.dir, "big.bin"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < len(order); i += writers {
				off := int64(order[i]) * chunk
				if _, err := f.WriteAt(src[off:off+chunk], off); err != nil {
					errs[g] = fmt.Errorf("WriteAt(%d): %w", off, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	sum, n := objectSHA256(t, w.bucket, w.key("big.bin"))
	if n != size {
		t.Errorf("object size: got %d, want %d", n, size)
	}
	if want := sha256.Sum256(src); sum != want {
		t.Errorf("object SHA-256: got %x, want %x", sum, want)
	}
}

// TestResume writes half a file, closes it, then appends the rest: the
// object must hold the whole, and the second open must not GET the first
// half back.
func TestResume(t *testing.T) {
	tests := []struct {
		name     string
		half     int // above S3's 5 MiB minimum part, composing is possible
		lifespan time.Duration
		expire   bool // wait until the local copy is gone before resuming
		maxGets  int
	}{
		{name: "local copy kept", half: 6 << 20, lifespan: 15 * time.Minute},
		{name: "local copy expired", half: 6 << 20, lifespan: 200 * time.Millisecond, expire: true},
		// Too small to compose: downloading the first part is allowed.
		{name: "local copy expired, small", half: 100 << 10, lifespan: 200 * time.Millisecond, expire: true, maxGets: 1 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions(t)
			o.Lifespan = tt.lifespan
			w := mountWorkspace(t, o)
			half := tt.half
			src := pattern(7, 2*half+12345)
			p := filepath.Join(w.dir, "resumed.bin")
			if err := os.WriteFile(p, src[:half], 0o644); err != nil {
				t.Fatalf("first half: %v", err)
			}
			if got, _ := statObject(w.bucket, w.key("resumed.bin")); got.Size != int64(half) {
				t.Fatalf("after first close, object size: got %d, want %d", got.Size, half)
			}
			if tt.expire {
				err := eventually(30*time.Second, func() error {
					for _, s := range w.g.m.Stats() {
						if s.CleanBytes != 0 || s.DirtyBytes != 0 {
							return fmt.Errorf("local copy still there: clean %d, dirty %d bytes", s.CleanBytes, s.DirtyBytes)
						}
					}
					return nil
				})
				if err != nil {
					t.Fatalf("waiting for the janitor (Lifespan %v): %v", tt.lifespan, err)
				}
			}
			before := w.g.counter.objectGets(w.bucket, w.key("resumed.bin"))
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			if _, err := f.Write(src[half:]); err != nil {
				t.Errorf("Write: %v", err)
			}
			if err := f.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if got := w.g.counter.objectGets(w.bucket, w.key("resumed.bin")) - before; got > tt.maxGets {
				t.Errorf("object GETs during the resumed upload: got %d, want at most %d", got, tt.maxGets)
			}
			if got := mustGetObject(t, w.bucket, w.key("resumed.bin")); !bytes.Equal(got, src) {
				t.Errorf("object: got %d bytes (equal to source: false), want the %d source bytes", len(got), len(src))
			}
			if keys := listKeys(t, w.bucket, ""); len(keys) != 1 {
				t.Errorf("keys in bucket: got %q, want one object", keys)
			}
		})
	}
}

// TestOverwrite replaces an existing object, longer and shorter.
func TestOverwrite(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	tests := []struct{ name, old, new string }{
		{name: "shorter", old: "the original long content", new: "short"},
		{name: "longer", old: "tiny", new: "a much longer replacement"},
		{name: "empty", old: "something", new: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			putObject(t, w.bucket, w.key(tt.name), []byte(tt.old))
			p := filepath.Join(w.dir, tt.name)
			if err := os.WriteFile(p, []byte(tt.new), 0o644); err != nil {
				t.Fatalf("WriteFile: %v", err)
			}
			if got := string(mustGetObject(t, w.bucket, w.key(tt.name))); got != tt.new {
				t.Errorf("object: got %q, want %q", got, tt.new)
			}
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("ReadFile: %v", err)
			}
			if string(got) != tt.new {
				t.Errorf("through the mount: got %q, want %q", got, tt.new)
			}
		})
	}
}

// TestTruncate shrinks and grows existing objects by path and by handle.
func TestTruncate(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	tests := []struct {
		name     string
		size     int64
		byHandle bool
		want     string
	}{
		{name: "shrink", size: 5, want: "hello"},
		{name: "to zero", size: 0, want: ""},
		{name: "grow", size: 14, want: "hello world\x00\x00\x00"},
		{name: "shrink by handle", size: 4, byHandle: true, want: "hell"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := w.key(tt.name)
			putObject(t, w.bucket, key, []byte("hello world"))
			p := filepath.Join(w.dir, tt.name)
			if tt.byHandle {
				f, err := os.OpenFile(p, os.O_RDWR, 0)
				if err != nil {
					t.Fatalf("OpenFile: %v", err)
				}
				if err := f.Truncate(tt.size); err != nil {
					t.Errorf("Ftruncate: %v", err)
				}
				if err := f.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			} else if err := os.Truncate(p, tt.size); err != nil {
				t.Fatalf("Truncate: %v", err)
			}
			if got := string(mustGetObject(t, w.bucket, key)); got != tt.want {
				t.Errorf("object: got %q, want %q", got, tt.want)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if fi.Size() != tt.size {
				t.Errorf("size through the mount: got %d, want %d", fi.Size(), tt.size)
			}
		})
	}
}

// TestMkdirMarker checks that mkdir writes a zero-byte "dir/" marker.
func TestMkdirMarker(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	for _, d := range []string{"empty", "empty/nested"} {
		if err := os.Mkdir(filepath.Join(w.dir, d), 0o755); err != nil {
			t.Fatalf("Mkdir(%s): %v", d, err)
		}
		info, err := statObject(w.bucket, w.key(d+"/"))
		if err != nil {
			t.Errorf("marker %s/: %v", d, err)
			continue
		}
		if info.Size != 0 {
			t.Errorf("marker %s/ size: got %d, want 0", d, info.Size)
		}
	}
	fi, err := os.Stat(filepath.Join(w.dir, "empty", "nested"))
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if !fi.IsDir() {
		t.Errorf("empty/nested: got mode %v, want a directory", fi.Mode())
	}
}

// TestCloseReturnsUploadError removes the bucket behind the mount's back:
// the upload at close fails and close must say so.
func TestCloseReturnsUploadError(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	w.g.shutdownErrOK = true // the file stays dirty: Shutdown may say so
	f, err := os.Create(filepath.Join(w.dir, "doomed.txt"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("never stored")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := server.Client.RemoveBucketWithOptions(ctx, w.bucket, minio.RemoveBucketOptions{ForceDelete: true}); err != nil {
		t.Fatalf("remove bucket: %v", err)
	}
	if err := f.Close(); err == nil {
		t.Errorf("Close: got no error, want the upload's error")
	}
}

// TestFsyncUploads checks that fsync uploads what was written so far,
// before close.
func TestFsyncUploads(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	f, err := os.Create(filepath.Join(w.dir, "synced.txt"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer f.Close()
	for _, part := range []string{"first", " second"} {
		if _, err := f.WriteString(part); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if err := f.Sync(); err != nil {
			t.Fatalf("Fsync: %v", err)
		}
	}
	if got, err := getObject(w.bucket, w.key("synced.txt")); err != nil || string(got) != "first second" {
		t.Errorf("object after fsync, before close: got %q, %v, want %q", got, err, "first second")
	}
	if _, err := f.WriteString(" third"); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := string(mustGetObject(t, w.bucket, w.key("synced.txt"))); got != "first second third" {
		t.Errorf("object after close: got %q, want %q", got, "first second third")
	}
}
