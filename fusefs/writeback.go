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

// The write-back cache keeps one local copy per object being written and
// owns the rule that makes it safe to publish from:
//
// The object at a key only ever holds what it held before, exactly the
// bytes of the local copy as it stood when some handle's close (or fsync)
// returned success, or the result of a delete or rename that returned
// success.
//
//   - Every successful close or fsync of a writing handle uploads the copy
//     as it stands (other handles' bytes included) before it returns; a
//     failed upload fails the close and publishes nothing.
//   - Nothing else publishes: not shutdown, not the janitor, not recovery.
//   - A handle the daemon ends itself is interrupted (fsapi.InterruptIoctl):
//     its close publishes nothing and changes nothing for other handles.
//   - A handle whose write failed (no space, too big) is poisoned: its
//     close returns that error and publishes nothing.
//   - When the last writer of a copy with unpublished changes goes away
//     without publishing, the copy becomes an interrupted upload, kept for
//     a resume for the lifespan: cut to its contiguous written prefix (so a
//     resume from its size leaves no hole), or kept whole when what it holds
//     is what a close tried and failed to upload.
//   - Every second, the contiguous prefix of each changed copy is
//     fdatasync'd and recorded in the journal as durable; after a crash the
//     copy waits as an interrupted upload cut to that length.
//
// Only the methods of this file (and of its streaming upload, stream.go)
// lock an entry: the rest of the package asks through the accessors
// below (live, info, held, pending...). The journal is saved whole from
// the entry (saveLocked).
//
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
	// baseSize is the size of the object at baseETag, for quota deltas
	// (baseSizeUnknown: not known, for a copy found at start); qUser is
	// the user whose quota counts the object, "" when none.
	baseSize        int64
	baseSizeUnknown bool
	qUser           string
	size            int64
	mtime           time.Time
	mtimeSet        bool
	mode            uint32
	dirty           bool
	gen             uint64
	complete        bool
	// tailMode: the copy holds only the bytes from tailFrom on, appended
	// to an object of at least minComposeSize that is not downloaded; the
	// upload joins them server-side.
	tailMode bool
	tailFrom int64
	noSpace  bool // a write hit the space reserve: never upload
	// interrupted: the copy holds changes no close published and no
	// writer is left (see the rule above); it waits for a resume and the
	// janitor discards it after lifespan.
	interrupted bool
	// checkedAt is when an interrupted upload was last compared with the
	// object in the store (superseded.go).
	checkedAt time.Time
	deleted   bool
	opens     int // open handles
	writers   int // open handles for writing
	// parked: the data file is closed while the copy is clean and idle
	// (f nil); fileLocked opens it again.
	parked bool
	// accounted is what the copy counts in cache.userBytes, and acctHeld
	// whether it counts in cache.userFiles, for acctUser.
	accounted int64
	acctHeld  bool
	acctUser  string
	lastUse   time.Time
	written   int64 // bytes written since the last free-space check
	// fill is what the copy holds that is the file's content: the object
	// it was taken from, and what was written or truncated since. durable
	// is the prefix of it last fdatasync'd and recorded in the journal;
	// cuts counts the truncations below it (a checkpoint in flight that
	// sees it change records nothing). failedGen is the gen of the copy
	// when a close's upload last failed (0: none).
	fill      fill
	durable   int64
	cuts      uint64
	failedGen uint64
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
	// journaled: the copy's journal was written once (or found at start).
	journaled bool
	// jlog is the journal file as this entry last wrote it (journallog.go).
	jlog journalLog
	// qSeen is qUser's quota as checkGrow last read it, at qSeenAt.
	qSeen   Quota
	qSeenAt time.Time
	// staged is the staged upload the copy continues (staging.go), nil
	// when none.
	staged *stagedState
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
	// maxClean bounds the clean copies kept; maxUserCopies, the copies a
	// user has being written or interrupted (Options).
	maxClean, maxUserCopies int
	maxUserBytes            int64
	// qk applies the users' quotas; nil when there are none.
	qk *quotaKeeper
	// spares are empty files made ahead for new copies (spares.go).
	spares *spares
	// bg is the context of uploads: cancelled only by the manager.
	bg context.Context
	// removedFiles and removedBytes count the clean copies the janitor
	// removed after lifespan, and their sizes.
	removedFiles, removedBytes atomic.Int64
	// wg counts the goroutines of streaming uploads.
	wg sync.WaitGroup
	// stg records streamed uploads for a resume on any node
	// (staging.go); nil without Options.Staging.
	stg *staging

	// mu guards the maps and counters below.
	mu       sync.Mutex
	byKey    map[string]*entry
	all      map[*entry]struct{}
	inflight map[string]int // uploads in flight per user
	// userBytes adds up, per user, the size of the copies being written
	// or waiting as interrupted uploads (entry.accountLocked).
	userBytes map[string]int64
	// userFiles counts, per user, the copies being written or waiting as
	// interrupted uploads (entry.accountLocked).
	userFiles map[string]int
}

