package fusefs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sftpgate/sftpgate/internal/authapi"
)

// Staged uploads: an interrupted upload any node of a cluster continues.
//
// The streamed upload of a sequential writer (stream.go) is a multipart
// upload towards the final key, its parts full partSize parts sent in
// order: those parts are the staging, invisible to users until the
// upload is completed. With Options.Staging set (a store shared by the
// nodes), every time the contiguous prefix of completed parts grows, the
// upload is recorded there (StagingStore.RecordStagedUpload), held by
// this process. When the writer is interrupted (or the node dies) the
// record stays and the local copy goes: every node, this one included,
// then shows the file at that path with the staged size, on top of the
// object it replaces (or of nothing), as long as that object did not
// change since. An open for writing without truncation claims the record
// (only if nobody else holds it: a second client sees the object as it
// is) and continues in tail mode: the local copy holds only what is
// written from the staged size on; the close sends it as the next parts
// of the same multipart upload and completes it. Nothing below the staged
// size is ever downloaded: a read of it fails with EREMOTE. An open with
// truncation aborts the staged upload. A record nobody advanced for the
// lifespan (and nobody holds) is aborted and deleted by the janitor of
// whichever node comes first.
//
// The holder of a record refreshes its heartbeat every checkpointEvery;
// a record whose holder has been silent for the lease (a node killed) is
// free. Records are read, for lookups, from an index refreshed at most
// once per attribute TTL.

// StagedPart is one part of a staged upload (see authapi.StagedPart).
type StagedPart = authapi.StagedPart

// StagedUpload is the record of one staged upload (see
// authapi.StagedUpload).
type StagedUpload = authapi.StagedUpload

// StagingStore keeps the records of staged uploads where every node of a
// cluster reads them (the identity store, when it is PostgreSQL).
type StagingStore interface {
	// RecordStagedUpload creates or advances the record u, held by
	// u.Owner; it fails when another owner holds it.
	RecordStagedUpload(ctx context.Context, u StagedUpload) error
	// StagedUploads returns every record.
	StagedUploads(ctx context.Context, lease time.Duration) ([]StagedUpload, error)
	// StagedUpload returns the record of the upload id, ok false if none.
	StagedUpload(ctx context.Context, id string, lease time.Duration) (_ StagedUpload, ok bool, _ error)
	// ClaimStagedUpload makes owner its holder unless another holds it.
	ClaimStagedUpload(ctx context.Context, id, owner string, lease time.Duration) (_ StagedUpload, ok bool, _ error)
	// ReleaseStagedUpload lets go of a record owner holds.
	ReleaseStagedUpload(ctx context.Context, id, owner string) error
	// DeleteStagedUpload deletes a record (upload completed or aborted).
	DeleteStagedUpload(ctx context.Context, id string) error
	// TouchStagedUploads refreshes the heartbeat of owner's records.
	TouchStagedUploads(ctx context.Context, owner string) error
	// ExpiredStagedUploads returns the records with no progress for
	// idle that nobody holds.
	ExpiredStagedUploads(ctx context.Context, idle, lease time.Duration) ([]StagedUpload, error)
}

// stagingOpTimeout bounds one call to the staging store.
const stagingOpTimeout = 5 * time.Second

// stagingSweepEvery is how often the janitor looks for expired records.
const stagingSweepEvery = time.Second

// staging is the cache's side of staged uploads; nil without a store.
type staging struct {
	st    StagingStore
	owner string // this process, as the holder of records
	lease time.Duration
	ttl   time.Duration // how long the index is trusted
	log   *slog.Logger

	// completed and expired count the staged uploads this process
	// completed, and those its janitor aborted after the lifespan.
	completed, expired atomic.Int64
	// errAt is when an error of the store was last logged (UnixNano).
	errAt atomic.Int64

	// mu guards the index: the records no one holds by object, their
	// count and bytes (all records), when it was read (or tried), and
	// whether a refresh is running; and when the janitor last swept.
	mu         sync.Mutex
	free       map[string]StagedUpload
	count      int64
	bytes      int64
	readAt     time.Time
	refreshing bool
	sweptAt    time.Time
}

func newStaging(st StagingStore, lease, ttl time.Duration, log *slog.Logger) *staging {
	var b [8]byte
	rand.Read(b[:])
	return &staging{st: st, owner: "p-" + hex.EncodeToString(b[:]), lease: lease, ttl: ttl, log: log}
}

// ctx returns a context for one call to the store.
func (g *staging) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(parent), stagingOpTimeout)
}

// warn logs an error of the store, at most once every 10 s.
func (g *staging) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	if last := g.errAt.Load(); now-last < int64(10*time.Second) || !g.errAt.CompareAndSwap(last, now) {
		return
	}
	g.log.Warn(msg, args...)
}

// stagingIndexTimeout bounds one read of the index: a lookup that finds
// it stale waits for it at most this long (a store away costs lookups
// that once per TTL).
const stagingIndexTimeout = time.Second

// find returns the record no one holds of bucket/key, from the index
// (read again when older than the TTL).
func (g *staging) find(ctx context.Context, bucket, key string) (StagedUpload, bool) {
	g.refresh(ctx, false)
	g.mu.Lock()
	defer g.mu.Unlock()
	u, ok := g.free[objKey(bucket, key)]
	return u, ok
}

