package fusefs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Lock order: entry.upMu, then entry.mu, then cache.mu (or stream.mu).

// entry is the local copy of one file: a sparse data file and its journal.
type entry struct {
	id string
	c  *cache

	// upMu serializes uploads, renames and removals of this entry.
	upMu sync.Mutex

	// mu guards the fields below.
	mu         sync.Mutex
	f          *os.File
	bucket     string
	key        string
	user       string
	baseETag   string
	baseExists bool
	size       int64
	mtime      time.Time
	mtimeSet   bool
	mode       uint32
	dirty      bool
	gen        uint64
	complete   bool
	// tailMode: the copy holds only the bytes from tailFrom on, appended
	// to an object of at least minComposeSize that is not downloaded; the
	// upload joins them server-side.
	tailMode bool
	tailFrom int64
	noSpace  bool // a write hit the space reserve: never upload
	// interrupted: the writer went away without closing the file (the
	// SFTP session ended with it open; see InterruptedXattr). The copy is
	// kept, dirty, for a resume, but never uploaded until a writer opens
	// it again; the janitor discards it after lifespan.
	interrupted bool
	deleted     bool
	opens       int // open handles
	active      int // open handles not flushed since their last write
	lastUse     time.Time
	written     int64         // bytes written since the last free-space check
	retryAt     time.Time     // next janitor retry of a failed upload
	backoff     time.Duration // delay before the next retry
	// seq: [0, seq) was written with no gap since the copy was last clean
	// (or emptied), -1 once the writes were not sequential; ahead holds
	// the pieces written beyond seq, by offset. stream is the upload of
	// the parts already written (stream.go), nil when none. aborting is
	// closed once the uploads of abandoned streams are aborted; uploads
	// lists the multipart uploads begun and not finished (journal).
	seq      int64
	ahead    []extent
	stream   *stream
	aborting []<-chan struct{}
	uploads  []pendingUpload
}

// cache is the write-back cache: every local copy, indexed by object.
type cache struct {
	// dir is the cache directory, for free space and messages; every file
	// in it is opened through root, which never leaves it.
	dir      string
	root     *os.Root
	ob       *objects
	log      *slog.Logger
	minFree  int64
	lifespan time.Duration
	// bg is the context of uploads: cancelled only by the manager.
	bg context.Context
	// removedFiles and removedBytes count the clean copies the janitor
	// removed after lifespan, and their sizes.
	removedFiles, removedBytes atomic.Int64
	// wg counts the goroutines of streaming uploads.
	wg sync.WaitGroup

	// mu guards the maps and counters below.
	mu       sync.Mutex
	byKey    map[string]*entry
	all      map[*entry]struct{}
	inflight map[string]int // uploads in flight per user
}

func objKey(bucket, key string) string { return bucket + "\x00" + key }

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// lookup returns the entry of an object, nil when there is none.
func (c *cache) lookup(bucket, key string) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byKey[objKey(bucket, key)]
}

// under returns the entries whose keys start with prefix.
func (c *cache) under(bucket, prefix string) []*entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*entry
	for k, e := range c.byKey {
		b, key, _ := strings.Cut(k, "\x00")
		if b == bucket && strings.HasPrefix(key, prefix) {
			out = append(out, e)
		}
	}
	return out
}

// newEntryLocked creates the files of a new entry; c.mu must be held.
func (c *cache) newEntryLocked(bucket, key, user string, remote *objInfo) (*entry, error) {
	id := newID()
	f, err := c.root.OpenFile(dataName(id), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("local copy: %w", err)
	}
	e := &entry{id: id, c: c, f: f, bucket: bucket, key: key, user: user, mtime: time.Now(), complete: true, lastUse: time.Now()}
	if remote != nil {
		e.baseETag = remote.ETag
		e.baseExists = true
		e.size = remote.Size
		e.mtime = remote.Mtime
		e.mode = remote.Mode
		e.complete = remote.Size == 0
	}
	c.byKey[objKey(bucket, key)] = e
	c.all[e] = struct{}{}
	return e, nil
}

