package fusefs

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
)

// Every new local copy needs two new files in the cache, its data file and
// its journal. Creating a file (a new inode) is what a small file's create
// and first write cost most: 0.77 ms of CPU and 4.6 ms of wall time on the
// ext4 of the CI machine, against 0.02 ms for a rename (the profile of
// `sftp put -r` of 4 KiB files showed a quarter of its samples in ext4's
// inode allocator). A pool of spare files, empty, made ahead by a
// background goroutine, lets a new copy rename two of them into place
// instead; when it runs dry, the file is created as before, and the pool
// grows (sparesStart, doubling up to sparesMax).
//
// Spares are named <random>.spare in the cache directory (the start's
// recovery leaves those names alone); the pool forgets them at shutdown
// and the next start removes them before making its own.

const (
	// spareSuffix ends the name of a spare file.
	spareSuffix = ".spare"
	// sparesStart is how many spares the pool holds once a first copy
	// was made; each time a copy finds it empty, that doubles, up to
	// sparesMax. A gateway that makes few copies makes few spares.
	sparesStart = 8
	sparesMax   = 128
)

// spares is the pool of spare files of a cache. A nil *spares has none.
type spares struct {
	root *os.Root
	log  *slog.Logger
	// kick wakes the filler (run); buffered, never blocks.
	kick chan struct{}
	// failing: the filler's last try failed (logged once until one works).
	failing bool

	// mu guards names and want.
	mu sync.Mutex
	// names are the spares ready, in the cache directory.
	names []string
	// want is how many spares the filler keeps ready (0: none asked yet).
	want int
}

// newSpares returns an empty pool in root; run fills it.
func newSpares(root *os.Root, log *slog.Logger) *spares {
	return &spares{root: root, log: log, kick: make(chan struct{}, 1)}
}

// createFile opens a new file name in root, empty, with flag (O_RDWR, or
// O_WRONLY|O_APPEND): a spare renamed into place when there is one, else a
// file created (O_EXCL). A symlink is never followed.
func createFile(root *os.Root, sp *spares, name string, flag int) (*os.File, error) {
	if f := sp.take(name, flag); f != nil {
		return f, nil
	}
	return root.OpenFile(name, flag|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
}

// take renames a spare to name and opens it with flag; nil when the pool
// is empty or the spare is not an empty regular file any more (it is then
// removed).
func (sp *spares) take(name string, flag int) *os.File {
	if sp == nil {
		return nil
	}
	sp.mu.Lock()
	var s string
	if n := len(sp.names); n > 0 {
		s = sp.names[n-1]
		sp.names = sp.names[:n-1]
	} else {
		sp.want = min(max(2*sp.want, sparesStart), sparesMax)
	}
	low := len(sp.names) < sp.want
	sp.mu.Unlock()
	if low {
		select {
		case sp.kick <- struct{}{}:
		default:
		}
	}
	if s == "" {
		return nil
	}
	if err := sp.root.Rename(s, name); err != nil {
		sp.log.Warn("cannot use a spare file", "name", s, "err", err)
		sp.root.Remove(s)
		return nil
	}
	f, err := sp.root.OpenFile(name, flag|syscall.O_NOFOLLOW, 0)
	if err != nil {
		sp.root.Remove(name)
		return nil
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() || st.Size() != 0 {
		f.Close()
		sp.root.Remove(name)
		return nil
	}
	return f
}

// short reports whether the pool holds fewer spares than wanted.
func (sp *spares) short() bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return len(sp.names) < sp.want
}

// ready returns how many spares the pool holds.
func (sp *spares) ready() int {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return len(sp.names)
}

// run removes the spares an earlier run left, then keeps the pool filled
// (to want, once asked) until ctx is cancelled.
func (sp *spares) run(ctx context.Context) {
	if names, err := readDirNames(sp.root, "."); err == nil {
		for _, n := range names {
			if strings.HasSuffix(n, spareSuffix) {
				sp.root.Remove(n)
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-sp.kick:
		}
		sp.fill(ctx)
	}
}

// fill makes spares until the pool holds want or ctx is cancelled; it
// stops at the first failure (logged).
func (sp *spares) fill(ctx context.Context) {
	for ctx.Err() == nil && sp.short() {
		name := newID() + spareSuffix
		f, err := sp.root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			if !sp.failing {
				sp.log.Warn("cannot make a spare file; new local copies create theirs", "name", name, "err", err)
			}
			sp.failing = true
			return
		}
		sp.failing = false
		f.Close()
		sp.mu.Lock()
		sp.names = append(sp.names, name)
		sp.mu.Unlock()
	}
}

// spareFiller keeps the cache's pool of spare files filled until the
// manager's context is cancelled.
func (m *Manager) spareFiller() {
	defer m.wg.Done()
	m.cache.spares.run(m.ctx)
}
