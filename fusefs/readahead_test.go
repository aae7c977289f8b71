package fusefs_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/fusefs"
)

// TestReadAhead reads objects put directly (so never from a local copy)
// through the mount: two large files at once, sequentially, each with a
// different read size, and one file in random order; every byte is
// checked, and a sequential read must cost few GETs (the kernel's
// read-ahead sends several READs at once, in any order, which must not
// look random). Reads are answered from pooled buffers without a copy, so
// a buffer given back too early would show here as wrong bytes.
func TestReadAhead(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	files := map[string][]byte{
		"a.bin": pattern(11, 37<<20+13),
		"b.bin": pattern(12, 29<<20+5),
	}
	for name, data := range files {
		putObject(t, w.bucket, w.key(name), data)
	}

	t.Run("concurrent sequential", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for rep := range 2 {
			for name, data := range files {
				wg.Add(1)
				go func() {
					defer wg.Done()
					f, err := os.Open(filepath.Join(w.dir, name))
					if err != nil {
						errs <- err
						return
					}
					defer f.Close()
					h := sha256.New()
					bufSize := 1 << 20
					if rep == 1 {
						bufSize = 100_003 // reads across cells, and across pages
					}
					// Hide (*os.File).WriteTo, which would pick its own size.
					n, err := io.CopyBuffer(h, struct{ io.Reader }{f}, make([]byte, bufSize))
					if err != nil {
						errs <- fmt.Errorf("%s: read: %v", name, err)
						return
					}
					if n != int64(len(data)) || !bytes.Equal(h.Sum(nil), sha256Of(data)) {
						errs <- fmt.Errorf("%s (reads of %d): got %d bytes not matching the object, want %d", name, bufSize, n, len(data))
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("few GETs", func(t *testing.T) {
		key := w.key("a.bin")
		before := w.g.counter.objectGets(w.bucket, key)
		got, err := os.ReadFile(filepath.Join(w.dir, "a.bin"))
		if err != nil || !bytes.Equal(got, files["a.bin"]) {
			t.Fatalf("ReadFile: got %d bytes not matching the object, %v", len(got), err)
		}
		// 19 cells of 2 MiB: GETs of 1, 2, then up to 8 cells.
		gets := w.g.counter.objectGets(w.bucket, key) - before
		t.Logf("%d GETs", gets)
		if gets > 8 {
			t.Errorf("GETs for one sequential read of 37 MiB: got %d, want at most 8", gets)
		}
	})

	t.Run("random", func(t *testing.T) {
		data := files["b.bin"]
		f, err := os.Open(filepath.Join(w.dir, "b.bin"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range 60 {
			off := rng.Int64N(int64(len(data)))
			n := 1 + rng.IntN(3<<20)
			switch {
			case i < 6:
				// Sequential first: the window and its GETs are under
				// way when the random reads drop them.
				off, n = int64(i)<<20, 1<<20
			case i%10 == 0:
				off = int64(len(data)) - int64(n)/2 // across the end
			}
			p := make([]byte, n)
			got, err := f.ReadAt(p, off)
			want := data[off:min(off+int64(n), int64(len(data)))]
			if (err != nil && err != io.EOF) || !bytes.Equal(p[:got], want) {
				t.Fatalf("ReadAt(%d bytes at %d): got %d bytes not matching the object, %v; want %d", n, off, got, err, len(want))
			}
		}
	})
}

// sha256Of returns the SHA-256 of b.
func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// BenchmarkRead measures only the sequential read of 1 GiB through the
// mount against GetObject on the same MinIO (the read rows of
// BenchmarkGateway), best of benchReps each way. Each read also prints
// the CPU time it cost this process and MinIO (a figure the machine's
// load moves less than the rates), and each mount read the FUSE READs it
// took and the process's peak RSS.
func BenchmarkRead(b *testing.B) {
	w := mountWorkspace(b, benchOptions(b))
	const gib = 1 << 30
	key := "direct.bin"
	putDirect(b, w, key, gib)
	b.ResetTimer()
	for range b.N {
		var rDirect, rMount time.Duration
		var gets int
		for range benchReps {
			cpuBefore, minioBefore := selfCPU(), minioCPU(b)
			d := getDirect(b, w, key, gib)
			rDirect = best(rDirect, d)
			fmt.Printf("direct read: %v, CPU: this process %v, MinIO %v\n", d.Round(time.Millisecond),
				selfCPU()-cpuBefore, minioCPU(b)-minioBefore)

			getsBefore := w.g.counter.objectGets(w.bucket, w.key(key))
			readsBefore := fuseReads(w.g.m.Counters())
			cpuBefore, minioBefore = selfCPU(), minioCPU(b)
			resetVmHWM(b)
			start := time.Now()
			readThroughMount(b, filepath.Join(w.dir, key), gib)
			rMount = best(rMount, time.Since(start))
			gets = w.g.counter.objectGets(w.bucket, w.key(key)) - getsBefore
			fmt.Printf("mount read: %v, %d FUSE reads, CPU: this process %v, MinIO %v, peak RSS %d MiB\n", time.Since(start).Round(time.Millisecond),
				fuseReads(w.g.m.Counters())-readsBefore, selfCPU()-cpuBefore, minioCPU(b)-minioBefore, vmHWM(b)>>20)
		}
		ratio := rDirect.Seconds() / rMount.Seconds()
		fmt.Printf("\nread 1 GiB (best of %d): GetObject %s, mount %s, ratio %.2fx, %d GETs\n",
			benchReps, fmtRate(gib, rDirect), fmtRate(gib, rMount), ratio, gets)
		b.ReportMetric(ratio, "read-ratio")
	}
}

// fuseReads returns the FUSE reads answered so far.
func fuseReads(c fusefs.Counters) int64 {
	var n int64
	for _, oc := range c.Ops {
		if oc.Op == "read" {
			n += oc.N
		}
	}
	return n
}

// selfCPU returns the user and system CPU time of this process.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// minioCPU returns the CPU time of this process's children named minio.
func minioCPU(tb testing.TB) time.Duration {
	tb.Helper()
	es, _ := os.ReadDir("/proc")
	var total time.Duration
	for _, e := range es {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil || !strings.Contains(string(b), "(minio)") {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if ppid, _ := strconv.Atoi(f[1]); ppid != os.Getpid() {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * 10 * time.Millisecond
	}
	return total
}
