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
		i, _ := slices.BinarySearchFunc(f.pieces, off, func(x extent, o int64) int {
			switch {
			case x.off < o:
				return -1
			case x.off > o:
				return 1
			}
			return 0
		})
		f.pieces = slices.Insert(f.pieces, i, extent{off, end})
		// Merge with the neighbours it touches.
		if i > 0 && f.pieces[i-1].end >= off {
			f.pieces[i-1].end = max(f.pieces[i-1].end, end)
			f.pieces = slices.Delete(f.pieces, i, i+1)
			i--
		}
		for i+1 < len(f.pieces) && f.pieces[i+1].off <= f.pieces[i].end {
			f.pieces[i].end = max(f.pieces[i].end, f.pieces[i+1].end)
			f.pieces = slices.Delete(f.pieces, i+1, i+2)
		}
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
