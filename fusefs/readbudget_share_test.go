package fusefs

import "testing"

// TestReadShare checks the fair share: a reader alone may take the whole
// budget; each reader that joins shrinks every share (at least one cell);
// nobody takes more than the budget has left; cells given back can be
// taken again, and a reader that leaves stops counting.
func TestReadShare(t *testing.T) {
	b := newReadBudget(16*readChunk + readChunk/2) // rounded down: 16 cells
	a, c, d := &readShare{b: b}, &readShare{b: b}, &readShare{b: b}
	steps := []struct {
		name string
		do   func() int64
		want int64
	}{
		{"alone takes its whole share", func() int64 { a.join(); return a.take(20) }, 16},
		{"a second reader finds the budget spent", func() int64 { c.join(); return c.take(4) }, 0},
		{"the first is over its share of 8", func() int64 { return a.take(1) }, 0},
		{"cells given back go to the second", func() int64 { a.give(10); return c.take(20) }, 8},
		{"the first may refill up to its share", func() int64 { return a.take(20) }, 2},
		{"a third reader: shares of 5", func() int64 { d.join(); c.give(8); return d.take(20) }, 5},
		{"the second gets what is left", func() int64 { return c.take(20) }, 3},
		{"the first (8 held) may not take", func() int64 { return a.take(1) }, 0},
		{"leaving readers grow the shares", func() int64 { a.leave(); a.give(8); c.leave(); c.give(3); return d.take(20) }, 11},
	}
	for _, s := range steps {
		if got := s.do(); got != s.want {
			t.Fatalf("%s: got %d cells, want %d", s.name, got, s.want)
		}
		if st := b.stats(); st.Reserved > st.Budget {
			t.Fatalf("%s: reserved %d bytes, over the budget of %d", s.name, st.Reserved, st.Budget)
		}
	}
	if st := b.stats(); st.Budget != 16*readChunk || st.Reserved != 16*readChunk || st.PeakReserved != 16*readChunk || st.Readers != 1 {
		t.Errorf("stats: got %+v, want a budget of 16 cells, all reserved, peak 16, one reader", st)
	}
}

// TestReadShareMinimum checks that with more readers than cells each
// share is one cell, and the budget still bounds the total.
func TestReadShareMinimum(t *testing.T) {
	b := newReadBudget(4 * readChunk)
	got := int64(0)
	for range 10 {
		s := &readShare{b: b}
		s.join()
		got += s.take(3)
	}
	if got != 4 {
		t.Errorf("10 readers on 4 cells: got %d cells taken, want 4", got)
	}
}

// TestReadBufs checks the cell buffers: given back, a buffer is reused;
// once nothing is reserved the trim is armed, and it unmaps the free
// buffers.
func TestReadBufs(t *testing.T) {
	b := newReadBudget(4 * readChunk)
	defer b.close()
	s := &readShare{b: b}
	s.join()
	if got := s.take(2); got != 2 {
		t.Fatalf("take(2): got %d", got)
	}
	c1, c2 := b.getBuf(), b.getBuf()
	if len(c1.b) != readChunk || len(c2.b) != readChunk {
		t.Fatalf("buffers of %d and %d bytes, want %d", len(c1.b), len(c2.b), readChunk)
	}
	c1.b[0], c1.b[readChunk-1] = 1, 2 // writable from end to end
	b.putBuf(c1)
	if c3 := b.getBuf(); c3 != c1 {
		t.Errorf("getBuf after putBuf: got a new buffer, want the one given back")
	}
	b.putBuf(c1)
	b.putBuf(c2)
	if st := b.stats(); st.InUse != 0 || st.PeakInUse != 2*readChunk {
		t.Errorf("stats: got %+v, want nothing in use, a peak of 2 cells", st)
	}
	s.give(2)
	b.mu.Lock()
	armed, free := b.trim != nil, len(b.free)
	b.mu.Unlock()
	if !armed || free != 2 {
		t.Fatalf("after the last reservation went: got trim armed %v and %d free buffers, want armed and 2", armed, free)
	}
	b.trimFree()
	if len(b.free) != 0 {
		t.Errorf("after the trim: got %d free buffers, want 0", len(b.free))
	}
}
