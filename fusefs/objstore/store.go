// Package objstore is the one door to the object store: every request to
// MinIO (or any S3 server) made by sftpgate goes through it, and it is the
// only package of the module, outside tests, internal/testenv and
// internal/embedstore, that imports minio-go. It owns the client's
// configuration and start-up check, listings as its own Entry type,
// multipart uploads (Multipart) with their part sizes, and the mapping of
// S3 error codes to sentinel errors (errors.Is).
package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Client is the S3 client a Store uses. It is minio-go's own type, named
// here so that the packages above this one (fusefs.Options, the daemon's
// wiring) can hold one without importing minio-go.
type Client = minio.Client

// Config says how to reach an S3 server.
type Config struct {
	// Endpoint is host:port, without a scheme; required.
	Endpoint string
	// AccessKey and SecretKey are the credentials.
	AccessKey, SecretKey string
	// Secure selects https.
	Secure bool
	// Region is the S3 region; "" lets the client discover it.
	Region string
	// Transport, if not nil, wraps the client's HTTP transport (metrics).
	Transport func(http.RoundTripper) http.RoundTripper
}

// New returns a client for cfg. It makes no request: Check does.
func New(cfg Config) (*Client, error) {
	opts := &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: cfg.Secure,
		Region: cfg.Region,
	}
	if cfg.Transport != nil {
		base, err := minio.DefaultTransport(cfg.Secure)
		if err != nil {
			return nil, fmt.Errorf("objstore: transport: %w", err)
		}
		opts.Transport = cfg.Transport(base)
	}
	c, err := minio.New(cfg.Endpoint, opts)
	if err != nil {
		return nil, fmt.Errorf("objstore: endpoint %q: %w", cfg.Endpoint, err)
	}
	return c, nil
}

// Check makes one authenticated request (a bucket listing) with c. Its
// error, when the server answered, wraps the sentinel of the S3 code
// (ErrUnknownAccessKey, ErrBadSecret, ErrAccessDenied, …; ErrorCode gives
// the code and message); ErrPlainHTTP when an https client met a plain
// http server; else it is the error of the connection. Its text is the
// client's alone, with no prefix: the caller's message names the
// endpoint and the setting to fix.
func Check(ctx context.Context, c *Client) error {
	_, err := c.ListBuckets(ctx)
	if err == nil {
		return nil
	}
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return &codeError{err: err, kinds: []error{ErrPlainHTTP}}
	}
	return classify(err)
}

// Store makes the requests of the layers above: objects, listings and
// multipart uploads. It is safe for concurrent use.
type Store struct {
	c *minio.Client
}

// NewStore returns the Store that talks through c.
func NewStore(c *Client) *Store { return &Store{c: c} }

// Object metadata is passed as minio-go spells user metadata: names
// without the X-Amz-Meta- prefix, which the client adds on the wire.

// uploadOptions are the options of every upload of an object's content:
// a whole PutObject (Put sets its part size and threads) and the creation
// of a multipart upload (Begin). The content type is guessed from the
// key's extension.
func uploadOptions(key string, meta map[string]string) minio.PutObjectOptions {
	return minio.PutObjectOptions{ContentType: contentType(key), UserMetadata: meta}
}

// contentType guesses a content type from the key's extension.
func contentType(key string) string {
	if t := mime.TypeByExtension(path.Ext(key)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// Info is what a stat or a listing tells about one object.
type Info struct {
	// Key is the object's key; in a listing one level deep, a common
	// prefix (ending in "/") stands for the keys below it.
	Key string
	// Size is the object's size in bytes.
	Size int64
	// ETag is the object's ETag, without quotes.
	ETag string
	// LastModified is when the server stored the object.
	LastModified time.Time
	// meta and header hold the user metadata as the server or the listing
	// gave it; Meta reads them.
	meta   map[string]string
	header http.Header
}

// Meta returns a user metadata value, whatever the spelling the server or
// the listing used (Mtime, X-Amz-Meta-Mtime, x-amz-meta-mtime); "" when
// the object has none of that name.
func (in Info) Meta(name string) string {
	ln := strings.ToLower(name)
	for k, v := range in.meta {
		lk := strings.ToLower(k)
		if lk == ln || lk == "x-amz-meta-"+ln {
			return v
		}
	}
	if in.header != nil {
		if v := in.header.Get("X-Amz-Meta-" + name); v != "" {
			return v
		}
	}
	return ""
}

// infoFrom converts a minio-go ObjectInfo.
func infoFrom(oi minio.ObjectInfo) Info {
	return Info{Key: oi.Key, Size: oi.Size, ETag: strings.Trim(oi.ETag, `"`), LastModified: oi.LastModified,
		meta: oi.UserMetadata, header: oi.Metadata}
}

// Stat returns the object's info; the error wraps ErrNotFound when it is
// absent.
func (s *Store) Stat(ctx context.Context, bucket, key string) (Info, error) {
	oi, err := s.c.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return Info{}, fmt.Errorf("stat %s/%s: %w", bucket, key, classify(err))
	}
	return infoFrom(oi), nil
}

// getOptions asks for n bytes at off, of the version etag when etag is
// not empty.
func getOptions(off, n int64, etag string) (minio.GetObjectOptions, error) {
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(off, off+n-1); err != nil {
		return opts, err
	}
	if etag != "" {
		if err := opts.SetMatchETag(etag); err != nil {
			return opts, err
		}
	}
	return opts, nil
}

// ReadAt reads len(p) bytes at off (fewer at the end of the object).
// etag, when set, makes the read fail if the object changed.
func (s *Store) ReadAt(ctx context.Context, bucket, key, etag string, p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	opts, err := getOptions(off, int64(len(p)), etag)
	if err != nil {
		return 0, fmt.Errorf("read %s/%s: %w", bucket, key, err)
	}
	obj, err := s.c.GetObject(ctx, bucket, key, opts)
	if err != nil {
		return 0, fmt.Errorf("read %s/%s: %w", bucket, key, classify(err))
	}
	defer obj.Close()
	n, err := io.ReadFull(obj, p)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil
	}
	if err != nil {
		return n, fmt.Errorf("read %s/%s: %w", bucket, key, classify(err))
	}
	return n, nil
}