// open returns the entry of an object for a new handle, creating it when
// needed. remote is the object as it is now (nil when absent) and is only
// consulted when the entry is idle and clean: a stale copy is dropped.
// trunc empties the file. The caller owns one open of the entry and must
// call release.
func (c *cache) open(bucket, key, user string, remote *objInfo, trunc bool) (*entry, error) {
	for {
		c.mu.Lock()
		e := c.byKey[objKey(bucket, key)]
		if e == nil {
			e, err := c.newEntryLocked(bucket, key, user, remote)
			if err != nil {
				c.mu.Unlock()
				return nil, err
			}
			e.opens++
			c.mu.Unlock()
			return c.opened(e, trunc)
		}
		c.mu.Unlock()
		e.mu.Lock()
		if e.deleted {
			e.mu.Unlock()
			continue
		}
		if e.opens == 0 && !e.dirty && !e.noSpace {
			stale := remote == nil || !e.baseExists || remote.ETag != e.baseETag
			if stale {
				e.mu.Unlock()
				c.drop(e)
				continue
			}
		}
		e.opens++
		e.user = user
		e.lastUse = time.Now()
		e.mu.Unlock()
		return c.opened(e, trunc)
	}
}

// opened ends open: it empties the entry when trunc is set, releasing it
// if that fails.
func (c *cache) opened(e *entry, trunc bool) (*entry, error) {
	if trunc {
		if err := e.truncate(0); err != nil {
			c.release(e)
			return nil, err
		}
	}
	return e, nil
}

// drop removes an entry and its files, whatever its state.
func (c *cache) drop(e *entry) {
	c.mu.Lock()
	if c.byKey[objKey(e.bucket, e.key)] == e {
		delete(c.byKey, objKey(e.bucket, e.key))
	}
	delete(c.all, e)
	c.mu.Unlock()
	e.mu.Lock()
	e.breakStreamLocked("local copy dropped")
	e.deleted = true
	if e.f != nil {
		e.f.Close()
		e.f = nil
	}
	e.mu.Unlock()
	c.root.Remove(dataName(e.id))
	c.root.Remove(journalName(e.id))
}

// forget marks the entry of a removed or replaced object deleted: it is
// never uploaded, and its files go when the last handle is released.
func (c *cache) forget(e *entry) {
	e.mu.Lock()
	e.breakStreamLocked("object removed or replaced")
	open := e.opens > 0
	e.deleted = true
	e.dirty = false
	e.mu.Unlock()
	c.mu.Lock()
	if c.byKey[objKey(e.bucket, e.key)] == e {
		delete(c.byKey, objKey(e.bucket, e.key))
	}
	c.mu.Unlock()
	if !open {
		c.drop(e)
	}
}

// rekey moves an entry to another object (rename). Any entry of the
// destination is forgotten. The caller holds e.upMu.
func (c *cache) rekey(e *entry, bucket, key, etag string, exists bool) {
	if old := c.lookup(bucket, key); old != nil && old != e {
		c.forget(old)
	}
	e.mu.Lock()
	// The parts sent so far went to the old key: start again (seq is kept,
	// so a sequential writer streams to the new key).
	e.breakStreamLocked("renamed")
	c.mu.Lock()
	if c.byKey[objKey(e.bucket, e.key)] == e {
		delete(c.byKey, objKey(e.bucket, e.key))
	}
	e.bucket, e.key = bucket, key
	if !e.dirty {
		e.baseETag, e.baseExists = etag, exists
	}
	c.byKey[objKey(bucket, key)] = e
	c.mu.Unlock()
	c.saveLocked(e)
	e.mu.Unlock()
}

// release ends one open of the entry.
func (c *cache) release(e *entry) {
	e.mu.Lock()
	e.opens--
	e.lastUse = time.Now()
	gone := e.opens == 0 && (e.deleted || e.noSpace)
	e.mu.Unlock()
	if gone {
		if e.noSpace {
			c.log.Warn("fusefs: local copy dropped after running out of space", "bucket", e.bucket, "key", e.key)
		}
		c.drop(e)
	}
}

// saveLocked writes the journal; e.mu must be held.
func (c *cache) saveLocked(e *entry) {
	if e.deleted {
		return
	}
	j := journal{Bucket: e.bucket, Key: e.key, BaseETag: e.baseETag, BaseExists: e.baseExists,
		Size: e.size, Mode: e.mode, Dirty: e.dirty, Complete: e.complete, TailMode: e.tailMode, TailFrom: e.tailFrom,
		Uploads: e.uploads, Interrupted: e.interrupted}
	if e.mtimeSet || e.dirty {
		j.Mtime = e.mtime
	}
	if err := writeJournal(c.root, e.id, j); err != nil {
		c.log.Error("fusefs: cannot write journal", "bucket", e.bucket, "key", e.key, "err", err)
	}
}

// InterruptedXattr is the extended attribute that marks a file open for
// writing as interrupted: set (to any value) on an open handle by a writer
// that goes away without really closing the file, such as sftpd when an
// SFTP session ends with the file open. The data written so far is then
// not uploaded at close, so that no partial object is published; the file
// keeps its partial size in the mount, so that a client can resume the
// upload, and the next writer to open it takes it up again (its close
// uploads the whole file). Not resumed within the lifespan, it is
// discarded. It cannot be read back: it is a command, not an attribute.
const InterruptedXattr = "user.sftpgate.interrupted"

