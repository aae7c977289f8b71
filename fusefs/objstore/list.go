package objstore

import (
	"context"
	"fmt"
	"iter"

	"github.com/minio/minio-go/v7"
)

// ListOptions choose what a listing returns.
type ListOptions struct {
	// Prefix keeps the keys that start with it.
	Prefix string
	// StartAfter, if not empty, starts the listing after that key.
	StartAfter string
	// Recursive lists every key under Prefix; otherwise one level, the
	// deeper keys shown as their common prefix (ending in "/").
	Recursive bool
	// WithMetadata asks for each object's user metadata (Info.Meta).
	WithMetadata bool
	// MaxKeys is the most keys one request returns; zero means the
	// server's page (1000).
	MaxKeys int
}

// Entry is one key of a listing, or the error that ended it.
type Entry struct {
	Info
	// Err, when not nil, is the last entry: the listing failed. It wraps
	// ErrNotFound (and ErrNoSuchBucket) for a bucket that does not exist.
	Err error
}

// Listing streams the entries of a listing, page by page, without
// holding them in memory. It ends when the listing does or when the
// context it was started with is cancelled; a caller stopping early
// cancels that context.
type Listing struct {
	ch <-chan minio.ObjectInfo
}

// List starts a listing of bucket.
func (s *Store) List(ctx context.Context, bucket string, o ListOptions) *Listing {
	ch := s.c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: o.Prefix, StartAfter: o.StartAfter,
		Recursive: o.Recursive, WithMetadata: o.WithMetadata, MaxKeys: o.MaxKeys})
	return &Listing{ch: ch}
}

// Next returns the next entry; ok is false once the listing has ended.
// It waits for the next page when needed, and cannot be interrupted
// but by the listing's context.
func (l *Listing) Next() (e Entry, ok bool) {
	oi, ok := <-l.ch
	if !ok {
		return Entry{}, false
	}
	if oi.Err != nil {
		return Entry{Err: classify(oi.Err)}, true
	}
	return Entry{Info: infoFrom(oi)}, true
}

// HasChildren reports whether any key starts with prefix (which ends in
// "/"), other than the marker prefix itself when skipMarker is set. A
// bucket that does not exist has none.
func (s *Store) HasChildren(ctx context.Context, bucket, prefix string, skipMarker bool) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for e := range s.List(ctx, bucket, ListOptions{Prefix: prefix, MaxKeys: 2}).All() {
		if e.Err != nil {
			if isNotFound(e.Err) {
				return false, nil
			}
			return false, fmt.Errorf("list %s/%s: %w", bucket, prefix, e.Err)
		}
		if skipMarker && e.Key == prefix {
			continue
		}
		return true, nil
	}
	return false, ctx.Err()
}

// All returns the entries left, for a range loop; leaving the loop early
// does not end the listing (cancel its context).
func (l *Listing) All() iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		for e, ok := l.Next(); ok; e, ok = l.Next() {
			if !yield(e) {
				return
			}
		}
	}
}
