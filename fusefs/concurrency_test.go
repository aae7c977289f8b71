package fusefs_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentUse is the guard of "one process serves the mount and uses
// it": many goroutines open, write and close different files while
// listings, reads and renames run beside them. It must finish (no
// self-deadlock), race-free, with everything in place at the end.
func TestConcurrentUse(t *testing.T) {
	const (
		writers  = 12
		files    = 8
		size     = 256 << 10
		renFiles = 5
		watchdog = 2 * time.Minute
	)
	w := mountWorkspace(t, testOptions(t))
	for g := range writers {
		if err := os.Mkdir(filepath.Join(w.dir, fmt.Sprintf("w%02d", g)), 0o755); err != nil {
			t.Fatalf("Mkdir: %v", err)
		}
	}
	if err := os.Mkdir(filepath.Join(w.dir, "ren0"), 0o755); err != nil {
		t.Fatalf("Mkdir: %v", err)
	}
	for i := range renFiles {
		if err := os.WriteFile(filepath.Join(w.dir, "ren0", fmt.Sprintf("r%d", i)), []byte{byte(i)}, 0o644); err != nil {
			t.Fatalf("WriteFile: %v", err)
		}
	}

	content := func(g, i int) []byte { return pattern(uint64(g*100+i), size) }
	var (
		writersLeft atomic.Int32
		stop        = make(chan struct{})
		wg          sync.WaitGroup
		errMu       sync.Mutex
		errs        []error
		renames     atomic.Int32
		listings    atomic.Int32
	)
	fail := func(err error) {
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
	}
	writersLeft.Store(writers)
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if writersLeft.Add(-1) == 0 {
					close(stop)
				}
			}()
			for i := range files {
				p := filepath.Join(w.dir, fmt.Sprintf("w%02d", g), fmt.Sprintf("f%d", i))
				f, err := os.Create(p)
				if err != nil {
					fail(err)
					return
				}
				data := content(g, i)
				for off := 0; off < size; off += 64 << 10 {
					if _, err := f.Write(data[off : off+64<<10]); err != nil {
						fail(err)
						break
					}
				}
				if err := f.Close(); err != nil {
					fail(fmt.Errorf("close %s: %w", p, err))
				}
				if i > 0 { // read back the previous one while others write
					prev := filepath.Join(filepath.Dir(p), fmt.Sprintf("f%d", i-1))
					if b, err := os.ReadFile(prev); err != nil {
						fail(err)
					} else if !bytes.Equal(b, content(g, i-1)) {
						fail(fmt.Errorf("read back %s: got %d bytes, want the %d written", prev, len(b), size))
					}
				}
			}
		}()
	}
	// Listers.
	for l := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				dirs := []string{w.dir, w.root, filepath.Join(w.dir, fmt.Sprintf("w%02d", (int(listings.Load())+l)%writers))}
				for _, d := range dirs {
					es, err := os.ReadDir(d)
					if err != nil {
						fail(err)
						return
					}
					for _, e := range es {
						// Entries can vanish under the renamer; anything else is an error.
						if _, err := os.Lstat(filepath.Join(d, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
							fail(err)
						}
					}
				}
				listings.Add(1)
			}
		}()
	}
	// Renamer: moves a directory of files around, and a file in and out of it.
	final := "ren0"
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			next := fmt.Sprintf("ren%d", n+1)
			if err := os.Rename(filepath.Join(w.dir, final), filepath.Join(w.dir, next)); err != nil {
				fail(fmt.Errorf("rename %s → %s: %w", final, next, err))
				return
			}
			final = next
			if err := os.Rename(filepath.Join(w.dir, final, "r0"), filepath.Join(w.dir, "r0-out")); err != nil {
				fail(err)
				return
			}
			if err := os.Rename(filepath.Join(w.dir, "r0-out"), filepath.Join(w.dir, final, "r0")); err != nil {
				fail(err)
				return
			}
			renames.Add(1)
		}
	}()

	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(watchdog):
		var b bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&b, 2)
		t.Fatalf("not done after %v (self-deadlock?); goroutines:\n%s", watchdog, b.String())
	}
	t.Logf("%d directory renames, %d listing rounds beside %d files written", renames.Load(), listings.Load(), writers*files)
	for _, err := range errs {
		t.Error(err)
	}

	for g := range writers {
		for i := range files {
			key := w.key(fmt.Sprintf("w%02d/f%d", g, i))
			if b, err := getObject(w.bucket, key); err != nil || !bytes.Equal(b, content(g, i)) {
				t.Errorf("object %s: got %d bytes, %v, want the %d written", key, len(b), err, size)
			}
		}
	}
	var want []string
	for i := range renFiles {
		want = append(want, w.key(fmt.Sprintf("%s/r%d", final, i)))
	}
	var ren []string
	for _, k := range listKeys(t, w.bucket, w.prefix) {
		if rel := k[len(w.prefix):]; len(rel) > 3 && rel[:3] == "ren" || rel == "r0-out" {
			if k != w.key(final+"/") { // the moved mkdir marker, if kept
				ren = append(ren, k)
			}
		}
	}
	if !slices.Equal(ren, want) {
		t.Errorf("renamed keys: got %q, want %q", ren, want)
	}
	got := readDirNames(t, w.dir)
	wantNames := []string{final}
	for g := range writers {
		wantNames = append(wantNames, fmt.Sprintf("w%02d", g))
	}
	slices.Sort(wantNames)
	if !slices.Equal(got, wantNames) {
		t.Errorf("workspace listing: got %q, want %q", got, wantNames)
	}
}