// refresh reads the index again when it is older than the TTL (or
// always, with force), unless a read is running already: the caller then
// goes on with the index as it is.
func (g *staging) refresh(ctx context.Context, force bool) {
	g.mu.Lock()
	if g.refreshing || (!force && time.Since(g.readAt) < g.ttl) {
		g.mu.Unlock()
		return
	}
	g.refreshing = true
	g.mu.Unlock()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stagingIndexTimeout)
	all, err := g.st.StagedUploads(sctx, g.lease)
	cancel()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refreshing, g.readAt = false, time.Now()
	if err != nil {
		g.warn("cannot read the staged uploads", "err", err)
		return
	}
	free := make(map[string]StagedUpload)
	var n, size int64
	for _, u := range all {
		n++
		size += u.Size
		if !u.Held && u.Size > 0 {
			free[objKey(u.Bucket, u.Key)] = u // the newest wins (by updated)
		}
	}
	g.free, g.count, g.bytes = free, n, size
}

// stagedUnder returns, by name, the files directly under prefix that
// only a staged upload no one holds makes exist (no object at their
// key), for listings.
func (c *cache) stagedUnder(ctx context.Context, bucket, prefix string) map[string]dirent {
	g := c.stg
	if g == nil {
		return nil
	}
	g.refresh(ctx, false)
	g.mu.Lock()
	defer g.mu.Unlock()
	var out map[string]dirent
	for _, u := range g.free {
		name, ok := strings.CutPrefix(u.Key, prefix)
		if !ok || u.Bucket != bucket || u.BaseExists || name == "" || strings.Contains(name, "/") || checkName(name) != nil {
			continue
		}
		if out == nil {
			out = map[string]dirent{}
		}
		out[name] = dirent{name: name, kind: kindFile, info: objInfo{Key: u.Key, Size: u.Size, Mtime: u.Mtime, Mode: u.Mode}}
	}
	return out
}

// release lets go of the record of u, which this process holds.
func (g *staging) release(ctx context.Context, u StagedUpload) {
	sctx, cancel := g.ctx(ctx)
	defer cancel()
	if err := g.st.ReleaseStagedUpload(sctx, u.UploadID, g.owner); err != nil {
		g.warn("cannot release a staged upload", "bucket", u.Bucket, "key", u.Key, "err", err)
	}
}

// invalidate makes the next find read the store.
func (g *staging) invalidate() {
	g.mu.Lock()
	g.readAt = time.Time{}
	g.mu.Unlock()
}

// stagedElsewhere reports whether the multipart upload id is recorded as
// staged (recovery then leaves it to whichever node resumes it).
func (c *cache) stagedElsewhere(ctx context.Context, id string) (bool, error) {
	g := c.stg
	if g == nil {
		return false, nil
	}
	sctx, cancel := g.ctx(ctx)
	defer cancel()
	_, ok, err := g.st.StagedUpload(sctx, id, g.lease)
	return ok, err
}

// touchStaged refreshes the heartbeat of the records this process holds.
func (c *cache) touchStaged(ctx context.Context) {
	g := c.stg
	if g == nil {
		return
	}
	sctx, cancel := g.ctx(ctx)
	defer cancel()
	if err := g.st.TouchStagedUploads(sctx, g.owner); err != nil {
		g.warn("cannot refresh the staged uploads held", "err", err)
	}
}

// sweepStaged aborts and deletes the staged uploads nobody advanced for
// the lifespan and nobody holds, at most every stagingSweepEvery, and
// reads the index again (for the counters).
func (c *cache) sweepStaged(ctx context.Context, now time.Time) {
	g := c.stg
	if g == nil {
		return
	}
	g.mu.Lock()
	due := now.Sub(g.sweptAt) >= stagingSweepEvery
	if due {
		g.sweptAt = now
	}
	g.mu.Unlock()
	if !due {
		return
	}
	sctx, cancel := g.ctx(ctx)
	list, err := g.st.ExpiredStagedUploads(sctx, c.lifespan, g.lease)
	cancel()
	if err != nil {
		g.warn("cannot list the expired staged uploads", "err", err)
		return
	}
	for _, u := range list {
		if ctx.Err() != nil {
			return
		}
		if c.abortStaged(u) {
			g.expired.Add(1)
			c.log.Info("staged upload not resumed within the lifespan; aborted", "bucket", u.Bucket, "key", u.Key, "staged", u.Size, "upload", u.UploadID)
		}
	}
	g.refresh(ctx, true)
}

// StagingCounters are the staged uploads of the cluster as this node
// last read them, and what this node did with them.
type StagingCounters struct {
	// Count and Bytes are the staged uploads recorded (every node's,
	// being written or interrupted) and their staged sizes added up.
	Count, Bytes int64
	// Completed counts the staged uploads this node resumed and
	// completed; Expired, those its janitor aborted after the lifespan.
	Completed, Expired int64
}

// stagingCounters returns the staged uploads' counters; all zero without
// Options.Staging.
func (m *Manager) stagingCounters() StagingCounters {
	g := m.cache.stg
	if g == nil {
		return StagingCounters{}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return StagingCounters{Count: g.count, Bytes: g.bytes, Completed: g.completed.Load(), Expired: g.expired.Load()}
}
