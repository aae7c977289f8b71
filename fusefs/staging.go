package fusefs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sftpgate/sftpgate/fusefs/objstore"
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

// StagedPart is one part of a staged upload.
type StagedPart struct {
	Number int
	Size   int64
	ETag   string
}

// StagedUpload is the record of one staged upload (see StagingStore).
type StagedUpload struct {
	UploadID string
	Bucket   string
	Key      string
	// BaseETag is the object it replaces, when BaseExists.
	BaseETag   string
	BaseExists bool
	// Mtime and Mode are the metadata the upload was begun with.
	Mtime time.Time
	Mode  uint32
	// Size is the contiguous prefix staged: Parts 1, 2, … added up.
	Size  int64
	Parts []StagedPart
	// Owner is the process holding it, "" when none.
	Owner string
	// Updated is the time of its last progress.
	Updated time.Time
	// Held says that Owner gave a sign of life within the lease asked.
	Held bool
}

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

// drainWait bounds how long the parts in flight of an interrupted
// streamed upload are waited for before they are cancelled.
const drainWait = 30 * time.Second

// draining reports whether the stream was told to send no new part.
func (s *stream) draining() bool {
	select {
	case <-s.drain:
		return true
	default:
		return false
	}
}

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

// invalidate makes the next find read the store.
func (g *staging) invalidate() {
	g.mu.Lock()
	g.readAt = time.Time{}
	g.mu.Unlock()
}

// stagedState is the staged upload a local copy continues: the copy
// holds only what was written from u.Size on (tail mode).
type stagedState struct {
	u       StagedUpload
	claimed bool // this process holds the record
}

// streamRec records the parts of a stream as they complete.
type streamRec struct {
	g          *staging
	baseETag   string
	baseExists bool

	// mu guards the fields below (held across the store call, so that
	// the records are written in order).
	mu    sync.Mutex
	done  map[int]StagedPart // completed, not yet in parts
	parts []StagedPart       // the contiguous prefix recorded
	size  int64
	lost  bool // the record is held by another: record no more
}

// newStreamRec returns the recorder of a new stream of e, nil without
// staging. e.mu must be held.
func (c *cache) newStreamRec(e *entry) *streamRec {
	if c.stg == nil {
		return nil
	}
	return &streamRec{g: c.stg, baseETag: e.baseETag, baseExists: e.baseExists, done: map[int]StagedPart{}}
}

// partSent records that part n (l bytes) of the stream's upload mp was
// sent: when it extends the contiguous prefix of whole parts, the record
// is advanced.
func (s *stream) partSent(mp *objstore.Multipart, n int, l int64) {
	r := s.rec
	if r == nil || l != s.ps {
		return
	}
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return // completed at once: nothing to resume
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lost {
		return
	}
	etag, _ := mp.PartETag(n)
	r.done[n] = StagedPart{Number: n, Size: l, ETag: etag}
	grew := false
	for {
		p, ok := r.done[len(r.parts)+1]
		if !ok {
			break
		}
		delete(r.done, p.Number)
		r.parts = append(r.parts, p)
		r.size += p.Size
		grew = true
	}
	if !grew {
		return
	}
	u := StagedUpload{UploadID: mp.ID(), Bucket: s.bucket, Key: s.key, BaseETag: r.baseETag, BaseExists: r.baseExists,
		Mtime: s.mtime, Mode: s.mode, Size: r.size, Parts: r.parts, Owner: r.g.owner}
	ctx, cancel := r.g.ctx(s.c.bg)
	defer cancel()
	if err := r.g.st.RecordStagedUpload(ctx, u); err != nil {
		r.lost = true
		r.g.warn("cannot record a staged upload; it will not be resumable on another node", "bucket", s.bucket, "key", s.key, "err", err)
	}
}

// staged returns the size recorded for the stream (0: none).
func (r *streamRec) staged() int64 {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lost {
		return 0
	}
	return r.size
}

// unstage deletes the record of the upload id (completed or aborted).
func (c *cache) unstage(id string, completed bool) {
	g := c.stg
	if g == nil {
		return
	}
	ctx, cancel := g.ctx(c.bg)
	defer cancel()
	if err := g.st.DeleteStagedUpload(ctx, id); err != nil {
		g.warn("cannot delete the record of a staged upload", "id", id, "err", err)
		return
	}
	if completed {
		g.completed.Add(1)
	}
}

