package sftpd

import (
	"cmp"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Write combining. SFTP clients upload in requests of 32 KiB (OpenSSH,
// pkg/sftp, WinSCP) sent many at a time, which the request server runs on
// parallel workers, so they reach the file slightly out of order. Written
// one by one to the mount, each is a FUSE request and the parallel ones
// fight over the inode lock: the daemon spent four times the CPU of the
// same upload written in 1 MiB blocks. A combiner gathers a handle's
// writes in aligned 1 MiB windows and writes a window with one pwrite as
// soon as it is complete; what is left is written when the handle is read,
// closed, or anything else in the session looks at a file. The windows
// held are bounded per session and per user (Config.GatherPerSession,
// GatherPerUser) and for the server (combineBudgetSize, Server.windows): a
// write that finds its budget spent goes straight to the file.
const (
	combineWindow     = 1 << 20 // bytes per window, aligned on its size
	combinePerHandle  = 3       // windows a handle may hold
	combineMaxSpans   = 64      // pieces in one window before it is written out
	combineBudgetSize = 24      // windows for the whole server (24 MiB)
)

// windowPool is a server's set of window buffers: a handle that finds
// none free writes through, so memory stays bounded whatever the number of
// uploads. A nil *windowPool allocates a buffer for every window, with no
// bound of its own (tests that look at one combiner).
type windowPool struct {
	size int // buffers it may hand out at once

	// mu guards free and inUse.
	mu    sync.Mutex
	free  [][]byte // buffers returned, for reuse
	inUse int      // buffers handed out and not returned
}

// get returns a window buffer, or nil when the budget is spent.
func (b *windowPool) get() []byte {
	if b == nil {
		return make([]byte, combineWindow)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inUse >= b.size {
		return nil
	}
	b.inUse++
	if n := len(b.free); n > 0 {
		buf := b.free[n-1]
		b.free = b.free[:n-1]
		return buf
	}
	return make([]byte, combineWindow)
}

// put returns a buffer of get.
func (b *windowPool) put(buf []byte) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inUse--
	b.free = append(b.free, buf)
}

// span is a written range of a window, [start, end) relative to it.
type span struct{ start, end int }

// window is an aligned block of a file being gathered.
type window struct {
	off    int64 // file offset of buf[0], a multiple of combineWindow
	buf    []byte
	spans  []span // disjoint, sorted, not adjacent
	filled int    // bytes covered by spans
}

// add records that [start, end) was written, merging with its neighbours.
func (w *window) add(start, end int) {
	i := 0
	for i < len(w.spans) && w.spans[i].end < start {
		i++
	}
	j := i
	for j < len(w.spans) && w.spans[j].start <= end {
		start = min(start, w.spans[j].start)
		end = max(end, w.spans[j].end)
		j++
	}
	w.spans = slices.Replace(w.spans, i, j, span{start, end})
	w.filled = 0
	for _, s := range w.spans {
		w.filled += s.end - s.start
	}
}

// writerAt is where a combiner's data goes (the open file).
type writerAt interface {
	WriteAt(p []byte, off int64) (int, error)
}

// combiner gathers the writes of one handle. Its methods are safe for
// concurrent use; writes are serialised, which is what the mount wants.
type combiner struct {
	dst     writerAt
	pending *pendingWrites // the session's set, told when windows come and go

	// mu guards wins and err, and is held across the writes to dst, so
	// that a handle sends one write at a time.
	mu   sync.Mutex
	wins []*window // sorted by offset, at most combinePerHandle
	err  error     // first failed write to dst, returned from then on

	lastWrite atomic.Int64 // unix nanoseconds of the last write
}

// write stores p at off, writing complete windows to dst. An error is
// that of an earlier or current write to dst.
func (c *combiner) write(p []byte, off int64) error {
	c.lastWrite.Store(time.Now().UnixNano())
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if len(p) >= combineWindow {
		return c.writeThrough(p, off)
	}
	for len(p) > 0 {
		wOff := off &^ (combineWindow - 1)
		n := min(len(p), int(wOff+combineWindow-off))
		if err := c.writeInWindow(p[:n], off, wOff); err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// writeInWindow stores p, which lies in the window at wOff.
func (c *combiner) writeInWindow(p []byte, off, wOff int64) error {
	w := c.find(wOff)
	if w == nil {
		if len(c.wins) >= combinePerHandle {
			if err := c.flushWindow(c.wins[0]); err != nil {
				return err
			}
		}
		// Over the session's, the user's or the server's budget, the
		// handle reuses its oldest window (combine_recycle.go) or the
		// write goes straight to the file: memory never grows past them.
		var buf []byte
		if c.pending.take() {
			if buf = c.pending.bufs.get(); buf == nil {
				c.pending.give()
			}
		}
		if buf != nil {
			w = &window{off: wOff, buf: buf}
			c.wins = append(c.wins, w)
			slices.SortFunc(c.wins, func(a, b *window) int { return cmp.Compare(a.off, b.off) })
		} else if rw, ok, err := c.recycle(wOff); err != nil {
			return err
		} else if ok {
			w = rw
		} else {
			return c.writeAt(p, off)
		}
	}
	start := int(off - wOff)
	copy(w.buf[start:], p)
	w.add(start, start+len(p))
	if w.filled == combineWindow || len(w.spans) > combineMaxSpans {
		return c.flushWindow(w)
	}
	return nil
}

// writeThrough writes p to dst after the windows it overlaps, so that
// the later bytes win.
func (c *combiner) writeThrough(p []byte, off int64) error {
	for _, w := range slices.Clone(c.wins) {
		if w.off < off+int64(len(p)) && off < w.off+combineWindow {
			if err := c.flushWindow(w); err != nil {
				return err
			}
		}
	}
	return c.writeAt(p, off)
}

func (c *combiner) find(wOff int64) *window {
	for _, w := range c.wins {
		if w.off == wOff {
			return w
		}
	}
	return nil
}

// writeSpans writes w's spans to dst, up to the first error.
func (c *combiner) writeSpans(w *window) error {
	for _, s := range w.spans {
		if err := c.writeAt(w.buf[s.start:s.end], w.off+int64(s.start)); err != nil {
			return err
		}
	}
	return nil
}

// flushWindow writes w's spans to dst and drops it.
func (c *combiner) flushWindow(w *window) error {
	err := c.writeSpans(w)
	c.wins = slices.DeleteFunc(c.wins, func(x *window) bool { return x == w })
	c.pending.bufs.put(w.buf)
	c.pending.give()
	return err
}

// flush writes every window out and returns the combiner's error.
func (c *combiner) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.wins) > 0 && c.err == nil {
		c.flushWindow(c.wins[0])
	}
	// After an error the rest is dropped: the handle reports it and the
	// file is never published (see file.Close).
	for _, w := range c.wins {
		c.pending.bufs.put(w.buf)
		c.pending.give()
	}
	c.wins = nil
	return c.err
}

// writeAt writes p at off on dst (os.File.WriteAt writes it all or
// fails) and keeps the first error.
func (c *combiner) writeAt(p []byte, off int64) error {
	_, err := c.dst.WriteAt(p, off)
	if err != nil && c.err == nil {
		c.err = err
	}
	return err
}

// pendingWrites is the set of a session's combiners. Everything in the
// session that looks at files (open, stat, setstat, rename, remove,
// listing, reads) flushes it first, so that the client sees what it
// wrote; the counter makes that free when nothing is held.
type pendingWrites struct {
	windows atomic.Int64 // windows held by the session's combiners
	// limits bounds windows; nil: only the server's budget applies.
	limits *gatherLimits
	// bufs holds the windows' buffers: the server's, shared by its sessions.
	bufs *windowPool

	// mu guards combiners; it is never held while a combiner's is.
	mu        sync.Mutex
	combiners map[*combiner]struct{}
}

// gatherLimits bounds the windows of one session and of all the sessions
// of its user.
type gatherLimits struct {
	session   int64         // windows the session may hold
	user      *atomic.Int64 // windows held by the user's sessions
	userLimit int64         // windows they may hold together
}

// take counts one more window for the session, or reports false (and
// counts nothing) when the session or its user holds its limit. The
// counts never go past the limits, not even for a moment.
func (pw *pendingWrites) take() bool {
	l := pw.limits
	if l == nil {
		pw.windows.Add(1)
		return true
	}
	if !addBelow(&pw.windows, l.session) {
		return false
	}
	if !addBelow(l.user, l.userLimit) {
		pw.windows.Add(-1)
		return false
	}
	return true
}

// addBelow adds one to n unless that would take it past limit.
func addBelow(n *atomic.Int64, limit int64) bool {
	for {
		v := n.Load()
		if v >= limit {
			return false
		}
		if n.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// give uncounts a window of take.
func (pw *pendingWrites) give() {
	pw.windows.Add(-1)
	if l := pw.limits; l != nil {
		l.user.Add(-1)
	}
}

// register adds c to the set.
func (pw *pendingWrites) register(c *combiner) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.combiners == nil {
		pw.combiners = make(map[*combiner]struct{})
	}
	pw.combiners[c] = struct{}{}
}

// unregister removes c from the set.
func (pw *pendingWrites) unregister(c *combiner) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	delete(pw.combiners, c)
}

// flush writes out what every combiner of the session holds. Errors stay
// with their handle, which returns them to its client.
func (pw *pendingWrites) flush() {
	if pw.windows.Load() == 0 {
		return
	}
	pw.mu.Lock()
	cs := slices.Collect(maps.Keys(pw.combiners))
	pw.mu.Unlock()
	for _, c := range cs {
		c.flush()
	}
}
