package sftpd

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// recordingFile is a writerAt over a byte slice that records each write.
type recordingFile struct {
	mu     sync.Mutex
	data   []byte
	writes []int // lengths
	failAt int   // the write number (1-based) that fails with EIO; 0 never
}

func (r *recordingFile) WriteAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, len(p))
	if r.failAt == len(r.writes) {
		return 0, syscall.EIO
	}
	if end := int(off) + len(p); end > len(r.data) {
		r.data = append(r.data, make([]byte, end-len(r.data))...)
	}
	copy(r.data[off:], p)
	return len(p), nil
}

func newTestCombiner(dst writerAt) (*combiner, *pendingWrites) {
	pw := &pendingWrites{}
	c := &combiner{dst: dst, pending: pw}
	pw.register(c)
	return c, pw
}

// Chunks written out of order, as parallel workers deliver them, reach
// the file as whole 1 MiB windows, and the bytes are those written.
func TestCombinerOutOfOrderWholeWindows(t *testing.T) {
	const size, chunk = 4 * combineWindow, 32 << 10
	want := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	dst := &recordingFile{}
	c, pw := newTestCombiner(dst)
	// Swap neighbouring chunks: every chunk arrives late or early.
	var offs []int
	for off := 0; off < size; off += chunk {
		offs = append(offs, off)
	}
	for i := 0; i+1 < len(offs); i += 2 {
		offs[i], offs[i+1] = offs[i+1], offs[i]
	}
	for _, off := range offs {
		if err := c.write(want[off:off+chunk], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if n := pw.windows.Load(); n != 0 {
		t.Errorf("%d windows still held after complete windows", n)
	}
	if err := c.flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst.data, want) {
		t.Fatal("file content differs from what was written")
	}
	for _, n := range dst.writes {
		if n != combineWindow {
			t.Fatalf("writes reached the file in pieces %v, want only %d-byte windows", dst.writes, combineWindow)
		}
	}
}

// Overlapping writes: the later bytes win, whether they are gathered or
// written through (a write as large as a window).
func TestCombinerLaterWriteWins(t *testing.T) {
	dst := &recordingFile{}
	c, _ := newTestCombiner(dst)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.write(bytes.Repeat([]byte("a"), 100), 10))
	must(c.write(bytes.Repeat([]byte("b"), 20), 50)) // inside the first
	big := bytes.Repeat([]byte("c"), combineWindow)
	must(c.write(big, 60)) // written through, over both
	must(c.write([]byte("d"), 70))
	must(c.flush())
	want := make([]byte, 60+combineWindow)
	copy(want[10:], bytes.Repeat([]byte("a"), 100))
	copy(want[50:], bytes.Repeat([]byte("b"), 20))
	copy(want[60:], big)
	want[70] = 'd'
	if !bytes.Equal(dst.data, want) {
		t.Fatalf("content differs at %d", firstDiff(dst.data, want))
	}
}

// A write crossing a window boundary is split between both windows.
func TestCombinerCrossesWindows(t *testing.T) {
	dst := &recordingFile{}
	c, _ := newTestCombiner(dst)
	p := bytes.Repeat([]byte("x"), 255<<10)
	var want []byte
	for off := 0; off < 3*combineWindow; off += len(p) {
		if err := c.write(p, int64(off)); err != nil {
			t.Fatal(err)
		}
		want = append(want, p...)
	}
	if err := c.flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst.data, want) {
		t.Fatalf("content differs at %d", firstDiff(dst.data, want))
	}
}

// A failed write to the file is returned by that call, every later one
// and flush; nothing more is written.
func TestCombinerErrorSticks(t *testing.T) {
	dst := &recordingFile{failAt: 1}
	c, pw := newTestCombiner(dst)
	p := make([]byte, 512<<10)
	if err := c.write(p, 0); err != nil {
		t.Fatalf("first half window: %v (nothing written yet)", err)
	}
	if err := c.write(p, 512<<10); !errors.Is(err, syscall.EIO) {
		t.Fatalf("write completing the window: %v, want EIO", err)
	}
	if err := c.write(p, combineWindow); !errors.Is(err, syscall.EIO) {
		t.Fatalf("later write: %v, want EIO", err)
	}
	if err := c.flush(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("flush: %v, want EIO", err)
	}
	if len(dst.writes) != 1 {
		t.Errorf("writes after the failure: %v", dst.writes)
	}
	if n := pw.windows.Load(); n != 0 {
		t.Errorf("%d windows held after the flush", n)
	}
}

// When the server's budget is spent, a handle writes through and the
// data is still all there; the buffers come back once flushed.
func TestCombinerBudget(t *testing.T) {
	pool := &windowPool{size: combineBudgetSize}
	inUse := func() int {
		pool.mu.Lock()
		defer pool.mu.Unlock()
		return pool.inUse
	}
	before := inUse()
	var held []*combiner
	var dsts []*recordingFile
	for range combineBudgetSize - before + 3 {
		dst := &recordingFile{}
		c, pw := newTestCombiner(dst)
		pw.bufs = pool
		if err := c.write([]byte("hello"), 7); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		dsts = append(dsts, dst)
	}
	throughs := 0
	for _, d := range dsts {
		if len(d.writes) > 0 {
			throughs++
		}
	}
	if throughs != 3 {
		t.Errorf("%d handles wrote through, want the 3 beyond the budget", throughs)
	}
	for i, c := range held {
		if err := c.flush(); err != nil {
			t.Fatal(err)
		}
		if got := string(dsts[i].data[7:]); got != "hello" {
			t.Fatalf("handle %d: %q", i, got)
		}
	}
	if n := inUse(); n != before {
		t.Errorf("%d buffers in use after every flush, %d before", n, before)
	}
}