// handOffLocked is how closeWriter leaves a copy whose last writer went
// away with changes no close published, when uploads are staged. It
// returns true when it took care of it:
//   - a copy continuing a staged upload: the record is released, the
//     copy forgotten (what it received past the staged size is sent again
//     by the client);
//   - a streamed copy: its stream sends no new part (not aborted); once
//     its parts in flight are done (drainWait at most), the record is released and the copy forgotten, if
//     something was staged and nobody took the copy up meanwhile (else the
//     upload is aborted and the copy stays as an interrupted upload).
//
// It returns false (closeWriter goes on) in the second case too: the copy
// is an interrupted upload until the stream has stopped. e.mu held.
func (c *cache) handOffLocked(e *entry) bool {
	g := c.stg
	if g == nil {
		return false
	}
	if st := e.staged; st != nil {
		e.staged = nil
		e.deleted, e.dirty = true, false
		c.mu.Lock()
		if c.byKey[objKey(e.bucket, e.key)] == e {
			delete(c.byKey, objKey(e.bucket, e.key))
		}
		c.mu.Unlock()
		drop := e.opens == 0
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if st.claimed {
				ctx, cancel := g.ctx(c.bg)
				defer cancel()
				if err := g.st.ReleaseStagedUpload(ctx, st.u.UploadID, g.owner); err != nil {
					g.warn("cannot release a staged upload", "bucket", st.u.Bucket, "key", st.u.Key, "err", err)
				}
			}
			g.invalidate()
			if drop {
				c.drop(e)
			}
			c.log.Info("interrupted continuation of a staged upload: released for a resume", "bucket", st.u.Bucket, "key", st.u.Key, "staged", st.u.Size)
		}()
		return true
	}
	s := e.stream
	if s == nil || s.rec == nil {
		return false
	}
	e.stream = nil
	close(s.drain)
	gen := e.gen
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		select {
		case <-s.done:
		case <-time.After(drainWait):
			s.cancel()
			<-s.done
		}
		s.cancel()
		size := s.rec.staged()
		s.mu.Lock()
		mp := s.mp
		s.mu.Unlock()
		e.mu.Lock()
		keep := size > 0 && mp != nil && e.gen == gen && e.writers == 0 && e.interrupted && !e.deleted
		if keep {
			e.deleted, e.dirty = true, false
			e.accountLocked()
		}
		open := e.opens > 0
		e.mu.Unlock()
		if !keep {
			s.abortNow()
			return
		}
		ctx, cancel := g.ctx(c.bg)
		defer cancel()
		if err := g.st.ReleaseStagedUpload(ctx, mp.ID(), g.owner); err != nil {
			g.warn("cannot release a staged upload", "bucket", s.bucket, "key", s.key, "err", err)
		}
		g.invalidate()
		c.mu.Lock()
		if c.byKey[objKey(e.bucket, e.key)] == e {
			delete(c.byKey, objKey(e.bucket, e.key))
		}
		c.mu.Unlock()
		if !open {
			c.drop(e)
		}
		c.log.Info("interrupted upload staged for a resume on any node", "bucket", s.bucket, "key", s.key, "staged", size, "upload", mp.ID())
	}()
	return false
}

// stagedCopy returns a local copy for the staged upload of bucket/key
// that nobody holds, nil when there is none (or it was superseded: the
// object changed since the upload began; it is then aborted).
func (v *view) stagedCopy(ctx context.Context, bucket, key string) *entry {
	c := v.cache
	g := c.stg
	u, ok := g.find(ctx, bucket, key)
	if !ok {
		return nil
	}
	info, err := v.ob.stat(ctx, bucket, key)
	var remote *objInfo
	switch {
	case err == nil:
		remote = &info
	case isNotFound(err):
	default:
		return nil
	}
	if (remote == nil) == u.BaseExists || (remote != nil && remote.ETag != u.BaseETag) {
		c.log.Info("staged upload superseded by a newer object; aborted", "bucket", bucket, "key", key, "staged", u.Size, "upload", u.UploadID)
		g.invalidate()
		c.abortStagedAsync(u)
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.byKey[objKey(bucket, key)]; e != nil {
		return e
	}
	id := newID()
	f, err := c.root.OpenFile(dataName(id), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		c.log.Warn("cannot make a local copy for a staged upload", "bucket", bucket, "key", key, "err", err)
		return nil
	}
	if err := f.Truncate(u.Size); err != nil {
		f.Close()
		c.root.Remove(dataName(id))
		return nil
	}
	now := time.Now()
	e := &entry{id: id, c: c, f: f, bucket: bucket, key: key, baseETag: u.BaseETag, baseExists: u.BaseExists,
		size: u.Size, mtime: u.Mtime, mode: u.Mode, dirty: true, interrupted: true, tailMode: true, tailFrom: u.Size,
		lastUse: now, checkedAt: now, seq: -1, staged: &stagedState{u: u}}
	if remote != nil {
		e.baseSize = remote.Size
	}
	e.fill.reset(u.Size)
	c.byKey[objKey(bucket, key)] = e
	c.all[e] = struct{}{}
	return e
}

// abortStagedAsync claims, aborts and deletes the staged upload u, in the
// background.
func (c *cache) abortStagedAsync(u StagedUpload) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.abortStaged(u)
	}()
}