func objKey(bucket, key string) string { return bucket + "\x00" + key }

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// entries returns every entry of the cache, at this moment.
func (c *cache) entries() []*entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Collect(maps.Keys(c.all))
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
	f, err := createFile(c.root, c.spares, dataName(id), os.O_RDWR)
	if err != nil {
		return nil, fmt.Errorf("local copy: %w", err)
	}
	e := &entry{id: id, c: c, f: f, bucket: bucket, key: key, user: user, mtime: time.Now(), complete: true, lastUse: time.Now()}
	if remote != nil {
		e.baseETag = remote.ETag
		e.baseExists = true
		e.baseSize = remote.Size
		e.size = remote.Size
		e.mtime = remote.Mtime
		e.mode = remote.Mode
		e.complete = remote.Size == 0
	}
	e.fill.reset(e.size)
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
		if e.supersededLocked(remote) {
			e.mu.Unlock()
			c.dropSuperseded(e, remote)
			continue
		}
		e.opens++
		e.user = user
		e.lastUse = time.Now()
		e.accountLocked()
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

// unindexLocked removes e from the index by key, if it is there.
// c.mu must be held.
func (c *cache) unindexLocked(e *entry) {
	if c.byKey[objKey(e.bucket, e.key)] == e {
		delete(c.byKey, objKey(e.bucket, e.key))
	}
}

// drop removes an entry and its files, whatever its state.
func (c *cache) drop(e *entry) {
	c.mu.Lock()
	c.unindexLocked(e)
	delete(c.all, e)
	c.mu.Unlock()
	e.mu.Lock()
	e.breakStreamLocked("local copy dropped")
	e.releaseStagedLocked()
	e.deleted = true
	e.accountLocked()
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
	e.unstageLocked()
	open := e.opens > 0
	e.deleted = true
	e.dirty = false
	e.accountLocked()
	e.mu.Unlock()
	c.mu.Lock()
	c.unindexLocked(e)
	c.mu.Unlock()
	if !open {
		c.drop(e)
	}
}

// rekey moves an entry to another object (rename): etag and exists say
// what the new key holds now (the entry's base from then on), saved in the
// same journal write. Any entry of the destination is forgotten. The
// caller holds e.upMu.
func (c *cache) rekey(e *entry, bucket, key, etag string, exists bool) {
	if old := c.lookup(bucket, key); old != nil && old != e {
		c.forget(old)
	}
	e.mu.Lock()
	// The parts sent so far went to the old key: start again (seq is kept,
	// so a sequential writer streams to the new key).
	e.breakStreamLocked("renamed")
	c.mu.Lock()
	c.unindexLocked(e)
	e.bucket, e.key = bucket, key
	e.baseETag, e.baseExists = etag, exists
	if !exists {
		e.baseSize = 0
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
	idle := e.opens == 0
	e.mu.Unlock()
	if idle && !gone {
		e.park()
	}
	if gone {
		if e.noSpace {
			c.log.Warn("local copy dropped after running out of space", "bucket", e.bucket, "key", e.key)
		}
		c.drop(e)
	}
}

// The accessors below are how the rest of the package reads an entry.

// live returns what the copy shows when it is open or has changes no
// close published (or was used within ttl): ok false otherwise.
func (e *entry) live(ttl time.Duration) (objInfo, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.deleted || !(e.opens > 0 || e.dirty || (ttl > 0 && time.Since(e.lastUse) < ttl)) {
		return objInfo{}, false
	}
	return objInfo{Key: e.key, Size: e.size, Mtime: e.mtime, Mode: e.mode, ETag: e.baseETag}, true
}

// info returns what the copy shows, and whether it was deleted.
func (e *entry) info() (objInfo, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return objInfo{Key: e.key, Size: e.size, Mtime: e.mtime, Mode: e.mode, ETag: e.baseETag}, e.deleted
}

// openLive takes one open of e when it is open or dirty already.
func (e *entry) openLive() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.deleted || !(e.opens > 0 || e.dirty) {
		return false
	}
	e.opens++
	e.lastUse = time.Now()
	return true
}

