package fusefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/sftpgate/sftpgate/fusefs/objstore"
)

// Streaming upload of sequential writers.
//
// While a file is written from offset 0 with no gap (sftp put, cp), every
// part of the object the writer has gone past is sent at once, in the
// background, as a part of a multipart upload; the last close only sends
// what is left and completes the upload, so the object becomes visible
// then and never before. The parts are read from the local copy at their
// offsets (known sizes, never more than the parts in flight in memory).
//
// A part handed to the sender is never written again: a write, truncate
// or download that would change bytes below stream.ready breaks the
// stream (its upload is aborted) and the file is uploaded whole at close,
// as without streaming. So are a gap in the writes (more than maxAhead
// pieces written beyond it), a rename (the stream restarts towards the
// new key), ENOSPC and a part that failed. Aborted and unfinished uploads
// are recorded in the journal, so that a start after a crash aborts them.
//
// Lock order: entry.mu, then stream.mu.

// maxAhead is how many separate pieces written beyond the gap-free prefix
// of a sequential writer are remembered (writes handled out of order by
// concurrent workers); one more ends the streaming of that file.
const maxAhead = 64

// maxStreamParts is the most parts sent while the file is written: the
// rest of objstore.MaxParts is left for what is written after (in bigger
// parts).
const maxStreamParts = objstore.MaxParts / 2

// errStreamFallback says that a stream could not be finished and the file
// must be uploaded whole.
var errStreamFallback = errors.New("fusefs: streaming upload abandoned")

// extent is the byte range [off, end).
type extent struct{ off, end int64 }

// pendingUpload is a multipart upload begun for a local copy and not yet
// completed or aborted, as kept in the journal.
type pendingUpload struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	ID     string `json:"id"`
}

// stream is the multipart upload of one sequential writer.
type stream struct {
	c           *cache
	e           *entry
	bucket, key string
	f           *os.File
	mtime       time.Time // stored with the object (the mtime when it began)
	mode        uint32
	ps          int64
	ctx         context.Context // cancelled when the stream is abandoned
	cancel      context.CancelFunc
	kick        chan struct{} // (1) more bytes are ready, or closing
	done        chan struct{} // closed when run has returned
	// drain is closed to stop sending new parts; those in flight finish
	// (staging.go: an interrupted upload keeps them).
	drain chan struct{}

	// mu guards the fields below.
	mu sync.Mutex
	// ready: [0, ready) may be sent and is never written again; once
	// closing, ready is the size of the file.
	ready   int64
	closing bool
	mp      *objstore.Multipart // nil until the upload is begun
	// err is the first failure; failedOpen tells it happened before
	// finish was called (the file is then uploaded whole).
	err        error
	failedOpen bool
	// rec records the parts sent for a resume on any node (staging.go);
	// nil without staging.
	rec *streamRec

	// from and first are where the stream starts: the byte offset and
	// part number (0 and 1, or after the parts of the staged upload a
	// resumed stream continues, stagestream.go). resumed is that staged
	// upload, nil for a fresh stream.
	from    int64
	first   int
	resumed *stagedState
}

// trackWriteLocked follows the writes of a possible sequential writer:
// [off, end) was just written. e.mu must be held.
func (e *entry) trackWriteLocked(off, end int64) {
	if e.seq < 0 || end <= off {
		return
	}
	if off > e.seq {
		e.ahead = insertExtent(e.ahead, off, end)
		if len(e.ahead) > maxAhead {
			e.seq = -1
			e.ahead = nil
			e.breakStreamLocked("writes out of order")
		}
		return
	}
	e.seq = max(e.seq, end)
	for len(e.ahead) > 0 && e.ahead[0].off <= e.seq {
		e.seq = max(e.seq, e.ahead[0].end)
		e.ahead = e.ahead[1:]
	}
	if e.staged != nil {
		e.streamStagedLocked()
		return
	}
	if !e.complete || e.tailMode || e.noSpace || e.deleted || e.f == nil || e.c.bg.Err() != nil {
		return
	}
	ps := e.c.ob.partSize
	ready := min(e.seq/ps, maxStreamParts) * ps
	if ready == 0 {
		return
	}
	if e.stream == nil {
		e.stream = e.c.newStream(e)
	}
	e.stream.advance(ready)
}

