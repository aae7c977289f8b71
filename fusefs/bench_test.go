package fusefs_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sys/unix"

	"github.com/sftpgate/sftpgate/fusefs"
)

const (
	benchPartSize    = 16 << 20
	benchConcurrency = 4
	benchReps        = 2
)

// cyclic is a reader (and ReaderAt, so minio-go uploads it in parallel
// parts) of size bytes repeating one random block: generating the data
// costs nothing on either side of a comparison.
type cyclic struct {
	block []byte
	size  int64
	off   int64
}

func newCyclic(size int64) *cyclic { return &cyclic{block: pattern(5, 4<<20), size: size} }

func (c *cyclic) ReadAt(p []byte, off int64) (int, error) {
	if off >= c.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off < c.size {
		k := copy(p[n:], c.block[off%int64(len(c.block)):])
		if rest := c.size - off; int64(k) > rest {
			k = int(rest)
		}
		n += k
		off += int64(k)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (c *cyclic) Read(p []byte) (int, error) {
	n, err := c.ReadAt(p, c.off)
	c.off += int64(n)
	return n, err
}

// benchOptions are the options of the benchmarks' mounts: their part size
// and concurrency, the rest as in the tests.
func benchOptions(b *testing.B) fusefs.Options {
	o := testOptions(b)
	o.PartSize = benchPartSize
	o.Concurrency = benchConcurrency
	return o
}

// putDirect puts size bytes at key with minio-go (the benchmarks' part
// size and threads) and returns how long it took.
func putDirect(b *testing.B, w *workspace, key string, size int64) time.Duration {
	b.Helper()
	start := time.Now()
	if _, err := server.Client.PutObject(context.Background(), w.bucket, w.key(key), newCyclic(size), size, minio.PutObjectOptions{
		PartSize: benchPartSize, NumThreads: benchConcurrency,
	}); err != nil {
		b.Fatalf("PutObject: %v", err)
	}
	return time.Since(start)
}

// getDirect reads the object at key with minio-go in 1 MiB reads, failing
// unless it has size bytes, and returns how long it took.
func getDirect(b *testing.B, w *workspace, key string, size int64) time.Duration {
	b.Helper()
	start := time.Now()
	obj, err := server.Client.GetObject(context.Background(), w.bucket, w.key(key), minio.GetObjectOptions{})
	if err != nil {
		b.Fatalf("GetObject: %v", err)
	}
	n, err := io.CopyBuffer(io.Discard, obj, make([]byte, 1<<20))
	obj.Close()
	if err != nil || n != size {
		b.Fatalf("GetObject read: %d bytes, %v", n, err)
	}
	return time.Since(start)
}

// resetVmHWM gives the heap's free memory back to the system and resets
// the process's peak RSS, before a measurement of it.
func resetVmHWM(b *testing.B) {
	b.Helper()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Fatalf("reset VmHWM: %v", err)
	}
}

// benchRow is one line of the printed table.
type benchRow struct {
	metric, value, target string
	ok                    bool
}

// BenchmarkGateway measures the mount against minio-go talking to the same
// MinIO directly, and prints a table.
func BenchmarkGateway(b *testing.B) {
	o := benchOptions(b)
	o.MinFree = 0 // the default reserve
	w := mountWorkspace(b, o)
	var rows []benchRow
	add := func(metric, value, target string, ok bool) {
		rows = append(rows, benchRow{metric, value, target, ok})
	}
	const gib = 1 << 30

	for range b.N {
		rows = rows[:0]

		// Sequential write and read of 1 GiB, each way, best of benchReps
		// so that a burst of load on a shared machine weighs less. Reads
		// are of objects put directly (never cached by the mount), each
		// read once each way.
		var wDirect, wMount, rDirect, rMount time.Duration
		var gets int // object GETs of the last read through the mount
		for rep := range benchReps {
			key := fmt.Sprintf("direct-%d.bin", rep)
			wDirect = best(wDirect, putDirect(b, w, key, gib))
			start := time.Now()
			writeThroughMount(b, filepath.Join(w.dir, fmt.Sprintf("mount-%d.bin", rep)), gib)
			wMount = best(wMount, time.Since(start))

			rDirect = best(rDirect, getDirect(b, w, key, gib))
			getsBefore := w.g.counter.objectGets(w.bucket, w.key(key))
			start = time.Now()
			readThroughMount(b, filepath.Join(w.dir, key), gib)
			rMount = best(rMount, time.Since(start))
			gets = w.g.counter.objectGets(w.bucket, w.key(key)) - getsBefore
		}
		ratio := wDirect.Seconds() / wMount.Seconds()
		add("write 1 GiB: PutObject", fmtRate(gib, wDirect), "", true)
		add("write 1 GiB: mount (until close)", fmtRate(gib, wMount), "", true)
		add("write ratio mount/direct", fmt.Sprintf("%.2fx", ratio), ">= 0.70x", ratio >= 0.7)
		b.ReportMetric(ratio, "write-ratio")
		ratio = rDirect.Seconds() / rMount.Seconds()
		add("read 1 GiB: GetObject", fmtRate(gib, rDirect), "", true)
		add("read 1 GiB: mount", fmtRate(gib, rMount), "", true)
		add("read ratio mount/direct", fmt.Sprintf("%.2fx", ratio), ">= 0.70x", ratio >= 0.7)
		add("  GETs for one 1 GiB mount read", fmt.Sprint(gets), "", true)
		b.ReportMetric(ratio, "read-ratio")

		// ls -l of a cold directory of 1,000 files.
		keys := make([]string, 1000)
		for i := range keys {
			keys[i] = w.key(fmt.Sprintf("cold/f%04d", i))
		}
		putMany(b, w.bucket, keys)
		start := time.Now()
		es, err := os.ReadDir(filepath.Join(w.dir, "cold"))
		if err != nil {
			b.Fatalf("ReadDir: %v", err)
		}
		for _, e := range es {
			if _, err := os.Lstat(filepath.Join(w.dir, "cold", e.Name())); err != nil {
				b.Fatalf("Lstat: %v", err)
			}
		}
		ls := time.Since(start)
		if len(es) != len(keys) {
			b.Errorf("cold listing: got %d entries, want %d", len(es), len(keys))
		}
		add("ls -l cold dir, 1,000 files", ls.Round(time.Millisecond).String(), "< 300ms", ls < 300*time.Millisecond)
		b.ReportMetric(ls.Seconds(), "ls-1000-s")

		// 1,000 files of 4 KiB created through the mount.
		if err := os.Mkdir(filepath.Join(w.dir, "small"), 0o755); err != nil {
			b.Fatalf("Mkdir: %v", err)
		}
		data := pattern(4, 4<<10)
		start = time.Now()
		for i := range 1000 {
			if err := os.WriteFile(filepath.Join(w.dir, "small", fmt.Sprintf("s%04d", i)), data, 0o644); err != nil {
				b.Fatalf("WriteFile: %v", err)
			}
		}
		small := time.Since(start)
		add("create 1,000 x 4 KiB files", small.Round(time.Millisecond).String(), "< 30s", small < 30*time.Second)
		b.ReportMetric(small.Seconds(), "create-1000-s")

		// Peak RSS while writing 4 GiB through the mount.
		resetVmHWM(b)
		writeThroughMount(b, filepath.Join(w.dir, "huge.bin"), 4*gib)
		hwm := vmHWM(b)
		add("peak RSS writing 4 GiB", fmt.Sprintf("%d MiB", hwm>>20), "< 200 MiB", hwm < 200<<20)
		b.ReportMetric(float64(hwm>>20), "peak-rss-MiB")

		for k, want := range map[string]int64{"mount-0.bin": gib, "huge.bin": 4 * gib} {
			info, err := statObject(w.bucket, w.key(k))
			if err != nil {
				b.Errorf("stat %s: %v", k, err)
			} else if info.Size != want {
				b.Errorf("%s size: got %d, want %d", k, info.Size, want)
			}
			// Spot-check the content: the start and the end.
			for _, off := range []int64{0, want - 3<<20} {
				checkRange(b, w.bucket, w.key(k), off, 3<<20, want)
			}
		}
	}

	var sb strings.Builder
	fmt.Fprintf(&sb, "\nfusefs benchmark (one MinIO on 127.0.0.1, part size %d MiB, concurrency %d, 1 GiB rates best of %d)\n", benchPartSize>>20, benchConcurrency, benchReps)
	fmt.Fprintf(&sb, "%-36s %-16s %-10s %s\n", "metric", "value", "target", "ok")
	for _, r := range rows {
		ok := ""
		if r.target != "" {
			ok = map[bool]string{true: "yes", false: "NO"}[r.ok]
		}
		fmt.Fprintf(&sb, "%-36s %-16s %-10s %s\n", r.metric, r.value, r.target, ok)
	}
	fmt.Print(sb.String())
}

// writeThroughMount writes size bytes sequentially to p and closes it.
func writeThroughMount(tb testing.TB, p string, size int64) {
	tb.Helper()
	f, err := os.Create(p)
	if err != nil {
		tb.Fatalf("Create: %v", err)
	}
	// Hide (*os.File).ReadFrom, which would write in 32 KiB pieces.
	if _, err := io.CopyBuffer(struct{ io.Writer }{f}, newCyclic(size), make([]byte, 1<<20)); err != nil {
		f.Close()
		tb.Fatalf("write: %v", err)
	}
	if err := f.Close(); err != nil {
		tb.Fatalf("Close: %v", err)
	}
}

// checkRange compares n bytes at off of bucket/key with what newCyclic(size)
// produces there.
func checkRange(tb testing.TB, bucket, key string, off, n, size int64) {
	tb.Helper()
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(off, off+n-1); err != nil {
		tb.Fatal(err)
	}
	obj, err := server.Client.GetObject(context.Background(), bucket, key, opts)
	if err != nil {
		tb.Fatalf("GetObject %s: %v", key, err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if err != nil {
		tb.Fatalf("read %s: %v", key, err)
	}
	want := make([]byte, n)
	newCyclic(size).ReadAt(want, off)
	if !bytes.Equal(got, want) {
		tb.Errorf("%s bytes %d-%d: not what was written", key, off, off+n-1)
	}
}

// best returns the shorter of two durations, zero meaning none yet.
func best(a, b time.Duration) time.Duration {
	if a == 0 || b < a {
		return b
	}
	return a
}

func fmtRate(n int64, d time.Duration) string {
	return fmt.Sprintf("%.0f MiB/s", float64(n)/(1<<20)/d.Seconds())
}

// vmHWM returns the peak resident set size of this process.
func vmHWM(tb testing.TB) int64 {
	tb.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				tb.Fatalf("VmHWM %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	tb.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// readThroughMount reads the file at path to its end in 1 MiB reads and
// fails unless it had want bytes.
func readThroughMount(b *testing.B, path string, want int64) {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatalf("Open: %v", err)
	}
	defer f.Close()
	// Measure the mount, not the kernel's page cache: the pages an earlier
	// read left (kept from one open to the next for an unchanged object)
	// are dropped first.
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatalf("fadvise DONTNEED: %v", err)
	}
	n, err := io.CopyBuffer(io.Discard, f, make([]byte, 1<<20))
	if err != nil || n != want {
		b.Fatalf("read through the mount: %d bytes, %v", n, err)
	}
}
