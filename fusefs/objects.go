package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sync/errgroup"
)

// Object metadata keys, as minio-go spells user metadata (it adds the
// X-Amz-Meta- prefix on the wire).
const (
	metaMtime = "Mtime"
	metaMode  = "Mode"
)

// maxCopySize is the largest object CopyObject accepts; bigger objects are
// copied with ComposeObject.
const maxCopySize = 5 << 30

// objInfo is what the tree needs to know about one object.
type objInfo struct {
	Key   string
	Size  int64
	ETag  string
	Mtime time.Time
	// Mode holds the stored permission bits, 0 when none were stored.
	Mode uint32
}

// objects is the object layer: every call to MinIO goes through it.
type objects struct {
	c           *minio.Client
	partSize    int64
	concurrency int
	// budget is the read-ahead's memory, shared by every read handle.
	budget *readBudget
}

// infoFrom converts a minio-go ObjectInfo.
func infoFrom(oi minio.ObjectInfo) objInfo {
	in := objInfo{Key: oi.Key, Size: oi.Size, ETag: strings.Trim(oi.ETag, `"`), Mtime: oi.LastModified}
	if v := metaValue(oi, metaMtime); v != "" {
		if t, ok := parseMtime(v); ok {
			in.Mtime = t
		}
	}
	if v := metaValue(oi, metaMode); v != "" {
		if m, err := strconv.ParseUint(v, 8, 32); err == nil {
			in.Mode = uint32(m) & 0o777
		}
	}
	return in
}

// metaValue finds a user metadata value whatever the spelling the server
// or the listing used (Mtime, X-Amz-Meta-Mtime, x-amz-meta-mtime).
func metaValue(oi minio.ObjectInfo, name string) string {
	for k, v := range oi.UserMetadata {
		lk := strings.ToLower(k)
		if lk == strings.ToLower(name) || lk == "x-amz-meta-"+strings.ToLower(name) {
			return v
		}
	}
	if oi.Metadata != nil {
		if v := oi.Metadata.Get("X-Amz-Meta-" + name); v != "" {
			return v
		}
	}
	return ""
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
	oi, err := o.c.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
	if err != nil {
		if isNotFound(err) {
			return objInfo{}, fmt.Errorf("stat %s/%s: %w", bucket, key, ErrNotFound)
		}
		return objInfo{}, fmt.Errorf("stat %s/%s: %w", bucket, key, err)
	}
	return infoFrom(oi), nil
}

// hasChildren reports whether any key starts with prefix (which ends in "/"),
// other than the marker prefix itself when skipMarker is set.
func (o *objects) hasChildren(ctx context.Context, bucket, prefix string, skipMarker bool) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for oi := range o.c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, MaxKeys: 2}) {
		if oi.Err != nil {
			if isNotFound(oi.Err) {
				return false, nil
			}
			return false, fmt.Errorf("list %s/%s: %w", bucket, prefix, oi.Err)
		}
		if skipMarker && oi.Key == prefix {
			continue
		}
		return true, nil
	}
	return false, ctx.Err()
}

// list streams the entries of one directory level (delimiter "/"). The
// returned channel is closed when the listing ends or ctx is cancelled;
// callers stopping early cancel ctx.
func (o *objects) list(ctx context.Context, bucket, prefix string) <-chan minio.ObjectInfo {
	return o.c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, WithMetadata: true})
}

// listAll streams every key under prefix (no delimiter).
func (o *objects) listAll(ctx context.Context, bucket, prefix string) <-chan minio.ObjectInfo {
	return o.c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true})
}

// readRange reads len(p) bytes at off (fewer at the end of the object).
// etag, when set, makes the read fail if the object changed.
func (o *objects) readRange(ctx context.Context, bucket, key, etag string, p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(off, off+int64(len(p))-1); err != nil {
		return 0, fmt.Errorf("read %s/%s: %w", bucket, key, err)
	}
	if etag != "" {
		if err := opts.SetMatchETag(etag); err != nil {
			return 0, fmt.Errorf("read %s/%s: %w", bucket, key, err)
		}
	}
	obj, err := o.c.GetObject(ctx, bucket, key, opts)
	if err != nil {
		return 0, fmt.Errorf("read %s/%s: %w", bucket, key, err)
	}
	defer obj.Close()
	n, err := io.ReadFull(obj, p)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil
	}
	if err != nil {
		return n, fmt.Errorf("read %s/%s: %w", bucket, key, err)
	}
	return n, nil
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
			got, err := o.readRange(gctx, bucket, key, etag, buf, off)
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