// resetSeqLocked starts following writes afresh (the copy is clean, or
// empty). e.mu must be held.
func (e *entry) resetSeqLocked() {
	e.seq, e.ahead = 0, nil
}

// streamedLocked returns the bytes [0, n) that a stream may have sent.
// e.mu must be held.
func (e *entry) streamedLocked() int64 {
	if e.stream == nil {
		return 0
	}
	e.stream.mu.Lock()
	defer e.stream.mu.Unlock()
	return e.stream.ready
}

// breakStreamLocked abandons the stream of e, if any: its upload is
// aborted in the background. e.mu must be held.
func (e *entry) breakStreamLocked(why string) {
	s := e.stream
	if s == nil {
		return
	}
	e.stream = nil
	e.c.log.Debug("streaming upload abandoned", "bucket", s.bucket, "key", s.key, "why", why)
	e.aborting = append(e.aborting, s.abortAsync())
}

// waitAborts waits until the uploads of the streams e abandoned are
// aborted.
func (e *entry) waitAborts() {
	e.mu.Lock()
	chs := e.aborting
	e.aborting = nil
	e.mu.Unlock()
	for _, ch := range chs {
		<-ch
	}
}

// newStream starts the stream of e, with what e is now. e.mu must be held.
func (c *cache) newStream(e *entry) *stream {
	ctx, cancel := context.WithCancel(c.bg)
	s := &stream{c: c, e: e, bucket: e.bucket, key: e.key, f: e.f, mtime: e.mtime, mode: e.mode,
		ps: c.ob.partSize, ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1), done: make(chan struct{})}
	s.rec = c.newStreamRec(e)
	s.drain = make(chan struct{})
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		s.run()
	}()
	return s
}

// advance lets the sender send [0, ready).
func (s *stream) advance(ready int64) {
	s.mu.Lock()
	grew := ready > s.ready
	if grew {
		s.ready = ready
	}
	s.mu.Unlock()
	if grew {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// fail records the first error and stops the stream.
func (s *stream) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
		s.failedOpen = !s.closing
	}
	s.mu.Unlock()
	s.cancel()
}

// run sends the parts as they become ready, at most concurrency at once,
// until the stream is cancelled or, once closing, everything is sent.
func (s *stream) run() {
	defer close(s.done)
	sem := make(chan struct{}, max(1, s.c.ob.concurrency))
	var wg sync.WaitGroup
	defer wg.Wait()
	next, n := s.from, max(1, s.first)
	for {
		s.mu.Lock()
		ready, closing, mp := s.ready, s.closing, s.mp
		s.mu.Unlock()
		pl := s.ps
		if closing {
			// What is left goes in parts big enough to stay within MaxParts.
			left := objstore.MaxParts - n + 1
			pl = objstore.PartSize(pl, ready-next, left)
			if left <= 0 || pl > objstore.MaxPartSize {
				s.fail(fmt.Errorf("stream %s/%s: too many parts: %w", s.bucket, s.key, errStreamFallback))
				return
			}
		}
		for next < ready && s.ctx.Err() == nil && !s.draining() {
			if mp == nil {
				var err error
				mp, err = s.c.ob.st.Begin(s.ctx, s.bucket, s.key, userMeta(s.mtime, s.mode))
				if err != nil {
					s.fail(fmt.Errorf("stream %s/%s: %w", s.bucket, s.key, err))
					return
				}
				s.mu.Lock()
				s.mp = mp
				s.mu.Unlock()
				s.e.addUpload(pendingUpload{Bucket: s.bucket, Key: s.key, ID: mp.ID()})
			}
			select {
			case sem <- struct{}{}:
			case <-s.ctx.Done():
				return
			case <-s.drain:
				return
			}
			l := min(pl, ready-next)
			wg.Add(1)
			go func(n int, off, l int64) {
				defer wg.Done()
				defer func() { <-sem }()
				if err := mp.PutPart(s.ctx, n, s.f, off, l); err != nil {
					s.fail(fmt.Errorf("stream %s/%s: part %d: %w", s.bucket, s.key, n, err))
					return
				}
				s.partSent(mp, n, l)
			}(n, next, l)
			next += l
			n++
			if s.resumed != nil {
				s.resumed.next.Store(int32(n))
			}
		}
		if s.ctx.Err() != nil || (closing && next >= ready) || s.draining() {
			return
		}
		select {
		case <-s.kick:
		case <-s.ctx.Done():
			return
		case <-s.drain:
			return
		}
	}
}

