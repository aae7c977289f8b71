package fusefs

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sftpgate/sftpgate/fusefs/objstore"
)

// The local side of staged uploads (see staging.go): how a stream records
// its parts, how an interrupted copy hands its upload over, and the copy
// a node makes of a staged upload to show it and continue it.

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

// waitDrain waits until the sender of a stream told to send no new part
// (drain) has stopped: its parts in flight done, or cancelled after
// drainWait.
func (s *stream) waitDrain() {
	select {
	case <-s.done:
	case <-time.After(drainWait):
		s.cancel()
		<-s.done
	}
	s.cancel()
}

// stagedState is the staged upload a local copy continues: the copy
// holds only what was written from u.Size on (tail mode).
type stagedState struct {
	u       StagedUpload
	claimed bool // this process holds the record
	// streamed says that a stream (stagestream.go) was started to send
	// the continuation; one at most per claim. e.mu guards it.
	streamed bool
	// next is the first part number no stream of this copy used (0:
	// none used): a close that sends the rest whole numbers its parts
	// from there, so that no part is sent twice with other bytes.
	next atomic.Int32
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
		// A stream sending the continuation sends no new part; the
		// record keeps the parts it completed (the resume starts after).
		s := e.stream
		e.stream = nil
		if s != nil {
			close(s.drain)
		}
		aborting := e.aborting
		e.deleted, e.dirty = true, false
		c.mu.Lock()
		c.unindexLocked(e)
		c.mu.Unlock()
		drop := e.opens == 0
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			staged := s.drained(st.u.Size)
			for _, ch := range aborting {
				<-ch
			}
			if st.claimed {
				g.release(c.bg, st.u)
			}
			g.invalidate()
			if drop {
				c.drop(e)
			}
			c.log.Info("interrupted continuation of a staged upload: released for a resume", "bucket", st.u.Bucket, "key", st.u.Key, "staged", staged)
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
		s.waitDrain()
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
		g.release(c.bg, StagedUpload{UploadID: mp.ID(), Bucket: s.bucket, Key: s.key})
		g.invalidate()
		c.mu.Lock()
		c.unindexLocked(e)
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
	remote, ok := v.remoteObject(ctx, bucket, key)
	if !ok {
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
	f, err := createFile(c.root, c.spares, dataName(id), os.O_RDWR)
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
		lastUse: now, checkedAt: now, seq: u.Size, staged: &stagedState{u: u}}
	if remote != nil {
		e.baseSize = remote.Size
	}
	e.fill.reset(u.Size)
	c.byKey[objKey(bucket, key)] = e
	c.all[e] = struct{}{}
	return e
}

// abortStagedAsync claims, aborts and deletes the staged upload u, in the
// background,
// after: once those channels are closed (the streams sending parts of
// it stopped).
func (c *cache) abortStagedAsync(u StagedUpload, after ...<-chan struct{}) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for _, ch := range after {
			<-ch
		}
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
		g.release(c.bg, u)
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
	if s := e.stream; s != nil && s.resumed != nil {
		e.breakStreamLocked("staged upload replaced")
	}
	e.c.log.Info("staged upload replaced by a new upload; aborted", "bucket", st.u.Bucket, "key", st.u.Key, "staged", st.u.Size)
	e.c.abortStagedAsync(st.u, e.aborting...)
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
		first := max(len(parts)+1, int(st.next.Load()))
		left := objstore.MaxParts - first + 1
		ps := objstore.PartSize(c.ob.partSize, size-u.Size, left)
		if ps > objstore.MaxPartSize || left <= 0 {
			return "", time.Time{}, fmt.Errorf("put %s/%s: too many parts: %w", u.Bucket, u.Key, ErrTooLarge)
		}
		if _, err := mp.PutParts(c.bg, first, f, u.Size, size, ps, c.ob.concurrency); err != nil {
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
// aborted, expired, or claimed by another node) or no longer at the size
// it shows (advanced by a node that streamed more of it), and reports
// whether it did.
func (c *cache) stagedGone(ctx context.Context, e *entry) bool {
	e.mu.Lock()
	st := e.staged
	e.mu.Unlock()
	if st == nil || st.claimed {
		return false
	}
	if u, ok := c.stg.find(ctx, st.u.Bucket, st.u.Key); ok && u.UploadID == st.u.UploadID && u.Size == st.u.Size {
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
	aborting := e.aborting // a stream of it resets the record first
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for _, ch := range aborting {
			<-ch
		}
		c.stg.release(c.bg, st.u)
		c.stg.invalidate()
	}()
}