// OpenRange starts a GET of n bytes at off of bucket/key, which must still
// have etag (when set), and returns its body: the caller reads it into its
// own buffer, with no copy in between.
func (s *Store) OpenRange(ctx context.Context, bucket, key, etag string, off, n int64) (io.ReadCloser, error) {
	opts, err := getOptions(off, n, etag)
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", bucket, key, err)
	}
	body, _, _, err := minio.Core{Client: s.c}.GetObject(ctx, bucket, key, opts)
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", bucket, key, classify(err))
	}
	return body, nil
}

// Put uploads the size bytes of r as the object key with the user
// metadata meta and returns its ETag: in one PUT when size fits in one
// part of partSize, else as a multipart upload of partSize parts sent
// threads at a time (aborted if it fails). Every body is sent unsigned
// with a CRC32C trailer (payload.go).
func (s *Store) Put(ctx context.Context, bucket, key string, r io.ReaderAt, size int64, meta map[string]string, partSize int64, threads int) (_ string, err error) {
	if size <= partSize {
		info, err := putSingle(ctx, s.c, bucket, key, r, size, meta)
		if err != nil {
			return "", fmt.Errorf("put %s/%s: %w", bucket, key, classify(err))
		}
		return strings.Trim(info.ETag, `"`), nil
	}
	mp, err := s.Begin(ctx, bucket, key, meta)
	if err != nil {
		return "", fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	defer func() {
		if err != nil {
			mp.Abort()
		}
	}()
	if _, err := mp.PutParts(ctx, 1, r, 0, size, partSize, threads); err != nil {
		return "", fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	etag, err := mp.Complete(ctx)
	if err != nil {
		return "", fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	return etag, nil
}

// PutMarker writes the zero-byte directory marker prefix (ending in "/").
func (s *Store) PutMarker(ctx context.Context, bucket, prefix string, meta map[string]string) error {
	_, err := s.c.PutObject(ctx, bucket, prefix, strings.NewReader(""), 0, minio.PutObjectOptions{
		ContentType:  "application/x-directory",
		UserMetadata: meta,
	})
	if err != nil {
		return fmt.Errorf("mkdir %s/%s: %w", bucket, prefix, classify(err))
	}
	return nil
}

// Copy copies an object of size bytes server-side and returns the new
// ETag; meta, when non-nil, replaces the user metadata. Objects over
// MaxCopySize are copied with ComposeObject.
func (s *Store) Copy(ctx context.Context, srcBucket, srcKey, dstBucket, dstKey string, size int64, meta map[string]string) (string, error) {
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
	if size > MaxCopySize {
		info, err = s.c.ComposeObject(ctx, dst, src)
	} else {
		info, err = s.c.CopyObject(ctx, dst, src)
	}
	if err != nil {
		return "", fmt.Errorf("copy %s/%s to %s/%s: %w", srcBucket, srcKey, dstBucket, dstKey, classify(err))
	}
	return strings.Trim(info.ETag, `"`), nil
}

// Remove deletes one object; an absent object is not an error.
func (s *Store) Remove(ctx context.Context, bucket, key string) error {
	err := s.c.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("remove %s/%s: %w", bucket, key, classify(err))
	}
	return nil
}

// RemovePrefix deletes every key under prefix, in batches.
func (s *Store) RemovePrefix(ctx context.Context, bucket, prefix string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	keys := make(chan minio.ObjectInfo)
	var listErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(keys)
		for oi := range s.c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if oi.Err != nil {
				if !isNotFound(oi.Err) {
					listErr = fmt.Errorf("list %s/%s: %w", bucket, prefix, classify(oi.Err))
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
	var first error
	for e := range s.c.RemoveObjects(ctx, bucket, keys, minio.RemoveObjectsOptions{}) {
		if e.Err != nil && first == nil && !isNotFound(e.Err) {
			first = fmt.Errorf("remove %s/%s: %w", bucket, e.ObjectName, classify(e.Err))
		}
	}
	cancel()
	<-done
	if first != nil {
		return first
	}
	return listErr
}

// EnsureBucket creates bucket if it does not exist.
func (s *Store) EnsureBucket(ctx context.Context, bucket string) error {
	ok, err := s.c.BucketExists(ctx, bucket)
	if err == nil && ok {
		return nil
	}
	err = s.c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{})
	if err != nil {
		err = classify(err)
		if errors.Is(err, ErrBucketExists) {
			return nil
		}
		return fmt.Errorf("make bucket %s: %w", bucket, err)
	}
	return nil
}
