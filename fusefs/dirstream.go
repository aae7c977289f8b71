package fusefs

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sftpgate/sftpgate/fusefs/objstore"
)

// holdBack is how many file entries a listing keeps back, waiting for a
// directory of the same name (which wins), before passing them on. A
// listing page holds at most 1000 keys, so 2048 covers the usual case with
// bounded memory.
const holdBack = 2048

// maxSeen bounds the entries a listing keeps for seeking back.
const maxSeen = 1024

// dirent is one listed name with what the listing said about it.
type dirent struct {
	name string
	kind int
	info objInfo
}

// dirHandle streams a directory listing from ListObjects, page by page,
// without holding the directory in memory. It answers READDIRPLUS lookups
// from the listing's own attributes, without a request per name.
type dirHandle struct {
	d      *dirNode
	l      loc
	prefix string

	// mu guards the fields below (go-fuse also serializes calls per handle).
	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	ch      *objstore.Listing
	idx     uint64   // entries returned so far
	ready   []dirent // entries ready to return
	pending []dirent // files held back
	last    dirent
	done    bool
	// seen keeps the entries returned so far, for seeking back without a
	// new listing, as long as there are at most maxSeen of them.
	seen     []dirent
	seenFull bool
	local    map[string]dirent // files being written that are not in the store yet
	// skipped counts the keys of this listing that cannot be file names;
	// skippedKeys holds the first maxSkippedLogged of them, escaped, for
	// the one log line at the end of the listing.
	skipped     int
	skippedKeys []string
	// startAt and startGen are when this listing started and the
	// directory's knownGen then, for remembering a complete listing.
	startAt  time.Time
	startGen uint64
}

// maxSkippedLogged bounds the keys named in a listing's log line.
const maxSkippedLogged = 8

var (
	_ fs.FileReaddirenter = (*dirHandle)(nil)
	_ fs.FileLookuper     = (*dirHandle)(nil)
	_ fs.FileSeekdirer    = (*dirHandle)(nil)
	_ fs.FileReleasedirer = (*dirHandle)(nil)
)

func newDirHandle(d *dirNode, l loc, prefix string) *dirHandle {
	return &dirHandle{d: d, l: l, prefix: prefix}
}

// startLocked (re)starts the listing; h.mu held or h not shared yet.
func (h *dirHandle) startLocked() {
	if h.cancel != nil {
		h.cancel()
	}
	v := h.d.ws.v
	h.startAt, h.startGen = time.Now(), h.d.knownGen()
	h.ctx, h.cancel = context.WithCancel(v.cache.bg)
	h.ch = v.ob.list(h.ctx, h.l.bucket, h.prefix)
	h.idx, h.ready, h.pending, h.done = 0, nil, nil, false
	h.seen, h.seenFull = nil, false
	h.skipped, h.skippedKeys = 0, nil
	h.local = map[string]dirent{}
	for _, e := range v.cache.under(h.l.bucket, h.prefix) {
		e.mu.Lock()
		name := strings.TrimPrefix(e.key, h.prefix)
		if !e.baseExists && !e.deleted && (e.opens > 0 || e.dirty) && checkName(name) == nil {
			h.local[name] = dirent{name: name, kind: kindFile, info: objInfo{Key: e.key, Size: e.size, Mtime: e.mtime, Mode: e.mode}}
		}
		e.mu.Unlock()
	}
	for name, d := range v.cache.stagedUnder(h.ctx, h.l.bucket, h.prefix) {
		if _, ok := h.local[name]; !ok {
			h.local[name] = d
		}
	}
}

