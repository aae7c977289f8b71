package fusefs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sftpgate/sftpgate/fusefs"
)

// TestMtime checks that mtime is kept as X-Amz-Meta-Mtime and shown back.
func TestMtime(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	want := time.Date(2020, 1, 2, 3, 4, 5, 500_000_000, time.UTC)

	t.Run("chtimes", func(t *testing.T) {
		p := filepath.Join(w.dir, "dated.txt")
		if err := os.WriteFile(p, []byte("dated"), 0o644); err != nil {
			t.Fatalf("WriteFile: %v", err)
		}
		if err := os.Chtimes(p, want, want); err != nil {
			t.Fatalf("Chtimes: %v", err)
		}
		info, err := statObject(w.bucket, w.key("dated.txt"))
		if err != nil {
			t.Fatalf("stat object: %v", err)
		}
		raw := info.Metadata.Get("X-Amz-Meta-Mtime")
		var secs float64
		if _, err := fmt.Sscanf(raw, "%g", &secs); err != nil {
			t.Fatalf("X-Amz-Meta-Mtime: got %q, want float seconds", raw)
		}
		if got := time.Unix(0, int64(secs*1e9)); got.Sub(want).Abs() > time.Millisecond {
			t.Errorf("X-Amz-Meta-Mtime: got %q (%v), want %v", raw, got.UTC(), want)
		}
		if got := mustGetObject(t, w.bucket, w.key("dated.txt")); string(got) != "dated" {
			t.Errorf("object content after Chtimes: got %q, want %q", got, "dated")
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		if got := fi.ModTime(); got.Sub(want).Abs() > time.Millisecond {
			t.Errorf("mtime through the mount: got %v, want %v", got.UTC(), want)
		}
	})

	t.Run("from metadata", func(t *testing.T) {
		putObjectOpts(t, w.bucket, w.key("rclone.txt"), []byte("x"), minio.PutObjectOptions{
			UserMetadata: map[string]string{"Mtime": "1577934245.5"},
		})
		fi, err := os.Stat(filepath.Join(w.dir, "rclone.txt"))
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		if got := fi.ModTime(); got.Sub(want).Abs() > time.Millisecond {
			t.Errorf("mtime: got %v, want %v", got.UTC(), want)
		}
	})

	t.Run("last modified", func(t *testing.T) {
		putObject(t, w.bucket, w.key("plain.txt"), []byte("x"))
		info, err := statObject(w.bucket, w.key("plain.txt"))
		if err != nil {
			t.Fatalf("stat object: %v", err)
		}
		fi, err := os.Stat(filepath.Join(w.dir, "plain.txt"))
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		if got := fi.ModTime(); got.Sub(info.LastModified).Abs() > time.Second {
			t.Errorf("mtime: got %v, want LastModified %v", got.UTC(), info.LastModified.UTC())
		}
	})
}

// TestChmod checks that permission bits set with chmod are kept with the
// object: a fresh Manager (no cache) shows them.
func TestChmod(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	p := filepath.Join(w.dir, "private.txt")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatalf("Chmod: %v", err)
	}
	fresh := newGateway(t, testOptions(t))
	fresh.grants.set("alice", fusefs.Workspace{Slug: "ws", Bucket: w.bucket, Prefix: w.prefix})
	for _, dir := range []string{w.dir, filepath.Join(fresh.acquire(t, "alice"), "ws")} {
		fi, err := os.Stat(filepath.Join(dir, "private.txt"))
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("mode in %s: got %o, want 600", dir, got)
		}
	}
	if got := string(mustGetObject(t, w.bucket, w.key("private.txt"))); got != "x" {
		t.Errorf("object after Chmod: got %q, want %q", got, "x")
	}
}
