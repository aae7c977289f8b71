package fusefs

import (
	"context"
	"time"
)

// An interrupted upload is shown at its path (its size, its bytes) so that
// the client can resume it. It is based on the object as it stood when
// its first writer opened it. When the object changes in the store after
// that (a whole upload through another gateway node, another client of
// the bucket, a delete), the interrupted upload is superseded: what was
// published since wins, as it would over an upload that never closed,
// and the copy is dropped. Nothing acknowledged is lost: an interrupted
// upload is by definition one that no close published.
//
// The comparison costs a stat of the object, made at most once per
// attribute TTL per interrupted upload, and only for those: copies being
// written are never compared (their writer's close publishes over what is
// there, as any close does), clean copies are compared by cache.open.

// supersededLocked reports whether e is an interrupted upload that no
// handle holds and whose object changed since the copy was based on it:
// remote is the object as it is now, nil when absent. e.mu held.
func (e *entry) supersededLocked(remote *objInfo) bool {
	if !e.interrupted || e.deleted || e.opens > 0 || e.writers > 0 {
		return false
	}
	if remote == nil {
		return e.baseExists
	}
	return !e.baseExists || remote.ETag != e.baseETag
}

// dueCheck reports whether e is an idle interrupted upload not compared
// with the store within ttl, and marks it compared now.
func (e *entry) dueCheck(ttl time.Duration) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.interrupted || e.deleted || e.opens > 0 || e.writers > 0 || time.Since(e.checkedAt) < ttl {
		return false
	}
	e.checkedAt = time.Now()
	return true
}

// dropSuperseded drops e if it is (still) a superseded interrupted upload
// of remote, and reports whether it did.
func (c *cache) dropSuperseded(e *entry, remote *objInfo) bool {
	e.mu.Lock()
	superseded := e.supersededLocked(remote)
	size, etag := e.size, e.baseETag
	e.mu.Unlock()
	if !superseded {
		return false
	}
	now := "absent"
	if remote != nil {
		now = remote.ETag
	}
	c.log.Info("interrupted upload superseded by a newer object; discarded", "bucket", e.bucket, "key", e.key, "size", size, "base", etag, "object", now)
	c.drop(e)
	return true
}

// copyOf returns the local copy of key, as cache.lookup does, once an
// interrupted upload of it has been compared with the store (at most once
// per attribute TTL): nil when there is none or when it was superseded.
// When the store cannot be asked, the copy is kept and returned.
func (v *view) copyOf(ctx context.Context, bucket, key string) *entry {
	e := v.cache.lookup(bucket, key)
	if e == nil && v.cache.stg != nil {
		e = v.stagedCopy(ctx, bucket, key)
	}
	if e == nil || !e.dueCheck(v.attrTTL) {
		return e
	}
	if v.cache.stg != nil && v.cache.stagedGone(ctx, e) {
		return nil
	}
	remote, ok := v.remoteObject(ctx, bucket, key)
	if !ok {
		return e
	}
	if v.cache.dropSuperseded(e, remote) {
		return nil
	}
	return e
}

// remoteObject stats bucket/key: the object, nil when there is none, and
// ok false when the store cannot be asked.
func (v *view) remoteObject(ctx context.Context, bucket, key string) (remote *objInfo, ok bool) {
	info, err := v.ob.stat(ctx, bucket, key)
	switch {
	case err == nil:
		return &info, true
	case isNotFound(err):
		return nil, true
	default:
		return nil, false
	}
}