// holdsAll reports whether the copy holds all of the object version etag.
func (e *entry) holdsAll(etag string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.complete && !e.deleted && e.baseExists && e.baseETag == etag
}

// held reports whether a writer or an interrupted upload holds the copy.
func (e *entry) held() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.writers > 0 || e.interrupted
}

// pending reports whether the copy holds what the store does not: changes
// no close published, or a file never published.
func (e *entry) pending() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return (e.dirty || !e.baseExists) && !e.deleted
}

// published reports whether the copy's object exists in the store.
func (e *entry) published() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.baseExists
}

// base returns the copy's key and the object it is based on; lazy is true
// for a clean copy that does not hold the object's bytes.
func (e *entry) base() (key, etag string, exists, lazy bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.key, e.baseETag, e.baseExists, !e.complete && !e.dirty
}

// metaCopied records that the object old was copied onto itself as etag
// with new metadata, when the copy is idle and clean on old.
func (e *entry) metaCopied(old, etag string, mtime time.Time, mode uint32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.dirty && e.opens == 0 && e.baseETag == old {
		e.baseETag, e.mtime, e.mode = etag, mtime, mode
		e.c.saveLocked(e)
	}
}

// save writes the journal.
func (c *cache) save(e *entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c.saveLocked(e)
}

// saveLocked writes the journal; e.mu must be held.
func (c *cache) saveLocked(e *entry) { c.saveSyncLocked(e, true) }

// saveSyncLocked writes the journal, fsync'd only when sync is true; e.mu
// must be held.
func (c *cache) saveSyncLocked(e *entry, sync bool) {
	if e.deleted {
		return
	}
	j := journal{Bucket: e.bucket, Key: e.key, BaseETag: e.baseETag, BaseExists: e.baseExists,
		Size: e.size, Mode: e.mode, Dirty: e.dirty, Complete: e.complete, TailMode: e.tailMode, TailFrom: e.tailFrom,
		Uploads: e.uploads, Interrupted: e.interrupted, Durable: e.durable, User: e.user}
	if e.mtimeSet || e.dirty {
		j.Mtime = e.mtime
	}
	if err := e.jlog.write(c.root, c.spares, e.id, j, sync, !e.journaled); err != nil {
		c.log.Error("cannot write journal", "bucket", e.bucket, "key", e.key, "err", err)
		return
	}
	e.journaled = true
}

// mayWrite fails with ErrTooManyCopies when writing to bucket/key would
// give user one copy more than maxUserCopies being written or waiting as
// interrupted uploads. Checked before the copy is taken.
func (c *cache) mayWrite(bucket, key, user string) error {
	if e := c.lookup(bucket, key); e != nil {
		e.mu.Lock()
		held := !e.deleted && (e.writers > 0 || e.dirty)
		e.mu.Unlock()
		if held {
			return nil
		}
	}
	if c.userCopies(user) >= c.maxUserCopies {
		return fmt.Errorf("open: %w (limit %d)", ErrTooManyCopies, c.maxUserCopies)
	}
	return nil
}

// openWriter counts a new handle open for writing on e; a copy waiting as
// an interrupted upload is taken up again.
func (c *cache) openWriter(e *entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.accountLocked()
	e.writers++
	if e.interrupted {
		e.interrupted = false
		c.saveLocked(e)
	}
}

// userCopies counts the copies of user that are being written or wait as
// interrupted uploads.
func (c *cache) userCopies(user string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.userFiles[user]
}