// markInterrupted keeps the pending changes of e from being uploaded until
// a writer opens it again.
func (c *cache) markInterrupted(e *entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.dirty || e.deleted || e.interrupted {
		return
	}
	e.interrupted = true
	c.saveLocked(e)
}

// resume ends an interruption: a writer took the file up again.
func (c *cache) resume(e *entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.interrupted {
		e.interrupted = false
		c.saveLocked(e)
	}
}

// ensureCompleteLocked fetches the old content of the object into the
// local copy, once; e.mu must be held.
func (e *entry) ensureCompleteLocked(ctx context.Context) error {
	if e.complete {
		return nil
	}
	if err := e.checkSpaceLocked(e.size); err != nil {
		return err
	}
	if err := e.f.Truncate(e.size); err != nil {
		return fmt.Errorf("local copy: %w", err)
	}
	n := e.size
	if e.tailMode {
		n = e.tailFrom
	}
	if err := e.c.ob.download(ctx, e.bucket, e.key, e.baseETag, n, e.f); err != nil {
		return err
	}
	e.complete, e.tailMode = true, false
	e.c.saveLocked(e)
	return nil
}

// checkSpaceLocked fails with ErrNoSpace when writing n more bytes would
// take the cache directory under the reserve. It asks the file system at
// most once per spaceCheckEvery bytes.
func (e *entry) checkSpaceLocked(n int64) error {
	if e.noSpace {
		return fmt.Errorf("write: %w", ErrNoSpace)
	}
	if e.c.minFree < 0 {
		return nil
	}
	first := e.written == 0
	e.written += n
	if !first && e.written < spaceCheckEvery {
		return nil
	}
	e.written = 1
	avail, _, _, err := freeSpace(e.c.dir)
	if err != nil {
		return err
	}
	if int64(avail)-n < e.c.minFree {
		e.noSpace = true
		e.dirty = false
		return fmt.Errorf("write: %w", ErrNoSpace)
	}
	return nil
}

// markDirtyLocked records a change; e.mu must be held.
func (e *entry) markDirtyLocked() {
	e.gen++
	e.mtime = time.Now()
	e.mtimeSet = false
	if !e.dirty {
		e.dirty = true
		e.c.saveLocked(e)
	}
}

// appendOffset asks writeAt to write at the end of the file.
const appendOffset = -1

// writeAt writes p at off in the local copy (at its end for appendOffset).
func (e *entry) writeAt(ctx context.Context, p []byte, off int64) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return 0, fmt.Errorf("write: %w", ErrNotFound)
	}
	if off == appendOffset {
		off = e.size
	}
	if !e.complete && !e.tailMode && !e.dirty && e.baseExists && off == e.size && e.size >= minComposeSize && len(p) > 0 {
		// An append to an object not held here: keep only the new bytes.
		e.tailMode, e.tailFrom = true, e.size
		if err := e.f.Truncate(e.size); err != nil {
			return 0, fmt.Errorf("local copy: %w", err)
		}
	}
	if !e.complete && !(e.tailMode && off >= e.tailFrom) {
		if err := e.ensureCompleteLocked(ctx); err != nil {
			return 0, err
		}
	}
	if err := e.checkSpaceLocked(int64(len(p))); err != nil {
		e.breakStreamLocked("no space")
		return 0, err
	}
	if !e.dirty && e.complete && !e.tailMode && e.seq == 0 && e.stream == nil && off == e.size {
		// An append to a clean copy of the whole file (a resume): the file
		// so far is the start of what a sequential writer writes.
		e.seq = off
	}
	n, err := e.f.WriteAt(p, off)
	if n > 0 && off < e.streamedLocked() {
		e.seq = -1
		e.breakStreamLocked("write into a part already sent")
	}
	if end := off + int64(n); end > e.size {
		e.size = end
	}
	if n > 0 {
		e.markDirtyLocked()
	}
	if err != nil {
		if errors.Is(err, errENOSPC) {
			e.noSpace = true
			e.dirty = false
			e.breakStreamLocked("no space")
			return n, fmt.Errorf("write: %w", ErrNoSpace)
		}
		return n, fmt.Errorf("write: %w", err)
	}
	e.trackWriteLocked(off, off+int64(n))
	return n, nil
}