// contentType guesses a content type from the key's extension.
func contentType(key string) string {
	if t := mime.TypeByExtension(path.Ext(key)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// maxParts is the most parts a multipart upload may have.
const maxParts = 10000

// partSizeFor returns the part size for size bytes: PartSize, or more
// (rounded to MiB) when PartSize would need more than maxParts parts.
func (o *objects) partSizeFor(size int64) int64 {
	ps := o.partSize
	if need := (size + maxParts - 1) / maxParts; need > ps {
		ps = (need + 1<<20 - 1) &^ (1<<20 - 1)
	}
	return ps
}

// put uploads size bytes of r (read at offsets, in parallel parts) as the
// object, with the given metadata, and returns the new ETag. What fits in
// one part goes in a single PUT.
func (o *objects) put(ctx context.Context, bucket, key string, r io.ReaderAt, size int64, meta map[string]string) (_ string, err error) {
	ps := o.partSizeFor(size)
	if size <= ps {
		info, err := putSingle(ctx, o.c, bucket, key, r, size, meta)
		if err != nil {
			return "", fmt.Errorf("put %s/%s: %w", bucket, key, err)
		}
		return strings.Trim(info.ETag, `"`), nil
	}
	core := minio.Core{Client: o.c}
	id, err := core.NewMultipartUpload(ctx, bucket, key, minio.PutObjectOptions{ContentType: contentType(key), UserMetadata: meta})
	if err != nil {
		return "", fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	defer func() {
		if err != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			core.AbortMultipartUpload(actx, bucket, key, id)
		}
	}()
	parts, err := o.putParts(ctx, core, bucket, key, id, 1, r, 0, size)
	if err != nil {
		return "", fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	info, err := core.CompleteMultipartUpload(ctx, bucket, key, id, parts, minio.PutObjectOptions{})
	if err != nil {
		return "", fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	return strings.Trim(info.ETag, `"`), nil
}

// putParts uploads the bytes [from, size) of r as the parts n, n+1...
// of the multipart upload id, o.concurrency at a time, and returns them.
func (o *objects) putParts(ctx context.Context, core minio.Core, bucket, key, id string, n int, r io.ReaderAt, from, size int64) ([]minio.CompletePart, error) {
	ps := o.partSizeFor(size - from)
	type job struct {
		n      int
		off, l int64
	}
	var jobs []job
	for off := from; off < size; off += ps {
		jobs = append(jobs, job{n: n, off: off, l: min(ps, size-off)})
		n++
	}
	parts := make([]minio.CompletePart, len(jobs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, o.concurrency))
	for i, j := range jobs {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			p, err := putPart(gctx, core, bucket, key, id, j.n, r, j.off, j.l)
			if err != nil {
				return fmt.Errorf("part %d: %w", j.n, err)
			}
			parts[i] = minio.CompletePart{PartNumber: j.n, ETag: p.ETag}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return parts, nil
}

// putMarker writes a zero-byte directory marker.
func (o *objects) putMarker(ctx context.Context, bucket, prefix string, mtime time.Time) error {
	_, err := o.c.PutObject(ctx, bucket, prefix, strings.NewReader(""), 0, minio.PutObjectOptions{
		ContentType:  "application/x-directory",
		UserMetadata: userMeta(mtime, 0),
	})
	if err != nil {
		return fmt.Errorf("mkdir %s/%s: %w", bucket, prefix, err)
	}
	return nil
}

// copy copies an object server-side; meta, when non-nil, replaces the user
// metadata. Objects over 5 GiB are copied with ComposeObject.
func (o *objects) copy(ctx context.Context, srcBucket, srcKey, dstBucket, dstKey string, size int64, meta map[string]string) (string, error) {
	dst := minio.CopyDestOptions{Bucket: dstBucket, Object: dstKey}
	if meta != nil {
		dst.UserMetadata = meta
		dst.ReplaceMetadata = true
	}
	src := minio.CopySrcOptions{Bucket: srcBucket, Object: srcKey}
	var (
		info minio.UploadInfo
		err  error
	)
	if size > maxCopySize {
		info, err = o.c.ComposeObject(ctx, dst, src)
	} else {
		info, err = o.c.CopyObject(ctx, dst, src)
	}
	if err != nil {
		return "", fmt.Errorf("copy %s/%s to %s/%s: %w", srcBucket, srcKey, dstBucket, dstKey, err)
	}
	return strings.Trim(info.ETag, `"`), nil
}

// remove deletes one object (absent objects are not an error).
func (o *objects) remove(ctx context.Context, bucket, key string) error {
	if err := o.c.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
		return fmt.Errorf("remove %s/%s: %w", bucket, key, err)
	}
	return nil
}

// removeAll deletes the keys sent on keys in batches (RemoveObjects) and
// returns the first error. It drains keys.
func (o *objects) removeAll(ctx context.Context, bucket string, keys <-chan minio.ObjectInfo) error {
	var first error
	for e := range o.c.RemoveObjects(ctx, bucket, keys, minio.RemoveObjectsOptions{}) {
		if e.Err != nil && first == nil && !isNotFound(e.Err) {
			first = fmt.Errorf("remove %s/%s: %w", bucket, e.ObjectName, e.Err)
		}
	}
	return first
}

// ensureBucket creates bucket if it does not exist.
func (o *objects) ensureBucket(ctx context.Context, bucket string) error {
	ok, err := o.c.BucketExists(ctx, bucket)
	if err == nil && ok {
		return nil
	}
	err = o.c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{})
	if err != nil {
		var er minio.ErrorResponse
		if errors.As(err, &er) && (er.Code == "BucketAlreadyOwnedByYou" || er.Code == "BucketAlreadyExists") {
			return nil
		}
		return fmt.Errorf("make bucket %s: %w", bucket, err)
	}
	return nil
}

// removePrefix deletes every key under prefix in batches.
func (o *objects) removePrefix(ctx context.Context, bucket, prefix string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	keys := make(chan minio.ObjectInfo)
	var listErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(keys)
		for oi := range o.listAll(ctx, bucket, prefix) {
			if oi.Err != nil {
				if !isNotFound(oi.Err) {
					listErr = fmt.Errorf("list %s/%s: %w", bucket, prefix, oi.Err)
				}
				return
			}
			select {
			case keys <- minio.ObjectInfo{Key: oi.Key}:
			case <-ctx.Done():
				return
			}
		}
	}()
	err := o.removeAll(ctx, bucket, keys)
	cancel()
	<-done
	if err != nil {
		return err
	}
	return listErr
}

// minComposeSize is the smallest existing object that an append may reuse
// server-side: every part but the last must be at least 5 MiB.
const minComposeSize = 5 << 20

// appendUpload rewrites key as its first base bytes (server-side copy
// parts, refused if the object's ETag is no longer etag) followed by the
// bytes [base, size) of r, in one multipart upload. No byte of the old
// object is downloaded.
func (o *objects) appendUpload(ctx context.Context, bucket, key, etag string, base int64, r io.ReaderAt, size int64, meta map[string]string) (_ string, err error) {
	core := minio.Core{Client: o.c}
	id, err := core.NewMultipartUpload(ctx, bucket, key, minio.PutObjectOptions{ContentType: contentType(key), UserMetadata: meta})
	if err != nil {
		return "", fmt.Errorf("append %s/%s: %w", bucket, key, err)
	}
	defer func() {
		if err != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			core.AbortMultipartUpload(actx, bucket, key, id)
		}
	}()
	var parts []minio.CompletePart
	n := 1
	k := (base + maxCopySize - 1) / maxCopySize
	per := base / k
	for i := int64(0); i < k; i++ {
		start, length := i*per, per
		if i == k-1 {
			length = base - start
		}
		p, err := core.CopyObjectPart(ctx, bucket, key, bucket, key, id, n, start, length,
			map[string]string{"x-amz-copy-source-if-match": etag})
		if err != nil {
			return "", fmt.Errorf("append %s/%s: copy part: %w", bucket, key, err)
		}
		parts = append(parts, p)
		n++
	}
	// The new bytes, in parallel parts read at their offsets.
	tail, err := o.putParts(ctx, core, bucket, key, id, n, r, base, size)
	if err != nil {
		return "", fmt.Errorf("append %s/%s: %w", bucket, key, err)
	}
	parts = append(parts, tail...)
	info, err := core.CompleteMultipartUpload(ctx, bucket, key, id, parts, minio.PutObjectOptions{})
	if err != nil {
		return "", fmt.Errorf("append %s/%s: %w", bucket, key, err)
	}
	return strings.Trim(info.ETag, `"`), nil
}