// Many pieces in one window (a client writing every other byte) make
// the window go out early rather than grow a long list.
func TestCombinerManySpans(t *testing.T) {
	dst := &recordingFile{}
	c, _ := newTestCombiner(dst)
	for i := range combineMaxSpans + 1 {
		if err := c.write([]byte{byte(i)}, int64(2*i)); err != nil {
			t.Fatal(err)
		}
	}
	if len(dst.writes) == 0 {
		t.Fatalf("no write after %d separate pieces", combineMaxSpans+1)
	}
	if err := c.flush(); err != nil {
		t.Fatal(err)
	}
	for i := range combineMaxSpans + 1 {
		if dst.data[2*i] != byte(i) {
			t.Fatalf("byte %d = %d", 2*i, dst.data[2*i])
		}
	}
}

func TestWindowAddMerges(t *testing.T) {
	w := &window{}
	for _, s := range []span{{10, 20}, {30, 40}, {20, 30}, {0, 5}, {5, 10}, {35, 50}} {
		w.add(s.start, s.end)
	}
	if len(w.spans) != 1 || w.spans[0] != (span{0, 50}) || w.filled != 50 {
		t.Fatalf("spans %v filled %d, want [{0 50}] 50", w.spans, w.filled)
	}
	w.add(60, 70)
	w.add(55, 58)
	if len(w.spans) != 3 || w.filled != 63 {
		t.Fatalf("spans %v filled %d", w.spans, w.filled)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// What a client wrote, acknowledged but not closed, is what the rest of
// the session sees: stat by path and by handle, another handle's reads, a
// truncation by setstat, a rename, and the file on disk after close.
func TestGatheredWritesVisibleInSession(t *testing.T) {
	ts := startServer(t, nil)
	cl := ts.sftp(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 40<<10) // 640 KiB: less than a window
	f, err := cl.OpenFile("/open.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if fi, err := cl.Stat("/open.bin"); err != nil || fi.Size() != int64(len(data)) {
		t.Fatalf("stat by path while open: %v, %v; want size %d", fi, err, len(data))
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != int64(len(data)) {
		t.Fatalf("fstat while open: %v, %v", fi, err)
	}
	r, err := cl.Open("/open.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("another handle read %d bytes (%v), want the %d written", len(got), err, len(data))
	}
	// More bytes, then a truncation below them: the truncation is last.
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := cl.Truncate("/open.bin", 100); err != nil {
		t.Fatal(err)
	}
	if fi, err := cl.Stat("/open.bin"); err != nil || fi.Size() != 100 {
		t.Fatalf("after truncate: %v, %v; want size 100", fi, err)
	}
	if _, err := f.WriteAt([]byte("tail"), 100); err != nil {
		t.Fatal(err)
	}
	if err := cl.PosixRename("/open.bin", "/moved.bin"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	onDisk, err := os.ReadFile(filepath.Join(ts.root(t), "moved.bin"))
	want := append(append([]byte{}, data[:100]...), "tail"...)
	if err != nil || !bytes.Equal(onDisk, want) {
		t.Fatalf("on disk: %q… (%d bytes, %v), want %d bytes", onDisk[:min(len(onDisk), 16)], len(onDisk), err, len(want))
	}
}

// A handle that appends at the end (append flag, writes below the size it
// opened with) finds the end after what the session's other handles have
// written, gathered or not.
func TestAppendAtEndAfterGatheredWrites(t *testing.T) {
	ts := startServer(t, nil)
	cl := ts.sftp(t)
	w, err := cl.OpenFile("/log.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	first := bytes.Repeat([]byte("a"), 100<<10)
	if _, err := w.Write(first); err != nil {
		t.Fatal(err)
	}
	a, err := cl.OpenFile("/log.bin", os.O_WRONLY|os.O_APPEND)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	second := bytes.Repeat([]byte("b"), 100<<10) // gathered after a's open
	if _, err := w.Write(second); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteAt([]byte("tail"), 0); err != nil { // below a's opening size: at the end
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(ts.root(t), "log.bin"))
	want := append(append(append([]byte{}, first...), second...), "tail"...)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("file: %d bytes (%v), want %d: the appended block must follow everything written before it", len(got), err, len(want))
	}
}

// TestGatheredWritesIdleFlush: a short write that does not fill its window
// reaches the file within about combineIdle when the client sends nothing
// more, without a close.
func TestGatheredWritesIdleFlush(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.sftp(t)
	f, err := c.Create("/idle.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(bytes.Repeat([]byte("x"), 1000)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(ts.root(t), "idle.bin")
	deadline := time.Now().Add(5 * combineIdle)
	for {
		fi, err := os.Stat(path)
		if err == nil && fi.Size() == 1000 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("file after %v without a close: %v, %v; want the 1000 bytes written", 5*combineIdle, fi, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