// readAt reads the local copy.
func (e *entry) readAt(ctx context.Context, p []byte, off int64) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return 0, fmt.Errorf("read: %w", ErrNotFound)
	}
	if !e.complete && !(e.tailMode && off >= e.tailFrom) {
		if err := e.ensureCompleteLocked(ctx); err != nil {
			return 0, err
		}
	}
	if off >= e.size {
		return 0, nil
	}
	if rest := e.size - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := e.f.ReadAt(p, off)
	if err != nil && n < len(p) {
		// A hole at the end of a sparse file reads as zeros.
		clear(p[n:])
		n = len(p)
	}
	return n, nil
}

// truncate sets the size of the local copy.
func (e *entry) truncate(size int64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return fmt.Errorf("truncate: %w", ErrNotFound)
	}
	if size == 0 {
		e.complete, e.tailMode = true, false
	} else if err := e.ensureCompleteLocked(context.Background()); err != nil {
		return err
	}
	if size > e.size {
		if err := e.checkSpaceLocked(0); err != nil {
			return err
		}
	}
	if size < e.streamedLocked() {
		e.breakStreamLocked("truncated below a part already sent")
	}
	if err := e.f.Truncate(size); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	e.size = size
	switch {
	case size == 0:
		e.resetSeqLocked()
	case e.seq > size:
		e.seq, e.ahead = size, nil
	default:
		e.ahead = nil
	}
	e.markDirtyLocked()
	return nil
}

// allocate reserves space in the local copy; without KEEP_SIZE it also
// extends the file to off+n.
func (e *entry) allocate(ctx context.Context, off, n int64, mode uint32) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return fmt.Errorf("allocate: %w", ErrNotFound)
	}
	if err := e.ensureCompleteLocked(ctx); err != nil {
		return err
	}
	if err := e.checkSpaceLocked(n); err != nil {
		return err
	}
	if err := unix.Fallocate(int(e.f.Fd()), mode, off, n); err != nil {
		if errors.Is(err, errENOSPC) {
			return fmt.Errorf("allocate: %w", ErrNoSpace)
		}
		return fmt.Errorf("allocate: %w", err)
	}
	if mode&unix.FALLOC_FL_KEEP_SIZE == 0 && off+n > e.size {
		e.size = off + n
		e.markDirtyLocked()
	}
	return nil
}

// setMeta changes the mtime and/or mode stored at the next upload.
func (e *entry) setMeta(mtime *time.Time, mode *uint32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if mtime != nil {
		e.mtime = *mtime
	}
	if mode != nil {
		e.mode = *mode
	}
	e.gen++
	if !e.dirty {
		e.dirty = true
	}
	e.mtimeSet = mtime != nil || e.mtimeSet
	e.c.saveLocked(e)
}

// complete fetches the old content now (before a rename moves the key
// the lazy fetch or an append upload would read from).
func (e *entry) completeNow(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil || e.complete {
		return nil
	}
	return e.ensureCompleteLocked(ctx)
}

// attr returns the size and mtime of the local copy.
// cleanETag is the ETag of the object the copy holds exactly (complete,
// nothing pending), "" when it holds anything else.
func (e *entry) cleanETag() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.complete || e.dirty || e.tailMode || e.deleted || e.interrupted || e.noSpace || !e.baseExists {
		return ""
	}
	return e.baseETag
}

func (e *entry) attr() (size int64, mtime time.Time, mode uint32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.size, e.mtime, e.mode
}