// accountLocked brings the copy's part of cache.userBytes and
// cache.userFiles up to date: one file, of its size, while a writer or an
// interrupted upload holds it (for the bytes, unless it ran out of space),
// else nothing. Every change of those states ends here. e.mu must be held.
func (e *entry) accountLocked() {
	held := !e.deleted && (e.writers > 0 || e.dirty)
	want := int64(0)
	if held && !e.noSpace {
		want = e.size
		if e.staged != nil {
			want -= e.tailFrom // staged in the store, not here
		}
	}
	if want == e.accounted && held == e.acctHeld && e.acctUser == e.user {
		return
	}
	c := e.c
	c.mu.Lock()
	if e.accounted != 0 {
		if c.userBytes[e.acctUser] -= e.accounted; c.userBytes[e.acctUser] == 0 {
			delete(c.userBytes, e.acctUser)
		}
	}
	if e.acctHeld {
		if c.userFiles[e.acctUser]--; c.userFiles[e.acctUser] == 0 {
			delete(c.userFiles, e.acctUser)
		}
	}
	if want != 0 {
		c.userBytes[e.user] += want
	}
	if held {
		c.userFiles[e.user]++
	}
	c.mu.Unlock()
	e.accounted, e.acctHeld, e.acctUser = want, held, e.user
}

// account is accountLocked for a caller without e.mu.
func (e *entry) account() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.accountLocked()
}

// growLocked fails with ErrCopyQuota when making the copy size bytes
// long would take its user's copies past maxUserBytes. e.mu must be held.
func (e *entry) growLocked(size int64) error {
	if size <= e.size || e.c.maxUserBytes <= 0 {
		return nil
	}
	c := e.c
	c.mu.Lock()
	total := c.userBytes[e.user]
	c.mu.Unlock()
	if e.acctUser == e.user {
		total -= e.accounted
	}
	if e.staged != nil {
		size -= e.tailFrom // staged in the store, not here
	}
	if total+size > c.maxUserBytes {
		return fmt.Errorf("write: %w (limit %d bytes)", ErrCopyQuota, c.maxUserBytes)
	}
	return nil
}

// fileLocked makes sure the data file is open (a parked copy's is not);
// e.mu must be held.
func (e *entry) fileLocked() error {
	if e.f != nil {
		return nil
	}
	if !e.parked || e.deleted {
		return ErrNotFound
	}
	f, err := openRegular(e.c.root, dataName(e.id), os.O_RDWR)
	if err != nil {
		return fmt.Errorf("local copy: %w", err)
	}
	e.f, e.parked = f, false
	return nil
}

// park closes the data file of a clean idle copy, so that the copies kept
// for a resume hold no descriptor. A copy being uploaded is left alone.
func (e *entry) park() {
	if !e.upMu.TryLock() {
		return
	}
	defer e.upMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.opens > 0 || e.dirty || e.deleted || e.noSpace || e.f == nil || e.stream != nil || len(e.aborting) > 0 {
		return
	}
	e.f.Close()
	e.f, e.parked = nil, true
}

// closeWriter ends a handle open for writing. When it was the last one and
// the copy holds changes no close published, the copy becomes an
// interrupted upload: cut to its contiguous prefix, unless what it holds is
// exactly what a close tried and failed to upload.
func (c *cache) closeWriter(e *entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.accountLocked()
	e.writers--
	if e.writers > 0 || !e.dirty || e.deleted || e.noSpace {
		return
	}
	if err := e.fileLocked(); err != nil {
		c.log.Error("cannot keep an interrupted upload", "bucket", e.bucket, "key", e.key, "err", err)
		return
	}
	if c.handOffLocked(e) {
		return
	}
	e.breakStreamLocked("interrupted")
	if e.failedGen != e.gen {
		if err := e.cutLocked(); err != nil {
			c.log.Error("cannot cut an interrupted upload to its written prefix", "bucket", e.bucket, "key", e.key, "err", err)
		}
	}
	if !e.dirty {
		return
	}
	// At rest now: all of it survives a crash.
	if err := fdatasync(e.f); err == nil {
		e.durable = e.size
	}
	e.interrupted = true
	c.saveLocked(e)
	c.log.Info("interrupted upload kept for a resume", "bucket", e.bucket, "key", e.key, "size", e.size, "user", e.user)
}