// abortStaged claims, aborts and deletes the staged upload u; it reports
// whether it did (false: held by another, or an error, logged).
func (c *cache) abortStaged(u StagedUpload) bool {
	g := c.stg
	ctx, cancel := g.ctx(c.bg)
	defer cancel()
	if _, ok, err := g.st.ClaimStagedUpload(ctx, u.UploadID, g.owner, g.lease); err != nil || !ok {
		if err != nil {
			g.warn("cannot claim a staged upload to abort it", "bucket", u.Bucket, "key", u.Key, "err", err)
		}
		return false
	}
	if err := c.ob.st.Abort(u.Bucket, u.Key, u.UploadID); err != nil {
		c.log.Warn("cannot abort a staged upload", "bucket", u.Bucket, "key", u.Key, "err", err)
		if rerr := g.st.ReleaseStagedUpload(ctx, u.UploadID, g.owner); rerr != nil {
			g.warn("cannot release a staged upload", "bucket", u.Bucket, "key", u.Key, "err", rerr)
		}
		return false
	}
	if err := g.st.DeleteStagedUpload(ctx, u.UploadID); err != nil {
		g.warn("cannot delete the record of a staged upload", "bucket", u.Bucket, "key", u.Key, "err", err)
	}
	g.invalidate()
	return true
}

// claimStaged claims the staged upload a copy continues, for a writer
// about to open it; it reports false when another holds it (or the store
// cannot be asked): the caller then drops the copy and sees the object as
// it is.
func (c *cache) claimStaged(ctx context.Context, e *entry) bool {
	e.mu.Lock()
	st := e.staged
	e.mu.Unlock()
	if st == nil || st.claimed {
		return true
	}
	g := c.stg
	sctx, cancel := g.ctx(ctx)
	defer cancel()
	u, ok, err := g.st.ClaimStagedUpload(sctx, st.u.UploadID, g.owner, g.lease)
	if err != nil {
		g.warn("cannot claim a staged upload", "bucket", st.u.Bucket, "key", st.u.Key, "err", err)
		return false
	}
	if ok && u.Size != st.u.Size {
		// Not what this copy shows: let another look again.
		if err := g.st.ReleaseStagedUpload(sctx, u.UploadID, g.owner); err != nil {
			g.warn("cannot release a staged upload", "bucket", u.Bucket, "key", u.Key, "err", err)
		}
		ok = false
	}
	if !ok {
		g.invalidate()
		return false
	}
	e.mu.Lock()
	if e.staged == st {
		st.claimed = true
	}
	e.mu.Unlock()
	c.log.Info("staged upload claimed for a resume", "bucket", u.Bucket, "key", u.Key, "staged", u.Size, "upload", u.UploadID)
	return true
}

// dropStaged drops a copy of a staged upload that this process could not
// claim, if no handle holds it.
func (c *cache) dropStaged(e *entry) {
	e.mu.Lock()
	ok := e.staged != nil && !e.staged.claimed && e.opens == 0 && !e.deleted
	if ok {
		e.deleted = true
	}
	e.mu.Unlock()
	if ok {
		c.drop(e)
	}
}

// unstageLocked ends the staged upload a copy continues, when it is
// emptied (an open with truncation, a plain put): the upload is aborted.
// e.mu must be held.
func (e *entry) unstageLocked() {
	st := e.staged
	if st == nil {
		return
	}
	e.staged = nil
	e.c.log.Info("staged upload replaced by a new upload; aborted", "bucket", st.u.Bucket, "key", st.u.Key, "staged", st.u.Size)
	e.c.abortStagedAsync(st.u)
}

