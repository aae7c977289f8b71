package fusefs_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/fusefs"
)

// TestReadAheadBudget reads one object through the mount with O_DIRECT
// (every read reaches the FUSE server, none is answered from the page
// cache) under a 64 MiB read-ahead budget: one handle alone gets its full
// window; 200 handles each reading a little never take more than the
// budget (sampled all along, and the peaks the budget records: reserved
// cells and the buffers themselves), every read returns the object's
// bytes, and the memory comes back when the handles close or go idle.
func TestReadAheadBudget(t *testing.T) {
	o := testOptions(t)
	o.ReadAheadBudget = 64 << 20
	w := mountWorkspace(t, o)
	data := pattern(21, 40<<20+7)
	putObject(t, w.bucket, w.key("big.bin"), data)
	path := filepath.Join(w.dir, "big.bin")
	stats := func() fusefs.ReadAheadStats { return w.g.m.Counters().ReadAhead }
	if got := stats().Budget; got != o.ReadAheadBudget {
		t.Fatalf("budget: got %d, want %d", got, o.ReadAheadBudget)
	}
	released := func() error {
		if st := stats(); st.Reserved != 0 || st.InUse != 0 || st.Readers != 0 {
			return fmt.Errorf("read-ahead after the handles closed: got %+v, want nothing reserved, in use or reading", st)
		}
		return nil
	}

	t.Run("alone", func(t *testing.T) {
		f := openDirect(t, path)
		readDirect(t, f, data, 0, len(data), 1<<20)
		f.Close()
		st := stats()
		// Concurrency 4: a window of 4 × 8 MiB ahead, 16 cells.
		if st.PeakReserved < 32<<20 || st.Fallbacks != 0 {
			t.Errorf("one handle alone: got peak %d MiB reserved and %d fallbacks, want at least 32 MiB and none", st.PeakReserved>>20, st.Fallbacks)
		}
		if err := eventually(10*time.Second, released); err != nil {
			t.Error(err)
		}
	})

	t.Run("200 handles", func(t *testing.T) {
		const handles, workers, reads, size = 200, 20, 3, 256 << 10
		fs := make([]*os.File, handles)
		for i := range fs {
			fs[i] = openDirect(t, path)
		}
		stop := make(chan struct{})
		var over []fusefs.ReadAheadStats
		var sampler sync.WaitGroup
		sampler.Add(1)
		go func() {
			defer sampler.Done()
			for {
				if st := stats(); st.Reserved > st.Budget || st.InUse > st.Budget {
					over = append(over, st)
				}
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
		// Round by round, so that every handle has read (and may hold
		// cells) while the others read.
		errs := make(chan error, handles)
		for round := range reads {
			var wg sync.WaitGroup
			for wk := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := wk; i < handles; i += workers {
						off := round * size
						if err := checkRead(fs[i], data, off, size); err != nil {
							errs <- fmt.Errorf("handle %d: %w", i, err)
							return
						}
					}
				}()
			}
			wg.Wait()
		}
		close(stop)
		sampler.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		st := stats()
		t.Logf("after %d handles × %d reads: %+v", handles, reads, st)
		if len(over) > 0 {
			t.Errorf("budget exceeded %d times, first: %+v", len(over), over[0])
		}
		if st.PeakReserved > st.Budget || st.PeakInUse > st.Budget {
			t.Errorf("peaks: got %d MiB reserved and %d MiB of buffers, want at most the budget, %d MiB", st.PeakReserved>>20, st.PeakInUse>>20, st.Budget>>20)
		}
		if st.Fallbacks == 0 {
			t.Errorf("fallbacks: got none, want some (200 handles on a budget of 32 cells)")
		}
		for _, f := range fs {
			f.Close()
		}
		if err := eventually(10*time.Second, released); err != nil {
			t.Error(err)
		}
	})

	t.Run("idle", func(t *testing.T) {
		f := openDirect(t, path)
		defer f.Close()
		readDirect(t, f, data, 0, 4<<20, 1<<20)
		if st := stats(); st.Reserved == 0 || st.Readers != 1 {
			t.Fatalf("while reading: got %+v, want cells reserved by one reader", st)
		}
		// Idle for 3 s: the cells go back while the handle stays open.
		if err := eventually(10*time.Second, released); err != nil {
			t.Fatal(err)
		}
		readDirect(t, f, data, 4<<20, 4<<20, 1<<20) // the read goes on
	})
}

// openDirect opens path with O_DIRECT: reads bypass the page cache.
func openDirect(tb testing.TB, path string) *os.File {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		tb.Fatalf("open %s with O_DIRECT: %v", path, err)
	}
	return f
}

// readDirect reads n bytes of f from off on, bufSize at a time, and checks
// them against data.
func readDirect(tb testing.TB, f *os.File, data []byte, off, n, bufSize int) {
	tb.Helper()
	for at := off; at < off+n; at += bufSize {
		if err := checkRead(f, data, at, min(bufSize, off+n-at)); err != nil {
			tb.Fatal(err)
		}
	}
}

// checkRead reads n bytes at off from f and compares them with data.
func checkRead(f *os.File, data []byte, off, n int) error {
	p := make([]byte, n)
	got, err := f.ReadAt(p, int64(off))
	want := data[off:min(off+n, len(data))]
	if (err != nil && got != len(want)) || !bytes.Equal(p[:got], want) {
		return fmt.Errorf("ReadAt(%d bytes at %d): got %d bytes not matching the object, %v; want %d", n, off, got, err, len(want))
	}
	return nil
}
