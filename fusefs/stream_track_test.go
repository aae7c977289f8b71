package fusefs

import (
	"context"
	"log/slog"
	"testing"
)

// TestTrackWrite follows the gap-free prefix of a writer through writes
// in order, slightly out of order and scattered.
func TestTrackWrite(t *testing.T) {
	tests := []struct {
		name      string
		writes    []extent
		seq       int64
		aheadLeft int
	}{
		{name: "in order", writes: []extent{{0, 10}, {10, 20}, {20, 25}}, seq: 25},
		{name: "rewrite inside", writes: []extent{{0, 10}, {5, 8}, {10, 12}}, seq: 12},
		{name: "swapped", writes: []extent{{10, 20}, {0, 10}, {20, 30}}, seq: 30},
		{name: "gap kept", writes: []extent{{0, 10}, {20, 30}, {30, 40}}, seq: 10, aheadLeft: 1},
		{name: "gap filled", writes: []extent{{0, 10}, {30, 40}, {20, 30}, {10, 20}}, seq: 40},
		{name: "two halves", writes: []extent{{0, 10}, {1000, 1010}, {10, 20}, {1010, 1020}, {20, 30}}, seq: 30, aheadLeft: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &cache{ob: &objects{partSize: 1 << 40}, log: slog.New(slog.DiscardHandler), bg: context.Background()}
			e := &entry{c: c, complete: true}
			for _, w := range tt.writes {
				e.trackWriteLocked(w.off, w.end)
			}
			if e.seq != tt.seq || len(e.ahead) != tt.aheadLeft {
				t.Errorf("got seq %d and %d pieces ahead (%v), want %d and %d", e.seq, len(e.ahead), e.ahead, tt.seq, tt.aheadLeft)
			}
		})
	}
	t.Run("scattered", func(t *testing.T) {
		c := &cache{ob: &objects{partSize: 1 << 40}, log: slog.New(slog.DiscardHandler), bg: context.Background()}
		e := &entry{c: c, complete: true}
		for i := range maxAhead + 1 {
			off := int64(100 + 20*(maxAhead-i))
			e.trackWriteLocked(off, off+10)
		}
		if e.seq != -1 {
			t.Errorf("after %d scattered writes: got seq %d, want -1", maxAhead+1, e.seq)
		}
	})
}
