package fusefs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// putObject stores data at bucket/key directly with minio-go.
func putObject(tb testing.TB, bucket, key string, data []byte) {
	tb.Helper()
	putObjectOpts(tb, bucket, key, data, minio.PutObjectOptions{})
}

func putObjectOpts(tb testing.TB, bucket, key string, data []byte, o minio.PutObjectOptions) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := server.Client.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), o); err != nil {
		tb.Fatalf("put %s/%s: %v", bucket, key, err)
	}
}

// putMany stores a small object ("content of <key>") at each key, directly
// with minio-go: in one snowball request (a tar that MinIO extracts), which
// creates thousands of objects in seconds where single PUTs take minutes
// on a small machine.
func putMany(tb testing.TB, bucket string, keys []string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	objs := make(chan minio.SnowballObject)
	go func() {
		defer close(objs)
		for _, k := range keys {
			data := []byte("content of " + k)
			select {
			case objs <- minio.SnowballObject{Key: k, Size: int64(len(data)), Content: bytes.NewReader(data)}:
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := server.Client.PutObjectsSnowball(ctx, bucket, minio.SnowballOptions{InMemory: true}, objs); err != nil {
		tb.Fatalf("snowball put of %d objects: %v", len(keys), err)
	}
	for _, k := range []string{keys[0], keys[len(keys)-1]} {
		if _, err := statObject(bucket, k); err != nil {
			tb.Fatalf("after the snowball put, %s: %v", k, err)
		}
	}
}

// getObject returns the content of bucket/key read directly with minio-go,
// or an error (NoSuchKey included).
func getObject(bucket, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o, err := server.Client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer o.Close()
	return io.ReadAll(o)
}

// mustGetObject is getObject that fails the test on error.
func mustGetObject(tb testing.TB, bucket, key string) []byte {
	tb.Helper()
	b, err := getObject(bucket, key)
	if err != nil {
		tb.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	return b
}

// objectSHA256 returns the SHA-256 and size of bucket/key read with minio-go.
func objectSHA256(tb testing.TB, bucket, key string) ([32]byte, int64) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o, err := server.Client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		tb.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	defer o.Close()
	h := sha256.New()
	n, err := io.Copy(h, o)
	if err != nil {
		tb.Fatalf("read %s/%s: %v", bucket, key, err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, n
}

// statObject returns bucket/key's info, or an error.
func statObject(bucket, key string) (minio.ObjectInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return server.Client.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
}

// isNoSuchKey reports whether err says the object does not exist.
func isNoSuchKey(err error) bool {
	return err != nil && minio.ToErrorResponse(err).Code == minio.NoSuchKey
}

// listKeys returns every key under prefix in bucket, sorted.
func listKeys(tb testing.TB, bucket, prefix string) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var keys []string
	for o := range server.Client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			tb.Fatalf("list %s/%s: %v", bucket, prefix, o.Err)
		}
		keys = append(keys, o.Key)
	}
	slices.Sort(keys)
	return keys
}
