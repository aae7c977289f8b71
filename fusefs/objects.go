package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/sftpgate/sftpgate/fusefs/objstore"
	"golang.org/x/sync/errgroup"
)

// Object metadata keys, as minio-go spells user metadata (it adds the
// X-Amz-Meta- prefix on the wire).
const (
	metaMtime = "Mtime"
	metaMode  = "Mode"
)

// objInfo is what the tree needs to know about one object.
type objInfo struct {
	Key   string
	Size  int64
	ETag  string
	Mtime time.Time
	// Mode holds the stored permission bits, 0 when none were stored.
	Mode uint32
}

// objects is what the tree asks of the store, in its terms (objInfo,
// the package's errors, the configured part size and concurrency); every
// request goes through st, the object-store layer.
type objects struct {
	st          *objstore.Store
	partSize    int64
	concurrency int
	// budget is the read-ahead's memory, shared by every read handle.
	budget *readBudget
}

// infoFrom converts what the store said about an object.
func infoFrom(oi objstore.Info) objInfo {
	in := objInfo{Key: oi.Key, Size: oi.Size, ETag: oi.ETag, Mtime: oi.LastModified}
	if v := oi.Meta(metaMtime); v != "" {
		if t, ok := parseMtime(v); ok {
			in.Mtime = t
		}
	}
	if v := oi.Meta(metaMode); v != "" {
		if m, err := strconv.ParseUint(v, 8, 32); err == nil {
			in.Mode = uint32(m) & 0o777
		}
	}
	return in
}

// formatMtime renders t as float seconds, as rclone writes it.
func formatMtime(t time.Time) string {
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}

// parseMtime parses float seconds ("1700000000.123456789").
func parseMtime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	sec, frac, _ := strings.Cut(s, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	var ns int64
	if frac != "" {
		if len(frac) > 9 {
			frac = frac[:9]
		}
		frac += strings.Repeat("0", 9-len(frac))
		ns, err = strconv.ParseInt(frac, 10, 64)
		if err != nil {
			return time.Time{}, false
		}
	}
	return time.Unix(n, ns), true
}

// userMeta builds the user metadata stored with an object.
func userMeta(mtime time.Time, mode uint32) map[string]string {
	m := map[string]string{metaMtime: formatMtime(mtime)}
	if mode != 0 {
		m[metaMode] = fmt.Sprintf("%04o", mode&0o777)
	}
	return m
}

// stat returns the object's info; ErrNotFound (wrapped) when it is absent.
func (o *objects) stat(ctx context.Context, bucket, key string) (objInfo, error) {
	oi, err := o.st.Stat(ctx, bucket, key)
	if errors.Is(err, objstore.ErrNotFound) {
		return objInfo{}, fmt.Errorf("stat %s/%s: %w", bucket, key, ErrNotFound)
	}
	if err != nil {
		return objInfo{}, err
	}
	return infoFrom(oi), nil
}

// list streams the entries of one directory level (delimiter "/"), with
// their metadata. The listing ends when ctx is cancelled; callers
// stopping early cancel ctx.
func (o *objects) list(ctx context.Context, bucket, prefix string) *objstore.Listing {
	return o.st.List(ctx, bucket, objstore.ListOptions{Prefix: prefix, WithMetadata: true})
}

// download copies the whole object into w at offset 0 with parallel ranged
// GETs of partSize bytes. It fails if the object's ETag is no longer etag.
func (o *objects) download(ctx context.Context, bucket, key, etag string, size int64, w io.WriterAt) error {
	if size == 0 {
		return nil
	}
	chunk := min(o.partSize, 8<<20)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, o.concurrency))
	for off := int64(0); off < size && gctx.Err() == nil; off += chunk {
		n := min(chunk, size-off)
		g.Go(func() error {
			buf := make([]byte, n)
			got, err := o.st.ReadAt(gctx, bucket, key, etag, buf, off)
			if err == nil && int64(got) != n {
				err = fmt.Errorf("download %s/%s: short read at %d: %w", bucket, key, off, ErrConflict)
			}
			if err == nil {
				_, err = w.WriteAt(buf, off)
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	return ctx.Err()
}

// partSizeFor returns the part size for size bytes: PartSize, or more
// when PartSize would need more than objstore.MaxParts parts.
func (o *objects) partSizeFor(size int64) int64 {
	return objstore.PartSize(o.partSize, size, objstore.MaxParts)
}

// put uploads size bytes of r (read at offsets, in parallel parts) as the
// object, with the given metadata, and returns the new ETag.
func (o *objects) put(ctx context.Context, bucket, key string, r io.ReaderAt, size int64, meta map[string]string) (string, error) {
	return o.st.Put(ctx, bucket, key, r, size, meta, o.partSizeFor(size), o.concurrency)
}

// minComposeSize is the smallest existing object that an append may reuse
// server-side: every part but the last must be at least 5 MiB.
const minComposeSize = objstore.MinPartSize

// putMarker writes a zero-byte directory marker.
func (o *objects) putMarker(ctx context.Context, bucket, prefix string, mtime time.Time) error {
	return o.st.PutMarker(ctx, bucket, prefix, userMeta(mtime, 0))
}

// appendUpload rewrites key as its first base bytes (server-side copy
// parts, refused if the object's ETag is no longer etag) followed by the
// bytes [base, size) of r, in one multipart upload. No byte of the old
// object is downloaded.
func (o *objects) appendUpload(ctx context.Context, bucket, key, etag string, base int64, r io.ReaderAt, size int64, meta map[string]string) (_ string, err error) {
	mp, err := o.st.Begin(ctx, bucket, key, meta)
	if err != nil {
		return "", fmt.Errorf("append %s/%s: %w", bucket, key, err)
	}
	defer func() {
		if err != nil {
			mp.Abort()
		}
	}()
	n := 1
	k := (base + objstore.MaxCopySize - 1) / objstore.MaxCopySize
	per := base / k
	for i := int64(0); i < k; i++ {
		start, length := i*per, per
		if i == k-1 {
			length = base - start
		}
		if err := mp.CopyPart(ctx, n, etag, start, length); err != nil {
			return "", fmt.Errorf("append %s/%s: copy part: %w", bucket, key, err)
		}
		n++
	}
	// The new bytes, in parallel parts read at their offsets.
	if _, err := mp.PutParts(ctx, n, r, base, size, o.partSizeFor(size-base), o.concurrency); err != nil {
		return "", fmt.Errorf("append %s/%s: %w", bucket, key, err)
	}
	etag, err = mp.Complete(ctx)
	if err != nil {
		return "", fmt.Errorf("append %s/%s: %w", bucket, key, err)
	}
	return etag, nil
}