// upload sends the local copy to its object when it is dirty. It runs on
// the cache's background context, whatever ctx the caller had: ctx only
// stops the caller from waiting.
func (c *cache) upload(e *entry) error {
	e.upMu.Lock()
	defer e.upMu.Unlock()
	e.mu.Lock()
	if e.noSpace {
		e.breakStreamLocked("no space")
		e.mu.Unlock()
		e.waitAborts()
		return fmt.Errorf("upload: %w", ErrNoSpace)
	}
	if e.interrupted {
		// Not a client's close: publish nothing, never a partial object.
		e.breakStreamLocked("interrupted")
		e.mu.Unlock()
		e.waitAborts()
		return nil
	}
	if !e.dirty || e.deleted || e.f == nil {
		e.breakStreamLocked("nothing to upload")
		e.mu.Unlock()
		e.waitAborts()
		return nil
	}
	// Writes from now on belong to the next upload: they may start a new
	// stream.
	s := e.stream
	e.stream = nil
	gen, bucket, key, size, f := e.gen, e.bucket, e.key, e.size, e.f
	meta := userMeta(e.mtime, e.mode)
	mtime, mtimeSet, mode := e.mtime, e.mtimeSet, e.mode
	user := e.user
	tail := e.tailMode && !e.complete
	tailFrom, base := e.tailFrom, e.baseETag
	e.mu.Unlock()
	// No multipart upload of an abandoned stream outlives this upload.
	e.waitAborts()

	c.mu.Lock()
	c.inflight[user]++
	c.mu.Unlock()
	start := time.Now()
	var (
		etag   string
		stored time.Time // the mtime the object holds, when not mtime
		err    error
	)
	switch {
	case s != nil:
		etag, stored, err = s.finish(size, mtime, mtimeSet, mode)
		if errors.Is(err, errStreamFallback) {
			stored = time.Time{}
			etag, err = c.ob.put(c.bg, bucket, key, f, size, meta)
		}
	case tail:
		etag, err = c.ob.appendUpload(c.bg, bucket, key, base, tailFrom, f, size, meta)
	default:
		etag, err = c.ob.put(c.bg, bucket, key, f, size, meta)
	}
	c.mu.Lock()
	c.inflight[user]--
	c.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		c.log.Warn("fusefs: upload failed", "bucket", bucket, "key", key, "size", size, "err", err)
		return err
	}
	c.log.Debug("fusefs: uploaded", "bucket", bucket, "key", key, "size", size, "took", time.Since(start))
	if e.deleted {
		return nil
	}
	e.baseETag, e.baseExists = etag, true
	if e.gen == gen {
		e.dirty = false
		e.resetSeqLocked()
		if !stored.IsZero() {
			e.mtime = stored
		}
		if tail {
			// The store holds it all now; the copy is lazy again.
			e.tailMode = false
		}
	}
	e.mtimeSet = true
	c.saveLocked(e)
	return nil
}

// cacheStats is what the cache holds for one user.
type cacheStats struct {
	dirtyFiles, cleanFiles int
	dirtyBytes, cleanBytes int64
	inflight               int
}

// stats counts the local copies held for user and their bytes, with and
// without changes not uploaded yet, and the user's uploads in flight.
func (c *cache) stats(user string) cacheStats {
	var st cacheStats
	c.mu.Lock()
	es := slices.Collect(maps.Keys(c.all))
	st.inflight = c.inflight[user]
	c.mu.Unlock()
	for _, e := range es {
		e.mu.Lock()
		if e.user == user && !e.deleted {
			if e.dirty {
				st.dirtyFiles++
				st.dirtyBytes += e.size
			} else {
				st.cleanFiles++
				st.cleanBytes += e.size
			}
		}
		e.mu.Unlock()
	}
	return st
}

// sweep drops clean idle entries unused for lifespan and retries the upload
// of dirty idle ones. It returns when done or when ctx is cancelled.
func (c *cache) sweep(ctx context.Context, now time.Time) {
	c.mu.Lock()
	es := slices.Collect(maps.Keys(c.all))
	c.mu.Unlock()
	for _, e := range es {
		if ctx.Err() != nil {
			return
		}
		e.mu.Lock()
		idle := e.opens == 0
		expired := idle && (!e.dirty || e.interrupted) && now.Sub(e.lastUse) >= c.lifespan
		retry := idle && e.dirty && !e.interrupted && !e.deleted && now.Sub(e.lastUse) >= time.Second && !now.Before(e.retryAt)
		if expired && e.interrupted && !e.deleted {
			c.log.Info("fusefs: interrupted upload not resumed within the lifespan; discarded", "bucket", e.bucket, "key", e.key, "size", e.size)
		}
		counted, size := expired && !e.deleted, e.size
		if expired {
			// Marked under the lock that open checks: no handle can take
			// the entry between this check and its removal.
			e.deleted = true
		}
		e.mu.Unlock()
		switch {
		case expired:
			c.drop(e)
			if counted {
				c.removedFiles.Add(1)
				c.removedBytes.Add(size)
			}
		case retry:
			err := c.upload(e)
			e.mu.Lock()
			if err != nil {
				e.backoff = min(max(2*e.backoff, 5*time.Second), 5*time.Minute)
				e.retryAt = time.Now().Add(e.backoff)
			} else {
				e.backoff, e.retryAt = 0, time.Time{}
			}
			e.mu.Unlock()
		}
	}
}

// closeAll aborts the streaming uploads left and closes every data file
// (at shutdown).
func (c *cache) closeAll() {
	c.mu.Lock()
	es := slices.Collect(maps.Keys(c.all))
	c.mu.Unlock()
	for _, e := range es {
		e.mu.Lock()
		e.breakStreamLocked("shutdown")
		e.mu.Unlock()
	}
	done := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		c.log.Warn("fusefs: multipart uploads still being aborted at shutdown")
	}
	for _, e := range es {
		e.mu.Lock()
		if e.f != nil {
			e.f.Close()
			e.f = nil
		}
		e.mu.Unlock()
	}
}
