package embedstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// TestStoreBehaviour checks, through minio-go, every S3 behaviour the FUSE
// layer relies on, and that content is stored byte for byte (the trap that
// disqualified gofakes3: aws-chunked framing kept inside objects).
func TestStoreBehaviour(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	c, err := s.Client(nil)
	if err != nil {
		t.Fatal(err)
	}
	const bucket = "embed-test"
	if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}

	// Multipart upload with a known size, parallel parts, user metadata.
	big := make([]byte, 40<<20+123)
	rand.Read(big)
	_, err = c.PutObject(ctx, bucket, "dir/big.bin", bytes.NewReader(big), int64(len(big)), minio.PutObjectOptions{
		PartSize:     16 << 20,
		NumThreads:   4,
		UserMetadata: map[string]string{"Mtime": "1700000000.5"},
	})
	if err != nil {
		t.Fatalf("multipart put: %v", err)
	}
	st, err := c.StatObject(ctx, bucket, "dir/big.bin", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != int64(len(big)) {
		t.Fatalf("size: got %d, want %d", st.Size, len(big))
	}
	if got := st.UserMetadata["Mtime"]; got != "1700000000.5" {
		t.Errorf("metadata Mtime: got %q, want %q (all: %v)", got, "1700000000.5", st.UserMetadata)
	}
	obj, err := c.GetObject(ctx, bucket, "dir/big.bin", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, obj); err != nil {
		t.Fatal(err)
	}
	if got, want := h.Sum(nil), sha256.Sum256(big); !bytes.Equal(got, want[:]) {
		t.Fatal("multipart object content differs from what was uploaded")
	}

	// Ranged GET.
	ro := minio.GetObjectOptions{}
	ro.SetRange(1000, 1999)
	obj, err = c.GetObject(ctx, bucket, "dir/big.bin", ro)
	if err != nil {
		t.Fatal(err)
	}
	part, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(part, big[1000:2000]) {
		t.Fatalf("ranged get: got %d bytes, not the range", len(part))
	}

	// Zero-byte directory marker and listing with delimiter.
	for _, k := range []string{"empty/", "dir/sub/a.txt", "top.txt"} {
		if _, err := c.PutObject(ctx, bucket, k, bytes.NewReader(nil), 0, minio.PutObjectOptions{}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	var got []string
	for o := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		got = append(got, o.Key)
	}
	sort.Strings(got)
	want := []string{"dir/", "empty/", "top.txt"}
	if !equal(got, want) {
		t.Errorf("root listing: got %v, want %v", got, want)
	}
	got = nil
	for o := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: "dir/"}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		got = append(got, o.Key)
	}
	sort.Strings(got)
	if want := []string{"dir/big.bin", "dir/sub/"}; !equal(got, want) {
		t.Errorf("dir/ listing: got %v, want %v", got, want)
	}

	// Server-side copy keeps the content.
	if _, err := c.CopyObject(ctx, minio.CopyDestOptions{Bucket: bucket, Object: "copy.bin"}, minio.CopySrcOptions{Bucket: bucket, Object: "dir/big.bin"}); err != nil {
		t.Fatalf("copy: %v", err)
	}
	cst, err := c.StatObject(ctx, bucket, "copy.bin", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cst.Size != int64(len(big)) {
		t.Errorf("copy size: got %d, want %d", cst.Size, len(big))
	}

	// Batch delete.
	objs := make(chan minio.ObjectInfo, 3)
	for _, k := range []string{"copy.bin", "top.txt", "empty/"} {
		objs <- minio.ObjectInfo{Key: k}
	}
	close(objs)
	for e := range c.RemoveObjects(ctx, bucket, objs, minio.RemoveObjectsOptions{}) {
		t.Errorf("remove %s: %v", e.ObjectName, e.Err)
	}
	for _, k := range []string{"copy.bin", "top.txt", "empty/"} {
		if _, err := c.StatObject(ctx, bucket, k, minio.StatObjectOptions{}); err == nil {
			t.Errorf("%s still exists after batch delete", k)
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestEmptyPutsInARow is the regression test of emptyChunkedPutCloser:
// directory markers (empty PUTs) one after another, then other requests,
// on one client, all succeed.
func TestEmptyPutsInARow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	c, err := s.Client(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MakeBucket(ctx, "markers", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		key := fmt.Sprintf("d%d/", i)
		if _, err := c.PutObject(ctx, "markers", key, bytes.NewReader(nil), 0, minio.PutObjectOptions{}); err != nil {
			t.Fatalf("empty put %d (%s): %v", i, key, err)
		}
		if _, err := c.StatObject(ctx, "markers", key, minio.StatObjectOptions{}); err != nil {
			t.Fatalf("stat after empty put %d: %v", i, err)
		}
	}
}
