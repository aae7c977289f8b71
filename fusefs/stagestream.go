package fusefs

import (
	"context"
	"errors"
	"os"
	"slices"
	"time"

	"github.com/sftpgate/sftpgate/fusefs/objstore"
)

// Streaming the continuation of a resumed staged upload.
//
// A copy continuing a staged upload it claimed (stagedcopy.go) holds the
// bytes from the staged size on. While they are written from there with
// no gap, a stream (stream.go) sends every full part the writer has gone
// past as the next parts of the same multipart upload, and its recorder
// advances the staged record as the in-order run of completed parts
// grows: a second interruption leaves the record at the larger size.
//
// Such a stream never aborts the upload (the staged parts are not here to
// send again). Broken (a write below what it handed to the sender, a
// truncation, a gap, …), it stops, and the record goes back to the size
// the claim found, since the bytes sent since may no longer be the
// file's; the close then sends the rest whole, as the parts numbered
// after every part the stream used. Interrupted, it is drained instead
// (the parts in flight finish and are recorded) and the record released.

// streamStagedLocked is trackWriteLocked for a copy continuing a staged
// upload: [tailFrom, e.seq) is written with no gap. e.mu must be held.
func (e *entry) streamStagedLocked() {
	st := e.staged
	if !st.claimed || !e.tailMode || e.complete || e.tailFrom != st.u.Size ||
		e.noSpace || e.deleted || e.f == nil || e.c.bg.Err() != nil {
		return
	}
	ps := e.c.ob.partSize
	first := len(st.u.Parts) + 1
	n := min((e.seq-st.u.Size)/ps, int64(maxStreamParts-first+1))
	if n <= 0 {
		return
	}
	if e.stream == nil {
		if st.streamed {
			return // one stream per claim: broken once, the close sends the rest
		}
		st.streamed = true
		e.stream = e.c.newResumedStream(e, st)
	}
	e.stream.advance(st.u.Size + n*ps)
}

// newResumedStream starts the stream sending the continuation of the
// staged upload st that e holds. e.mu must be held.
func (c *cache) newResumedStream(e *entry, st *stagedState) *stream {
	u := st.u
	parts := make([]objstore.Part, len(u.Parts))
	for i, p := range u.Parts {
		parts[i] = objstore.Part{Number: p.Number, ETag: p.ETag}
	}
	ctx, cancel := context.WithCancel(c.bg)
	s := &stream{c: c, e: e, bucket: u.Bucket, key: u.Key, f: e.f, mtime: u.Mtime, mode: u.Mode,
		ps: c.ob.partSize, ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1), done: make(chan struct{}),
		drain: make(chan struct{}), from: u.Size, first: len(u.Parts) + 1, resumed: st, ready: u.Size,
		mp: c.ob.st.Resume(u.Bucket, u.Key, u.UploadID, parts)}
	s.rec = &streamRec{g: c.stg, baseETag: u.BaseETag, baseExists: u.BaseExists, done: map[int]StagedPart{},
		parts: slices.Clone(u.Parts), size: u.Size}
	c.log.Debug("streaming the continuation of a staged upload", "bucket", u.Bucket, "key", u.Key, "staged", u.Size, "upload", u.UploadID)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		s.run()
	}()
	return s
}

// stopResumed stops a resumed stream that was broken or failed: it waits
// for its sender, records no more and puts the record back to the size
// the claim found (the upload itself is kept).
func (s *stream) stopResumed() {
	s.cancel()
	<-s.done
	r, u := s.rec, s.resumed.u
	r.mu.Lock()
	defer r.mu.Unlock()
	grew := r.size > u.Size
	r.lost = true
	r.size, r.parts = u.Size, slices.Clone(u.Parts)
	if !grew {
		return
	}
	u.Owner = r.g.owner
	ctx, cancel := r.g.ctx(s.c.bg)
	defer cancel()
	if err := r.g.st.RecordStagedUpload(ctx, u); err != nil {
		r.g.warn("cannot put a staged upload back to its claimed size", "bucket", u.Bucket, "key", u.Key, "err", err)
	}
}

// drained waits, for an interrupted copy, until the resumed stream s (nil
// for none) has no part in flight (drainWait at most), and returns the
// size recorded then; staged when s is nil.
func (s *stream) drained(staged int64) int64 {
	if s == nil {
		return staged
	}
	s.waitDrain()
	r := s.rec
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lost = true // records no more: released next
	return max(staged, r.size)
}

// finishStaged completes, for a close, the staged upload st the copy e
// continues with the resumed stream s: s sends what is left; when it was
// broken, the rest is sent whole (continueStaged).
func (c *cache) finishStaged(e *entry, st *stagedState, s *stream, f *os.File, size int64, mtime time.Time, mtimeSet bool, mode uint32) (string, time.Time, error) {
	etag, stored, err := s.finish(size, mtime, mtimeSet, mode)
	if errors.Is(err, errStreamFallback) {
		return c.continueStaged(e, st, f, size, mtime, mtimeSet, mode)
	}
	if err != nil {
		return "", time.Time{}, err
	}
	e.mu.Lock()
	if e.staged == st {
		e.staged = nil
	}
	e.mu.Unlock()
	c.stg.invalidate()
	c.log.Info("staged upload resumed and completed", "bucket", st.u.Bucket, "key", st.u.Key, "staged", st.u.Size, "size", size, "streamed", true)
	return etag, stored, nil
}
