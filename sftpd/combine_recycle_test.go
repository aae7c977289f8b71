package sftpd

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// With one window for the handle (the server's budget shared by many
// uploads), pieces arriving slightly out of order across window
// boundaries still reach the file mostly gathered: the handle reuses its
// window rather than writing every later piece through, the bytes are
// those written, and the buffer goes back to the pool at flush.
func TestCombinerRecyclesWhenBudgetSpent(t *testing.T) {
	const size, chunk, group = 8 * combineWindow, 32 << 10, 8
	want := make([]byte, size)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	// Piece order: groups of 8 pieces reversed, the groups shifted by
	// half a group so that every window boundary falls inside one (the
	// first pieces of a window come before the last of the previous).
	var order []int
	pieces := size / chunk
	order = append(order, 0, 1, 2, 3)
	for g := 4; g < pieces; g += group {
		end := min(g+group, pieces)
		for i := end - 1; i >= g; i-- {
			order = append(order, i)
		}
	}
	if len(order) != pieces || !slices.Equal(slices.Sorted(slices.Values(order)), seq(pieces)) {
		t.Fatalf("bad piece order %v", order)
	}

	pool := &windowPool{size: 1}
	dst := &recordingFile{}
	c, pw := newTestCombiner(dst)
	pw.bufs = pool
	for _, i := range order {
		off := i * chunk
		if err := c.write(want[off:off+chunk], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst.data, want) {
		t.Fatalf("file content differs from what was written at byte %d", firstDiff(dst.data, want))
	}
	// Each window goes out in one write but for the 4 late pieces of its
	// boundary group: 5 writes a window, against 32 written through.
	if max := 5*(size/combineWindow) + 1; len(dst.writes) > max {
		t.Errorf("%d writes reached the file for %d pieces, want at most %d", len(dst.writes), pieces, max)
	}
	pool.mu.Lock()
	inUse := pool.inUse
	pool.mu.Unlock()
	if inUse != 0 || pw.windows.Load() != 0 {
		t.Errorf("after flush: %d buffers in use, %d windows counted, want 0 and 0", inUse, pw.windows.Load())
	}
}

// A late piece, behind the windows a handle holds, is written through
// when the budget is spent: it never pushes a newer window out.
func TestCombinerLatePieceWritesThrough(t *testing.T) {
	pool := &windowPool{size: 1}
	dst := &recordingFile{}
	c, pw := newTestCombiner(dst)
	pw.bufs = pool
	piece := bytes.Repeat([]byte{7}, 4096)
	if err := c.write(piece, combineWindow); err != nil { // holds window 1
		t.Fatal(err)
	}
	if err := c.write(piece, 0); err != nil { // window 0: behind, through
		t.Fatal(err)
	}
	if len(dst.writes) != 1 || dst.writes[0] != len(piece) {
		t.Errorf("writes %v, want the late piece alone", dst.writes)
	}
	if len(c.wins) != 1 || c.wins[0].off != combineWindow {
		t.Errorf("windows held: %d, want window 1 alone", len(c.wins))
	}
	if err := c.flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst.data[combineWindow:], piece) || !bytes.Equal(dst.data[:len(piece)], piece) {
		t.Error("file content differs from what was written")
	}
}

// seq is 0, 1, …, n-1.
func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}
