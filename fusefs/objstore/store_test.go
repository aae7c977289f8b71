package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/fusefs/objstore"
	"github.com/sftpgate/sftpgate/internal/testenv"
)

// TestStore runs the layer against a real MinIO server: the start-up
// check's verdicts, the sentinels of missing keys and buckets, metadata
// spellings, and multipart uploads (parts out of order, copy parts,
// abort).
func TestStore(t *testing.T) {
	srv := testenv.StartMinIOT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := objstore.Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
	c, err := objstore.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	st := objstore.NewStore(c)
	bucket := srv.NewBucket(t, "objstore")

	t.Run("check", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := ln.Addr().String()
		ln.Close()
		tests := []struct {
			name   string
			mutate func(*objstore.Config)
			want   error // nil: no error
			code   string
		}{
			{"good", func(*objstore.Config) {}, nil, ""},
			{"unknown access key", func(c *objstore.Config) { c.AccessKey = "nobody-here" }, objstore.ErrUnknownAccessKey, "InvalidAccessKeyId"},
			{"wrong secret", func(c *objstore.Config) { c.SecretKey = "wrong-secret-key" }, objstore.ErrBadSecret, "SignatureDoesNotMatch"},
			{"https to plain http", func(c *objstore.Config) { c.Secure = true }, objstore.ErrPlainHTTP, ""},
			{"nobody listening", func(c *objstore.Config) { c.Endpoint = closed }, nil, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				cfg := cfg
				tt.mutate(&cfg)
				c, err := objstore.New(cfg)
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				limit := 15 * time.Second
				if tt.name == "nobody listening" {
					limit = time.Second // the client retries a refused connection with backoff
				}
				cctx, cancel := context.WithTimeout(ctx, limit)
				defer cancel()
				err = objstore.Check(cctx, c)
				switch {
				case tt.name == "nobody listening":
					if err == nil || errors.Is(err, objstore.ErrAccessDenied) {
						t.Fatalf("Check: got %v, want a connection error", err)
					}
					if _, _, ok := objstore.ErrorCode(err); ok {
						t.Errorf("ErrorCode(%v): got ok, want no S3 code", err)
					}
				case tt.want == nil:
					if err != nil {
						t.Fatalf("Check: got %v, want nil", err)
					}
				default:
					if !errors.Is(err, tt.want) {
						t.Fatalf("Check: got %v, want %v", err, tt.want)
					}
					if code, _, _ := objstore.ErrorCode(err); code != tt.code {
						t.Errorf("ErrorCode: got %q, want %q", code, tt.code)
					}
				}
			})
		}
	})

	t.Run("missing", func(t *testing.T) {
		if _, err := st.Stat(ctx, bucket, "no/such/key"); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("Stat of a missing key: got %v, want ErrNotFound", err)
		}
		if _, err := st.Stat(ctx, "no-such-bucket-here", "k"); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("Stat in a missing bucket: got %v, want ErrNotFound", err)
		}
		var last objstore.Entry
		n := 0
		for e := range st.List(ctx, "no-such-bucket-here", objstore.ListOptions{Recursive: true}).All() {
			last = e
			n++
		}
		if n != 1 || !errors.Is(last.Err, objstore.ErrNoSuchBucket) || !errors.Is(last.Err, objstore.ErrNotFound) {
			t.Errorf("listing a missing bucket: got %d entries, last error %v, want one entry with ErrNoSuchBucket", n, last.Err)
		}
		if err := st.Remove(ctx, bucket, "no/such/key"); err != nil {
			t.Errorf("Remove of a missing key: got %v, want nil", err)
		}
		if ok, err := st.HasChildren(ctx, "no-such-bucket-here", "a/", false); ok || err != nil {
			t.Errorf("HasChildren in a missing bucket: got %v %v, want false nil", ok, err)
		}
	})

	t.Run("metadata", func(t *testing.T) {
		data := []byte("hello")
		etag, err := st.Put(ctx, bucket, "meta/a.txt", bytes.NewReader(data), int64(len(data)), map[string]string{"Mtime": "1700000000.5"}, 16<<20, 2)
		if err != nil {
			t.Fatalf("Put: %v", err)
		}
		in, err := st.Stat(ctx, bucket, "meta/a.txt")
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		if in.ETag != etag || in.Size != 5 || in.Meta("mtime") != "1700000000.5" || in.Meta("Mtime") != "1700000000.5" {
			t.Errorf("Stat: got etag %q size %d mtime %q, want %q 5 1700000000.5", in.ETag, in.Size, in.Meta("mtime"), etag)
		}
		n := 0
		for e := range st.List(ctx, bucket, objstore.ListOptions{Prefix: "meta/", WithMetadata: true}).All() {
			n++
			if e.Err != nil || e.Key != "meta/a.txt" || e.ETag != etag || e.Meta("Mtime") != "1700000000.5" {
				t.Errorf("listing: got %q etag %q mtime %q err %v, want meta/a.txt %q 1700000000.5", e.Key, e.ETag, e.Meta("Mtime"), e.Err, etag)
			}
		}
		if n != 1 {
			t.Errorf("listing: got %d entries, want 1", n)
		}
	})

	t.Run("multipart", func(t *testing.T) {
		part1 := bytes.Repeat([]byte("a"), objstore.MinPartSize)
		part2 := []byte("tail")
		mp, err := st.Begin(ctx, bucket, "mp/obj", map[string]string{"Mtime": "1.0"})
		if err != nil {
			t.Fatalf("Begin: %v", err)
		}
		if err := mp.PutPart(ctx, 2, bytes.NewReader(part2), 0, int64(len(part2))); err != nil {
			t.Fatalf("PutPart 2: %v", err)
		}
		if err := mp.PutPart(ctx, 1, bytes.NewReader(part1), 0, int64(len(part1))); err != nil {
			t.Fatalf("PutPart 1: %v", err)
		}
		etag, err := mp.Complete(ctx)
		if err != nil {
			t.Fatalf("Complete: %v", err)
		}
		want := append(append([]byte(nil), part1...), part2...)
		checkObject(t, st, bucket, "mp/obj", etag, want)

		// Append server-side: the old object as copy parts, then new bytes.
		mp, err = st.Begin(ctx, bucket, "mp/obj", nil)
		if err != nil {
			t.Fatalf("Begin: %v", err)
		}
		if err := mp.CopyPart(ctx, 1, "not-the-etag", 0, int64(len(want))); !errors.Is(err, objstore.ErrPreconditionFailed) {
			t.Errorf("CopyPart with a stale ETag: got %v, want ErrPreconditionFailed", err)
		}
		if err := mp.CopyPart(ctx, 1, etag, 0, int64(len(want))); err != nil {
			t.Fatalf("CopyPart: %v", err)
		}
		if err := mp.PutPart(ctx, 2, strings.NewReader("more"), 0, 4); err != nil {
			t.Fatalf("PutPart: %v", err)
		}
		etag, err = mp.Complete(ctx)
		if err != nil {
			t.Fatalf("Complete: %v", err)
		}
		checkObject(t, st, bucket, "mp/obj", etag, append(want, "more"...))

		// Abort: the object stays as it was; an upload gone is no error.
		mp, err = st.Begin(ctx, bucket, "mp/obj", nil)
		if err != nil {
			t.Fatalf("Begin: %v", err)
		}
		if err := mp.PutPart(ctx, 1, strings.NewReader("x"), 0, 1); err != nil {
			t.Fatalf("PutPart: %v", err)
		}
		if err := mp.Abort(); err != nil {
			t.Fatalf("Abort: %v", err)
		}
		if err := st.Abort(bucket, "mp/obj", mp.ID()); err != nil {
			t.Errorf("Abort of an aborted upload: got %v, want nil", err)
		}
		if _, err := mp.Complete(ctx); !errors.Is(err, objstore.ErrNoSuchUpload) {
			t.Errorf("Complete after Abort: got %v, want ErrNoSuchUpload", err)
		}
		checkObject(t, st, bucket, "mp/obj", etag, append(want, "more"...))
	})
}

// checkObject fails unless bucket/key has etag and holds want.
func checkObject(t *testing.T, st *objstore.Store, bucket, key, etag string, want []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := st.Stat(ctx, bucket, key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if in.ETag != etag || in.Size != int64(len(want)) {
		t.Fatalf("Stat: got etag %q size %d, want %q %d", in.ETag, in.Size, etag, len(want))
	}
	body, err := st.OpenRange(ctx, bucket, key, etag, 0, in.Size)
	if err != nil {
		t.Fatalf("OpenRange: %v", err)
	}
	defer body.Close()
	got, err := io.ReadAll(body)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("content: got %d bytes, want %d (equal: false)", len(got), len(want))
	}
	p := make([]byte, 4)
	if n, err := st.ReadAt(ctx, bucket, key, etag, p, in.Size-4); err != nil || !bytes.Equal(p[:n], want[len(want)-4:]) {
		t.Fatalf("ReadAt the tail: got %q %v, want %q", p[:n], err, want[len(want)-4:])
	}
}