// cutLocked cuts the copy to its contiguous prefix: what a resume from its
// size continues without leaving a hole. A copy appended to an object not
// held here (tail mode) that holds nothing new becomes a clean copy of
// that object again. e.mu must be held.
func (e *entry) cutLocked() error {
	p := min(e.fill.prefix, e.size)
	if e.tailMode && !e.complete && p <= e.tailFrom {
		if err := e.f.Truncate(e.tailFrom); err != nil {
			return err
		}
		e.size, e.tailMode, e.dirty = e.tailFrom, false, false
		e.fill.reset(e.size)
		e.durable, e.failedGen = 0, 0
		e.resetSeqLocked()
		e.c.saveLocked(e)
		return nil
	}
	if p == e.size && len(e.fill.pieces) == 0 {
		return nil
	}
	if p < e.durable {
		e.durable = p
		e.cuts++
		e.c.saveLocked(e)
	}
	if err := e.f.Truncate(p); err != nil {
		return err
	}
	e.size = p
	e.fill.cut(p)
	if e.seq > p {
		e.seq = p
	}
	e.ahead = nil
	return nil
}

// ensureCompleteLocked fetches the old content of the object into the
// local copy, once; e.mu must be held.
func (e *entry) ensureCompleteLocked(ctx context.Context) error {
	if e.complete {
		return nil
	}
	if err := e.stagedRangeLocked(); err != nil {
		return err
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
		// Journaled at the first change, durable 0: a crash from now on
		// finds an interrupted upload, never the old object under a copy
		// that was being rewritten (a resume from the old object's size
		// would join its head to the new tail). The first journal of a
		// new file (no object at its key) is not fsync'd: a kill finds it
		// all the same, and what a power loss can make of it (no journal,
		// or one not trusted) publishes nothing and hides no object (nor
		// does its clean journal, not fsync'd either: see upload).
		e.dirty = true
		e.durable = 0
		e.c.saveSyncLocked(e, e.journaled || e.baseExists)
	}
}

// appendOffset asks writeAt to write at the end of the file.
const appendOffset = -1

