package sftpd

import (
	"cmp"
	"slices"
)

// Gathering when the budget is spent. With 20 sessions uploading at once
// the server's windows (combineBudgetSize) give each handle about one.
// Writes arrive slightly out of order, so a handle's window is rarely
// complete when the first pieces of the next one come: they found no
// window and were written through, leaving holes in the next window's
// range, so it never filled either; the handle then wrote everything
// through in 32 KiB pieces (one FUSE request each, each fighting over the
// inode lock), and the daemon spent about a third more CPU per byte than
// for a single upload. Now such a handle writes out its oldest window and
// gathers the new one in its buffer: a handle holding windows keeps
// gathering whatever the budget, and a window goes out with at most the
// few late pieces missing (they are written through).

// recycle writes out the handle's oldest window and makes its buffer the
// window at wOff, when wOff is beyond every window the handle holds (a
// late piece, behind them, is better written through than made to push
// out a newer window). It reports false, having done nothing, otherwise.
// The buffer stays counted for the session, its user and the server.
func (c *combiner) recycle(wOff int64) (*window, bool, error) {
	if len(c.wins) == 0 || wOff < c.wins[len(c.wins)-1].off {
		return nil, false, nil
	}
	w := c.wins[0]
	if err := c.writeSpans(w); err != nil {
		// The handle reports it and the file is never published; the
		// window stays held, for flush to give back.
		return nil, true, err
	}
	w.off, w.spans, w.filled = wOff, w.spans[:0], 0
	slices.SortFunc(c.wins, func(a, b *window) int { return cmp.Compare(a.off, b.off) })
	return w, true, nil
}