// fillLocked pulls from the listing until an entry is ready or the
// listing ends; h.mu held.
func (h *dirHandle) fillLocked(ctx context.Context) syscall.Errno {
	log := h.d.ws.v.log
	if h.ch == nil {
		h.startLocked() // listing starts at the first read, not at opendir
	}
	for len(h.ready) == 0 && !h.done {
		var (
			oi objstore.Entry
			ok bool
		)
		// Not interruptible: a page comes quickly, and Go programs get
		// spurious interrupts (SIGURG) that raw getdents callers do not retry.
		oi, ok = h.ch.Next()
		if !ok {
			h.done = true
			h.ready = append(h.ready, h.pending...)
			h.pending = nil
			for _, de := range h.local {
				h.ready = append(h.ready, de)
			}
			h.local = nil
			h.rememberLocked()
			if h.skipped > 0 {
				log.Warn("skipped keys that cannot be file names", "bucket", h.l.bucket,
					"prefix", strconv.Quote(h.prefix), "count", h.skipped, "keys", h.skippedKeys)
			}
			break
		}
		if oi.Err != nil {
			if isNotFound(oi.Err) {
				continue // a bucket not created yet lists as empty
			}
			return h.errno(oi.Err)
		}
		rest := strings.TrimPrefix(oi.Key, h.prefix)
		if rest == "" {
			continue // this directory's own marker
		}
		isDir := strings.HasSuffix(rest, "/")
		name := strings.TrimSuffix(rest, "/")
		if checkName(name) != nil {
			// Logged once, at the end of the listing: a directory full
			// of such keys must not flood the log.
			h.skipped++
			if len(h.skippedKeys) < maxSkippedLogged {
				h.skippedKeys = append(h.skippedKeys, strconv.Quote(oi.Key))
			}
			continue
		}
		delete(h.local, name)
		if isDir {
			for i, p := range h.pending {
				if p.name == name {
					log.Warn("skipping a file shadowed by a directory of the same name", "bucket", h.l.bucket, "key", oi.Key[:len(oi.Key)-1])
					h.pending = append(h.pending[:i], h.pending[i+1:]...)
					break
				}
			}
			h.ready = append(h.ready, dirent{name: name, kind: kindDir, info: objInfo{Key: oi.Key}})
			continue
		}
		h.pending = append(h.pending, dirent{name: name, kind: kindFile, info: infoFrom(oi.Info)})
		if len(h.pending) > holdBack {
			h.ready = append(h.ready, h.pending[0])
			h.pending = h.pending[1:]
		}
	}
	return 0
}

// rememberLocked gives the directory the names of a listing that just
// ended, when it holds them all (see dirknown.go); h.mu held.
func (h *dirHandle) rememberLocked() {
	if h.seenFull || h.skipped > 0 || len(h.seen)+len(h.ready) > maxKnown {
		return
	}
	names := make(map[string]struct{}, len(h.seen)+len(h.ready))
	for _, de := range h.seen {
		names[de.name] = struct{}{}
	}
	for _, de := range h.ready {
		names[de.name] = struct{}{}
	}
	h.d.setKnown(h.startAt, h.startGen, h.l.bucket, h.prefix, names, false)
}

// Readdirent returns the next entry, nil at the end.
func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if errno := h.fillLocked(ctx); errno != 0 {
		return nil, errno
	}
	if len(h.ready) == 0 {
		return nil, 0
	}
	de := h.ready[0]
	h.ready = h.ready[1:]
	h.last = de
	h.idx++
	if !h.seenFull {
		if len(h.seen) < maxSeen {
			h.seen = append(h.seen, de)
		} else {
			h.seen, h.seenFull = nil, true
		}
	}
	mode := uint32(fuse.S_IFREG)
	if de.kind == kindDir {
		mode = fuse.S_IFDIR
	}
	return &fuse.DirEntry{Name: de.name, Mode: mode, Off: h.idx}, 0
}

// Lookup answers READDIRPLUS for the entry just returned from the listing.
func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	h.mu.Lock()
	last := h.last
	h.mu.Unlock()
	if last.name != name {
		return h.d.Lookup(ctx, name, out)
	}
	info := last.info
	if last.kind == kindFile {
		if e := h.d.ws.v.copyOf(ctx, h.l.bucket, h.prefix+name); e != nil {
			e.mu.Lock()
			if (e.opens > 0 || e.dirty) && !e.deleted {
				info.Size, info.Mtime, info.Mode = e.size, e.mtime, e.mode
			}
			e.mu.Unlock()
		}
	}
	return h.d.child(ctx, name, last.kind, info, h.l.readOnly, out), 0
}

// Seekdir restarts the listing and skips to entry off.
func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if off == h.idx {
		return 0
	}
	if off < h.idx && h.ch != nil && !h.seenFull && int(h.idx) == len(h.seen) {
		replay := append([]dirent(nil), h.seen[off:]...)
		h.ready = append(replay, h.ready...)
		h.seen = h.seen[:off]
		h.idx = off
		return 0
	}
	if off < h.idx || h.ch == nil {
		h.startLocked()
	}
	for h.idx < off {
		if errno := h.fillLocked(ctx); errno != 0 {
			return errno
		}
		if len(h.ready) == 0 {
			return 0
		}
		if !h.seenFull {
			if len(h.seen) < maxSeen {
				h.seen = append(h.seen, h.ready[0])
			} else {
				h.seen, h.seenFull = nil, true
			}
		}
		h.ready = h.ready[1:]
		h.idx++
	}
	return 0
}

// Releasedir stops the listing.
func (h *dirHandle) Releasedir(ctx context.Context, releaseFlags uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cancel != nil {
		h.cancel()
	}
}
