package fusefs

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// readIdle is how long a read handle may go without reading before its
// read-ahead cells go back to the budget.
const readIdle = 3 * time.Second

// readBudget is the process-wide memory of the read-ahead: every cell of
// every read handle is reserved from it before its GET starts and given
// back when its buffer is. It is shared fairly: each reader reading
// sequentially may hold at most total/readers cells (at least one), so a
// reader's share shrinks as more handles read. A reader that gets nothing
// reads only what was asked, straight from the store: a read never fails
// or waits for lack of budget.
//
// The cells' buffers are mapped outside the Go heap and kept for reuse
// while the budget is in use: the process's memory is then the budget,
// not twice it as the garbage collector would let a heap of buffers grow.
// They are unmapped once nothing has been reserved for readIdle.
type readBudget struct {
	total int64 // cells

	// live counts the buffers handed out and not given back yet; peak is
	// the most there ever were at once. They measure the memory itself,
	// apart from the reservations.
	live, peak atomic.Int64
	// fallbacks counts the reads answered straight from the store for
	// lack of budget.
	fallbacks atomic.Int64

	// mu guards the fields below; it is taken under a reader's mu, never
	// the other way round.
	mu      sync.Mutex
	used    int64 // cells reserved now
	peakUse int64 // most cells ever reserved at once
	readers int64 // readers reading sequentially (joined)
	// free holds the buffers given back, for reuse; there are never more
	// buffers (free and handed out) than cells reserved at the peak.
	free []*cellBuf
	// trim, armed when the last reservation goes, unmaps the free
	// buffers after readIdle unless cells were reserved meanwhile.
	trim *time.Timer
}

// cellBuf is the buffer of one cell, readChunk bytes.
type cellBuf struct {
	b []byte
	// mapped is set for memory from mmap (unmapped by the trim), unset
	// for the Go heap (used only when mmap fails).
	mapped bool
}

// newReadBudget returns a budget of bytes (rounded down to whole cells).
func newReadBudget(bytes int64) *readBudget {
	return &readBudget{total: bytes / readChunk}
}

// getBuf takes a cell buffer: a free one, or a new mapping.
func (b *readBudget) getBuf() *cellBuf {
	n := b.live.Add(1)
	for {
		p := b.peak.Load()
		if n <= p || b.peak.CompareAndSwap(p, n) {
			break
		}
	}
	b.mu.Lock()
	if k := len(b.free); k > 0 {
		c := b.free[k-1]
		b.free[k-1] = nil
		b.free = b.free[:k-1]
		b.mu.Unlock()
		return c
	}
	b.mu.Unlock()
	m, err := unix.Mmap(-1, 0, readChunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return &cellBuf{b: make([]byte, readChunk)}
	}
	return &cellBuf{b: m, mapped: true}
}

// putBuf gives a cell buffer back, once nothing refers to its bytes.
func (b *readBudget) putBuf(c *cellBuf) {
	b.live.Add(-1)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free = append(b.free, c)
}

// trimFree unmaps the free buffers if nothing was reserved since the
// trim was armed.
func (b *readBudget) trimFree() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.trim = nil
	if b.used == 0 {
		b.releaseFreeLocked()
	}
}

// releaseFreeLocked unmaps the free buffers; b.mu held.
func (b *readBudget) releaseFreeLocked() {
	for _, c := range b.free {
		if c.mapped {
			unix.Munmap(c.b)
		}
	}
	b.free = nil
}

// close stops the trim and unmaps the free buffers; buffers still handed
// out are not touched.
func (b *readBudget) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.trim != nil {
		b.trim.Stop()
		b.trim = nil
	}
	b.releaseFreeLocked()
}

// ReadAheadStats describe the read-ahead budget.
type ReadAheadStats struct {
	// Budget is the most bytes the read-ahead may hold (ReadAheadBudget
	// rounded down to whole 2 MiB cells).
	Budget int64
	// Reserved is the bytes reserved now, PeakReserved the most ever
	// reserved at once; InUse is the bytes of the buffers held now, and
	// PeakInUse the most ever held at once.
	Reserved, PeakReserved, InUse, PeakInUse int64
	// Readers counts the read handles reading sequentially now.
	Readers int64
	// Fallbacks counts the reads answered straight from the store, with
	// no read-ahead, for lack of budget.
	Fallbacks int64
}

// stats returns the budget's figures.
func (b *readBudget) stats() ReadAheadStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return ReadAheadStats{
		Budget:       b.total * readChunk,
		Reserved:     b.used * readChunk,
		PeakReserved: b.peakUse * readChunk,
		InUse:        b.live.Load() * readChunk,
		PeakInUse:    b.peak.Load() * readChunk,
		Readers:      b.readers,
		Fallbacks:    b.fallbacks.Load(),
	}
}

// readShare is one reader's account in the budget.
type readShare struct {
	b *readBudget

	// held and joined are guarded by b.mu. held counts the cells
	// reserved; joined is set while the reader counts among b.readers.
	held   int64
	joined bool
}

// join counts s among the readers sharing the budget, once.
func (s *readShare) join() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if !s.joined {
		s.joined = true
		s.b.readers++
	}
}

// leave stops counting s among the readers; the cells it still holds
// come back as their buffers do.
func (s *readShare) leave() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if s.joined {
		s.joined = false
		s.b.readers--
	}
}

// shareLocked returns how many cells one reader may hold; b.mu held.
func (b *readBudget) shareLocked() int64 {
	return max(1, b.total/max(1, b.readers))
}

// take reserves up to n cells for s and returns how many it got: no more
// than the budget has left, nor than s's fair share less what s holds.
func (s *readShare) take(n int64) int64 {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	n = min(n, b.total-b.used, b.shareLocked()-s.held)
	if n <= 0 {
		return 0
	}
	b.used += n
	b.peakUse = max(b.peakUse, b.used)
	s.held += n
	return n
}

// give returns n cells reserved by s.
func (s *readShare) give(n int64) {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	s.held -= n
	if b.used == 0 && len(b.free) > 0 && b.trim == nil {
		b.trim = time.AfterFunc(readIdle, b.trimFree)
	}
}
