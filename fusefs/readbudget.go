package fusefs

import (
	"sync"
	"sync/atomic"
	"time"
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
type readBudget struct {
	total int64 // cells

	// bufs recycles the cells' buffers (all readChunk bytes).
	bufs sync.Pool
	// live counts the buffers taken from bufs and not given back yet;
	// peak is the most there ever were at once. They measure the memory
	// itself, apart from the reservations.
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
}

// newReadBudget returns a budget of bytes (rounded down to whole cells).
func newReadBudget(bytes int64) *readBudget {
	b := &readBudget{total: bytes / readChunk}
	b.bufs.New = func() any { p := make([]byte, readChunk); return &p }
	return b
}

// getBuf takes a cell buffer.
func (b *readBudget) getBuf() *[]byte {
	n := b.live.Add(1)
	for {
		p := b.peak.Load()
		if n <= p || b.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return b.bufs.Get().(*[]byte)
}

// putBuf gives a cell buffer back.
func (b *readBudget) putBuf(p *[]byte) {
	b.live.Add(-1)
	b.bufs.Put(p)
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
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.used -= n
	s.held -= n
}