// abortAsync stops the stream and aborts its upload in the background;
// the returned channel is closed once that is done. It never blocks, so
// it may be called with e.mu held.
func (s *stream) abortAsync() <-chan struct{} {
	s.cancel()
	ch := make(chan struct{})
	s.c.wg.Add(1)
	go func() {
		defer s.c.wg.Done()
		defer close(ch)
		s.abortNow()
	}()
	return ch
}

// abortNow stops the stream, waits for its sender and aborts its upload.
func (s *stream) abortNow() {
	if s.resumed != nil {
		s.stopResumed()
		return
	}
	s.cancel()
	<-s.done
	s.mu.Lock()
	mp := s.mp
	s.mu.Unlock()
	if mp == nil {
		return
	}
	if err := mp.Abort(); err != nil {
		s.c.log.Warn("cannot abort a multipart upload", "bucket", s.bucket, "key", s.key, "err", err)
		return
	}
	if s.rec.staged() > 0 {
		s.c.unstage(mp.ID(), false)
	}
	s.e.removeUpload(mp.ID())
}

// finish sends what is left of the file, size bytes, and completes the
// upload. The object keeps the mtime stored when the upload began, which
// finish returns, unless mtimeSet (set explicitly since the last write)
// or mode differ from it: the object is then copied onto itself with
// them. Any error aborts the upload; one wrapping errStreamFallback means
// the file must be uploaded whole instead.
func (s *stream) finish(size int64, mtime time.Time, mtimeSet bool, mode uint32) (etag string, stored time.Time, _ error) {
	s.mu.Lock()
	if s.err == nil && size < s.ready {
		s.err, s.failedOpen = fmt.Errorf("stream %s/%s: shorter than sent: %w", s.bucket, s.key, errStreamFallback), true
	}
	failed := s.err != nil
	if !failed {
		s.ready, s.closing = size, true
	}
	s.mu.Unlock()
	if !failed {
		select {
		case s.kick <- struct{}{}:
		default:
		}
		<-s.done
	}
	s.mu.Lock()
	err, open, mp := s.err, s.failedOpen, s.mp
	s.mu.Unlock()
	if err == nil && s.ctx.Err() != nil {
		err = fmt.Errorf("stream %s/%s: %w", s.bucket, s.key, s.ctx.Err())
	}
	if err == nil && mp == nil {
		err = fmt.Errorf("stream %s/%s: nothing sent: %w", s.bucket, s.key, errStreamFallback)
	}
	if err != nil {
		s.abortNow()
		if open && !errors.Is(err, errStreamFallback) {
			s.c.log.Warn("streaming upload failed; uploading the file whole", "bucket", s.bucket, "key", s.key, "err", err)
			err = fmt.Errorf("%w: %w", errStreamFallback, err)
		}
		return "", time.Time{}, err
	}
	defer s.cancel()
	etag, err = mp.Complete(s.c.bg)
	if err != nil {
		s.abortNow()
		return "", time.Time{}, fmt.Errorf("put %s/%s: %w", s.bucket, s.key, err)
	}
	if s.resumed != nil || s.rec.staged() > 0 {
		s.c.unstage(mp.ID(), s.resumed != nil)
	}
	s.e.removeUpload(mp.ID())
	if mode != s.mode || (mtimeSet && !mtime.Equal(s.mtime)) {
		// Set by utimes or chmod after the upload began: a copy (on the
		// server) replaces the metadata.
		if etag, err = s.c.ob.st.Copy(s.c.bg, s.bucket, s.key, s.bucket, s.key, size, userMeta(mtime, mode)); err != nil {
			return "", time.Time{}, err
		}
		return etag, mtime, nil
	}
	return etag, s.mtime, nil
}

// addUpload and removeUpload keep the journal's list of unfinished
// multipart uploads.
func (e *entry) addUpload(u pendingUpload) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.uploads = append(e.uploads, u)
	e.c.saveLocked(e)
}

func (e *entry) removeUpload(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.uploads = slices.DeleteFunc(e.uploads, func(u pendingUpload) bool { return u.ID == id })
	e.c.saveLocked(e)
}