// stagedRangeLocked fails a read (or a change) below the staged size of a
// copy continuing a staged upload: those bytes are in the store as parts
// of an upload, never downloaded. e.mu must be held.
func (e *entry) stagedRangeLocked() error {
	if e.staged == nil {
		return nil
	}
	e.c.log.Warn("read below the staged size of a resumed upload refused: the bytes are in the store as parts of an unfinished upload",
		"bucket", e.bucket, "key", e.key, "staged", e.staged.u.Size)
	return fmt.Errorf("read: %w", ErrStagedRemote)
}

// continueStaged sends what the copy holds from the staged size on as
// the next parts of the staged upload and completes it, for a close.
func (c *cache) continueStaged(e *entry, st *stagedState, f *os.File, size int64, mtime time.Time, mtimeSet bool, mode uint32) (string, time.Time, error) {
	u := st.u
	parts := make([]objstore.Part, len(u.Parts))
	for i, p := range u.Parts {
		parts[i] = objstore.Part{Number: p.Number, ETag: p.ETag}
	}
	mp := c.ob.st.Resume(u.Bucket, u.Key, u.UploadID, parts)
	if size > u.Size {
		left := objstore.MaxParts - len(parts)
		ps := objstore.PartSize(c.ob.partSize, size-u.Size, left)
		if ps > objstore.MaxPartSize || left <= 0 {
			return "", time.Time{}, fmt.Errorf("put %s/%s: too many parts: %w", u.Bucket, u.Key, ErrTooLarge)
		}
		if _, err := mp.PutParts(c.bg, len(parts)+1, f, u.Size, size, ps, c.ob.concurrency); err != nil {
			return "", time.Time{}, fmt.Errorf("put %s/%s: %w", u.Bucket, u.Key, err)
		}
	}
	etag, err := mp.Complete(c.bg)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("put %s/%s: %w", u.Bucket, u.Key, err)
	}
	e.mu.Lock()
	if e.staged == st {
		e.staged = nil
	}
	e.mu.Unlock()
	c.unstage(u.UploadID, true)
	c.stg.invalidate()
	c.log.Info("staged upload resumed and completed", "bucket", u.Bucket, "key", u.Key, "staged", u.Size, "size", size)
	if mode != u.Mode || (mtimeSet && !mtime.Equal(u.Mtime)) {
		if etag, err = c.ob.st.Copy(c.bg, u.Bucket, u.Key, u.Bucket, u.Key, size, userMeta(mtime, mode)); err != nil {
			return "", time.Time{}, err
		}
		return etag, mtime, nil
	}
	return etag, u.Mtime, nil
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

// takeStaged is how openEntry takes a live copy: a writer claims the
// staged upload it continues; when another holds it, the copy is dropped
// and false returned (the caller's open is released and the object is
// opened as it is).
func (c *cache) takeStaged(ctx context.Context, e *entry, forRead bool) bool {
	if forRead || c.stg == nil || c.claimStaged(ctx, e) {
		return true
	}
	c.release(e)
	c.dropStaged(e)
	return false
}

// stagedGone drops the copy of a staged upload this process has not
// claimed once the upload is no longer free in the store (completed,
// aborted, expired, or claimed by another node), and reports whether it
// did.
func (c *cache) stagedGone(ctx context.Context, e *entry) bool {
	e.mu.Lock()
	st := e.staged
	e.mu.Unlock()
	if st == nil || st.claimed {
		return false
	}
	if u, ok := c.stg.find(ctx, st.u.Bucket, st.u.Key); ok && u.UploadID == st.u.UploadID {
		return false
	}
	e.mu.Lock()
	gone := e.staged == st && e.opens == 0 && !e.deleted
	if gone {
		e.deleted = true
	}
	e.mu.Unlock()
	if gone {
		c.drop(e)
	}
	return gone
}

// releaseStagedLocked lets go of the staged upload a dropped copy had
// claimed (in the background), so that any node may resume it. e.mu must
// be held.
func (e *entry) releaseStagedLocked() {
	st := e.staged
	if st == nil {
		return
	}
	e.staged = nil
	if !st.claimed {
		return
	}
	c := e.c
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx, cancel := c.stg.ctx(c.bg)
		defer cancel()
		if err := c.stg.st.ReleaseStagedUpload(ctx, st.u.UploadID, c.stg.owner); err != nil {
			c.stg.warn("cannot release a staged upload", "bucket", st.u.Bucket, "key", st.u.Key, "err", err)
		}
		c.stg.invalidate()
	}()
}
