package fusefs

import (
	"slices"
	"testing"
)

// TestFill: the contiguous prefix grows only over written bytes, never past
// a hole; a cut forgets what lies beyond; pieces merge.
func TestFill(t *testing.T) {
	var f fill
	f.add(10, 20) // a hole at [0, 10)
	if f.prefix != 0 || !slices.Equal(f.pieces, []extent{{10, 20}}) {
		t.Fatalf("after [10,20): got prefix %d pieces %v, want 0 [{10 20}]", f.prefix, f.pieces)
	}
	f.add(30, 40)
	f.add(19, 31) // joins both pieces
	if !slices.Equal(f.pieces, []extent{{10, 40}}) {
		t.Fatalf("after [19,31): got pieces %v, want [{10 40}]", f.pieces)
	}
	f.add(0, 10) // fills the hole: all of it is the prefix
	if f.prefix != 40 || f.pieces != nil {
		t.Fatalf("after [0,10): got prefix %d pieces %v, want 40 none", f.prefix, f.pieces)
	}
	f.add(50, 60)
	f.cut(55)
	if f.prefix != 40 || !slices.Equal(f.pieces, []extent{{50, 55}}) {
		t.Fatalf("after cut(55): got prefix %d pieces %v, want 40 [{50 55}]", f.prefix, f.pieces)
	}
	f.cut(30)
	if f.prefix != 30 || f.pieces != nil {
		t.Fatalf("after cut(30): got prefix %d pieces %v, want 30 none", f.prefix, f.pieces)
	}
	f.reset(7)
	if f.prefix != 7 || f.pieces != nil {
		t.Fatalf("after reset(7): got prefix %d pieces %v", f.prefix, f.pieces)
	}
	// Past maxFillPieces the farthest are forgotten: the prefix can only
	// come out shorter.
	var g fill
	for i := range maxFillPieces + 10 {
		g.add(int64(2*i+1), int64(2*i+2))
	}
	if len(g.pieces) != maxFillPieces || g.pieces[0] != (extent{1, 2}) {
		t.Fatalf("got %d pieces starting %v, want %d starting {1 2}", len(g.pieces), g.pieces[0], maxFillPieces)
	}
}