// writeAt writes p at off in the local copy (at its end for appendOffset).
func (e *entry) writeAt(ctx context.Context, p []byte, off int64) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.accountLocked()
	if err := e.fileLocked(); err != nil {
		return 0, fmt.Errorf("write: %w", err)
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
	if err := e.growLocked(off + int64(len(p))); err != nil {
		return 0, err
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
	if n > 0 {
		// A failed write changes no size.
		e.size = max(e.size, off+int64(n))
		e.fill.add(off, off+int64(n))
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
	if err := e.fileLocked(); err != nil {
		return 0, fmt.Errorf("read: %w", err)
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
	defer e.accountLocked()
	if err := e.fileLocked(); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	if size == 0 {
		e.unstageLocked()
		e.complete, e.tailMode = true, false
	} else if err := e.ensureCompleteLocked(context.Background()); err != nil {
		return err
	}
	if err := e.growLocked(size); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	if size > e.size {
		if err := e.checkSpaceLocked(0); err != nil {
			return err
		}
	}
	if size < e.streamedLocked() {
		e.breakStreamLocked("truncated below a part already sent")
	}
	if size < e.durable {
		// Recorded before the bytes go: a crash never finds a durable
		// length over bytes written since.
		e.durable = size
		e.cuts++
		e.c.saveLocked(e)
	}
	if err := e.f.Truncate(size); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	if size > e.size {
		e.fill.add(e.size, size)
	} else {
		e.fill.cut(size)
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
	defer e.accountLocked()
	if err := e.fileLocked(); err != nil {
		return fmt.Errorf("allocate: %w", err)
	}
	if err := e.ensureCompleteLocked(ctx); err != nil {
		return err
	}
	if mode&unix.FALLOC_FL_KEEP_SIZE == 0 {
		if err := e.growLocked(off + n); err != nil {
			return fmt.Errorf("allocate: %w", err)
		}
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
		e.fill.add(e.size, off+n)
		e.size = off + n
		e.markDirtyLocked()
	}
	return nil
}

// setMeta changes the mtime and/or mode stored at the next upload.
func (e *entry) setMeta(mtime *time.Time, mode *uint32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.accountLocked()
	if mtime != nil {
		e.mtime = *mtime
	}
	if mode != nil {
		e.mode = *mode
	}
	e.gen++
	if !e.dirty {
		e.dirty = true
		e.durable = 0
	}
	e.mtimeSet = mtime != nil || e.mtimeSet
	e.c.saveLocked(e)
}

// completeNow fetches the old content now (before a rename moves the key
// the lazy fetch or an append upload would read from).
func (e *entry) completeNow(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.complete {
		return nil
	}
	if err := e.fileLocked(); err != nil {
		return err
	}
	return e.ensureCompleteLocked(ctx)
}

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

// attr returns the size, mtime and mode of the local copy.
func (e *entry) attr() (size int64, mtime time.Time, mode uint32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.size, e.mtime, e.mode
}

// upload publishes the local copy, when dirty, for a handle's successful
// close or fsync: the only caller that may. It runs on the cache's
// background context, whatever the caller's request does. A failure
// publishes nothing and keeps the copy whole for the client's retry.
func (c *cache) upload(e *entry) error {
	e.upMu.Lock()
	defer e.upMu.Unlock()
	if !c.claimStaged(c.bg, e) {
		return fmt.Errorf("upload: staged upload held by another node: %w", ErrConflict)
	}
	e.mu.Lock()
	if e.noSpace {
		e.breakStreamLocked("no space")
		e.mu.Unlock()
		e.waitAborts()
		return fmt.Errorf("upload: %w", ErrNoSpace)
	}
	if !e.dirty || e.deleted {
		e.breakStreamLocked("nothing to upload")
		e.mu.Unlock()
		e.waitAborts()
		return nil
	}
	if err := e.fileLocked(); err != nil {
		e.mu.Unlock()
		return fmt.Errorf("upload: %w", err)
	}
	qUser, qSize, qBase, qExisted := e.qUser, e.size, e.baseSize, e.baseExists
	counting := false // the owner's usage is kept: this upload changes it
	if qUser != "" && c.qk != nil {
		// The quota is asked without e.mu (a store call, maybe a listing):
		// writes meanwhile were checked as they grew the copy.
		e.mu.Unlock()
		q := c.qk.limit(c.bg, qUser)
		err := q.over(qSize, qBase, qExisted)
		counting = q.Computed
		e.mu.Lock()
		if err != nil {
			c.log.Info("upload refused by quota", "bucket", e.bucket, "key", e.key, "user", qUser, "err", err)
			e.breakStreamLocked("quota")
			e.failedGen = e.gen
			e.mu.Unlock()
			e.waitAborts()
			return fmt.Errorf("upload: %w", err)
		}
		if e.deleted || !e.dirty {
			e.breakStreamLocked("nothing to upload")
			e.mu.Unlock()
			e.waitAborts()
			return nil
		}
	}
	// Writes from now on belong to the next upload: they may start a new
	// stream.
	s := e.stream
	e.stream = nil
	gen, bucket, key, size, f := e.gen, e.bucket, e.key, e.size, e.f
	qBase, qExisted = e.baseSize, e.baseExists
	qUnknown := e.baseSizeUnknown
	meta := userMeta(e.mtime, e.mode)
	mtime, mtimeSet, mode := e.mtime, e.mtimeSet, e.mode
	user := e.user
	tail := e.tailMode && !e.complete
	tailFrom, base := e.tailFrom, e.baseETag
	staged := e.staged
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
	case staged != nil && s != nil && s.resumed == staged:
		etag, stored, err = c.finishStaged(e, staged, s, f, size, mtime, mtimeSet, mode)
	case staged != nil:
		etag, stored, err = c.continueStaged(e, staged, f, size, mtime, mtimeSet, mode)
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
		c.log.Warn("upload failed", "bucket", bucket, "key", key, "size", size, "err", err)
		if e.gen == gen {
			e.failedGen = gen
		}
		return err
	}
	c.log.Debug("uploaded", "bucket", bucket, "key", key, "size", size, "took", time.Since(start))
	switch {
	case !counting:
	case qExisted && qUnknown:
		c.qk.recompute(c.bg, qUser) // what it replaced is not known
	case qExisted:
		c.qk.add(c.bg, qUser, size-qBase, 0)
	default:
		c.qk.add(c.bg, qUser, size, 1)
	}
	e.baseSizeUnknown = false
	if e.deleted {
		return nil
	}
	e.baseETag, e.baseExists, e.baseSize = etag, true, size
	if e.gen == gen {
		e.dirty = false
		e.fill.reset(e.size)
		e.durable, e.failedGen = 0, 0
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
	// The clean journal of an object this close created with one PUT is
	// not fsync'd (the only fsync a small file had): a kill finds it, and
	// a power loss that takes it back to the dirty record before finds an
	// interrupted upload with no base, which the object just published
	// supersedes (superseded.go), never an older object. An overwrite's,
	// a streamed or a tail upload's is fsync'd: its record before names
	// an older object or multipart uploads.
	c.saveSyncLocked(e, qExisted || s != nil || tail)
	e.accountLocked()
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

// sweep drops the idle entries unused for lifespan: clean copies kept for
// a resume and interrupted uploads nobody resumed. It never uploads. It
// returns when done or when ctx is cancelled.
func (c *cache) sweep(ctx context.Context, now time.Time) {
	es := c.entries()
	for _, e := range es {
		if ctx.Err() != nil {
			return
		}
		e.mu.Lock()
		expired := e.opens == 0 && now.Sub(e.lastUse) >= c.lifespan
		if expired && e.dirty && !e.deleted {
			c.log.Info("interrupted upload not resumed within the lifespan; discarded", "bucket", e.bucket, "key", e.key, "size", e.size)
		}
		counted, size := expired && !e.deleted, e.size
		if expired {
			// Marked under the lock that open checks: no handle can take
			// the entry between this check and its removal.
			e.deleted = true
		}
		e.mu.Unlock()
		if expired {
			c.drop(e)
			if counted {
				c.removedFiles.Add(1)
				c.removedBytes.Add(size)
			}
		}
	}
	c.evictClean(ctx)
}

// evictClean parks the clean idle copies and drops the least recently
// used ones past maxClean. Copies being written and interrupted uploads
// are never evicted.
func (c *cache) evictClean(ctx context.Context) {
	es := c.entries()
	type used struct {
		e  *entry
		at time.Time
	}
	var clean []used
	for _, e := range es {
		e.mu.Lock()
		ok := e.opens == 0 && !e.dirty && !e.deleted && !e.noSpace
		at, parked := e.lastUse, e.parked
		e.mu.Unlock()
		if !ok {
			continue
		}
		if !parked {
			e.park()
		}
		clean = append(clean, used{e, at})
	}
	if len(clean) <= c.maxClean {
		return
	}
	slices.SortFunc(clean, func(a, b used) int { return a.at.Compare(b.at) })
	for _, u := range clean[:len(clean)-c.maxClean] {
		if ctx.Err() != nil {
			return
		}
		e := u.e
		e.mu.Lock()
		ok := e.opens == 0 && !e.dirty && !e.deleted && !e.noSpace
		if ok {
			e.deleted = true
		}
		size := e.size
		e.mu.Unlock()
		if ok {
			c.drop(e)
			c.removedFiles.Add(1)
			c.removedBytes.Add(size)
		}
	}
}

// checkpoint makes the contiguous prefix of every changed copy durable:
// fdatasync, then the length recorded in the journal. A crash loses at
// most what was written since the last checkpoint.
func (c *cache) checkpoint(ctx context.Context) {
	es := c.entries()
	for _, e := range es {
		if ctx.Err() != nil {
			return
		}
		e.mu.Lock()
		p := min(e.fill.prefix, e.size)
		if !e.dirty || e.deleted || e.interrupted || e.noSpace || e.f == nil || p <= e.durable {
			e.mu.Unlock()
			continue
		}
		f, cuts := e.f, e.cuts
		e.mu.Unlock()
		// Not under e.mu: writers go on while the disk syncs.
		err := fdatasync(f)
		e.mu.Lock()
		if err != nil {
			c.log.Warn("cannot sync a local copy", "bucket", e.bucket, "key", e.key, "err", err)
		} else if e.f == f && e.cuts == cuts && e.dirty && !e.deleted && p > e.durable {
			e.durable = p
			c.saveLocked(e)
		}
		e.mu.Unlock()
	}
}

// fdatasync flushes f's data to disk. Through SyscallConn the descriptor
// stays valid even if the entry is dropped meanwhile.
func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fdatasync(int(fd)) }); err != nil {
		return err
	}
	return serr
}

// closeAll aborts the streaming uploads left and closes every data file
// (at shutdown).
func (c *cache) closeAll() {
	// Copies still written through a detached mount keep what they can.
	c.checkpoint(context.Background())
	es := c.entries()
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
		c.log.Warn("multipart uploads still being aborted at shutdown")
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
