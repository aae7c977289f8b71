package objstore

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sync/errgroup"
)

// Limits of multipart uploads and copies (S3's).
const (
	// MaxParts is the most parts a multipart upload may have.
	MaxParts = 10000
	// MinPartSize is the smallest part but the last.
	MinPartSize = 5 << 20
	// MaxPartSize is the largest part.
	MaxPartSize = 5 << 30
	// MaxCopySize is the largest object a plain server-side copy (or one
	// copy part) takes; Copy composes bigger ones.
	MaxCopySize = 5 << 30
)

// abortTimeout bounds the abort of a multipart upload.
const abortTimeout = 30 * time.Second

// PartSize returns the size of the parts that send size bytes in at most
// parts parts: min, or more (rounded up to a MiB) when min would need
// more parts.
func PartSize(min, size int64, parts int) int64 {
	n := int64(max(parts, 1))
	if need := (size + n - 1) / n; need > min {
		return (need + 1<<20 - 1) &^ (1<<20 - 1)
	}
	return min
}

// Multipart is one multipart upload: Begin it, send its parts (PutPart,
// CopyPart; concurrently if need be), then Complete or Abort it. The
// object appears only when Complete returns.
type Multipart struct {
	s           *Store
	bucket, key string
	id          string

	// mu guards parts.
	mu    sync.Mutex
	parts []minio.CompletePart
}

// Begin starts a multipart upload of the object key, which will have the
// user metadata meta.
func (s *Store) Begin(ctx context.Context, bucket, key string, meta map[string]string) (*Multipart, error) {
	id, err := minio.Core{Client: s.c}.NewMultipartUpload(ctx, bucket, key, uploadOptions(key, meta))
	if err != nil {
		return nil, classify(err)
	}
	return &Multipart{s: s, bucket: bucket, key: key, id: id}, nil
}

// ID returns the upload's id (kept to abort it after a crash: Abort).
func (m *Multipart) ID() string { return m.id }

// PutPart sends part number n (from 1): the size bytes of r, unsigned
// with a CRC32C trailer the server checks (payload.go).
func (m *Multipart) PutPart(ctx context.Context, n int, r io.ReaderAt, off, size int64) error {
	p, err := putPart(ctx, minio.Core{Client: m.s.c}, m.bucket, m.key, m.id, n, r, off, size)
	if err != nil {
		return classify(err)
	}
	m.add(minio.CompletePart{PartNumber: n, ETag: p.ETag})
	return nil
}

// PutParts sends the bytes [from, size) of r as the parts n, n+1, … of
// partSize bytes (the last one shorter), threads at a time, and returns
// the number of the next part. It stops at the first error.
func (m *Multipart) PutParts(ctx context.Context, n int, r io.ReaderAt, from, size, partSize int64, threads int) (int, error) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, threads))
	for off := from; off < size && gctx.Err() == nil; off += partSize {
		pn, l := n, min(partSize, size-off)
		g.Go(func() error {
			if err := m.PutPart(gctx, pn, r, off, l); err != nil {
				return fmt.Errorf("part %d: %w", pn, err)
			}
			return nil
		})
		n++
	}
	if err := g.Wait(); err != nil {
		return n, err
	}
	return n, ctx.Err()
}

// CopyPart makes part number n (from 1) of length bytes at off of the
// object the upload replaces, server-side; it fails if that object's
// ETag is no longer etag.
func (m *Multipart) CopyPart(ctx context.Context, n int, etag string, off, length int64) error {
	p, err := minio.Core{Client: m.s.c}.CopyObjectPart(ctx, m.bucket, m.key, m.bucket, m.key, m.id, n, off, length,
		map[string]string{"x-amz-copy-source-if-match": etag})
	if err != nil {
		return classify(err)
	}
	m.add(p)
	return nil
}

func (m *Multipart) add(p minio.CompletePart) {
	m.mu.Lock()
	m.parts = append(m.parts, p)
	m.mu.Unlock()
}

// Complete joins the parts sent (in the order of their numbers) into the
// object and returns its ETag. No part may be sent during the call.
func (m *Multipart) Complete(ctx context.Context) (string, error) {
	m.mu.Lock()
	parts := slices.Clone(m.parts)
	m.mu.Unlock()
	slices.SortFunc(parts, func(a, b minio.CompletePart) int { return a.PartNumber - b.PartNumber })
	info, err := minio.Core{Client: m.s.c}.CompleteMultipartUpload(ctx, m.bucket, m.key, m.id, parts, minio.PutObjectOptions{})
	if err != nil {
		return "", classify(err)
	}
	return strings.Trim(info.ETag, `"`), nil
}

// Abort aborts the upload (see Store.Abort).
func (m *Multipart) Abort() error { return m.s.Abort(m.bucket, m.key, m.id) }

// Abort aborts the multipart upload id of bucket/key, on its own context
// (it runs when the upload's own may be cancelled already) bounded in
// time. An upload that no longer exists is not an error.
func (s *Store) Abort(bucket, key, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), abortTimeout)
	defer cancel()
	err := minio.Core{Client: s.c}.AbortMultipartUpload(ctx, bucket, key, id)
	if err != nil && minio.ToErrorResponse(err).Code != "NoSuchUpload" {
		return fmt.Errorf("abort upload %s/%s: %w", bucket, key, classify(err))
	}
	return nil
}
