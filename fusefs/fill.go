package fusefs

import "slices"

// maxFillPieces bounds the pieces a fill keeps beyond its prefix. Past it
// the farthest pieces are forgotten: the prefix can only come out shorter
// than it could be, so a resume sends more, never less.
const maxFillPieces = 4096

// fill tracks which bytes of a local copy hold the file's content: the
// contiguous prefix [0, prefix) and the pieces written beyond it, sorted,
// disjoint and not touching. A resume after an interruption continues from
// prefix, so nothing past a hole is ever kept.
type fill struct {
	prefix int64
	pieces []extent
}

// reset says the copy holds the content of [0, size) and nothing else.
func (f *fill) reset(size int64) {
	f.prefix, f.pieces = size, nil
}

// add records that [off, end) now holds content.
func (f *fill) add(off, end int64) {
	if end <= off || end <= f.prefix {
		return
	}
	if off <= f.prefix {
		f.prefix = end
	} else {
		f.pieces = insertExtent(f.pieces, off, end)
		if len(f.pieces) > maxFillPieces {
			f.pieces = f.pieces[:maxFillPieces]
		}
	}
	for len(f.pieces) > 0 && f.pieces[0].off <= f.prefix {
		f.prefix = max(f.prefix, f.pieces[0].end)
		f.pieces = f.pieces[1:]
	}
	if len(f.pieces) == 0 {
		f.pieces = nil
	}
}

// cut forgets everything at or beyond size.
func (f *fill) cut(size int64) {
	f.prefix = min(f.prefix, size)
	for i, p := range f.pieces {
		if p.off >= size {
			f.pieces = f.pieces[:i]
			break
		}
		if p.end > size {
			f.pieces[i].end = size
		}
	}
	if len(f.pieces) == 0 {
		f.pieces = nil
	}
}

// insertExtent adds [off, end) to xs (sorted, disjoint, not touching),
// merging it with the neighbours it touches, and returns the new slice.
func insertExtent(xs []extent, off, end int64) []extent {
	i, _ := slices.BinarySearchFunc(xs, off, func(x extent, o int64) int {
		switch {
		case x.off < o:
			return -1
		case x.off > o:
			return 1
		}
		return 0
	})
	xs = slices.Insert(xs, i, extent{off, end})
	if i > 0 && xs[i-1].end >= off {
		xs[i-1].end = max(xs[i-1].end, end)
		xs = slices.Delete(xs, i, i+1)
		i--
	}
	for i+1 < len(xs) && xs[i+1].off <= xs[i].end {
		xs[i].end = max(xs[i].end, xs[i+1].end)
		xs = slices.Delete(xs, i+1, i+2)
	}
	return xs
}
