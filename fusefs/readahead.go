package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

const (
	// readChunk is the size of one read-ahead cell (and of its buffer).
	readChunk = 2 << 20
	// maxSpan is the most cells one read-ahead GET covers: the first GETs
	// of a sequential read are one cell, then two, then maxSpan, so that a
	// long read costs the store few requests while its first bytes come
	// quickly.
	maxSpan = 8
	// seqSlack is how far behind the furthest read a read still counts
	// as sequential (and the cells kept behind it): more than the
	// kernel's read-ahead.
	seqSlack = 2 * kernelReadAheadKB << 10
)

// kernelReadAheadKB is the kernel's read-ahead on a view, in KiB. The
// kernel caps a FUSE mount's read-ahead at its default (128 KiB) whatever
// the server asks at INIT (MaxReadAhead), so that a sequential reader
// costs a FUSE round trip per 128 KiB; the mount's setting in sysfs lifts
// the cap (READs are then up to MaxWrite, several in flight).
const kernelReadAheadKB = 4096

// setKernelReadAhead sets the kernel's read-ahead of the FUSE mount at dir
// to kb KiB, through /sys/class/bdi (root only).
func setKernelReadAhead(dir string, kb int) error {
	ms, err := fuseMounts(dir)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.dir != dir {
			continue
		}
		if _, err := strconv.Atoi(m.minor); err != nil {
			return fmt.Errorf("read-ahead of %s: bad device %q", dir, m.minor)
		}
		if err := os.WriteFile("/sys/class/bdi/0:"+m.minor+"/read_ahead_kb", []byte(strconv.Itoa(kb)), 0); err != nil {
			return fmt.Errorf("read-ahead of %s: %w", dir, err)
		}
		return nil
	}
	return fmt.Errorf("read-ahead of %s: not in mountinfo", dir)
}

// remoteReader reads one object for one handle. Sequential reads are
// served from a read-ahead window of readChunk cells, filled by parallel
// ranged GETs of up to maxSpan cells, that doubles on every sequential read
// up to maxWindow cells; other reads fetch just the requested range. Every
// cell is reserved from the process-wide read budget (readbudget.go): the
// window is cut to the reader's share, a read whose cells cannot be
// reserved fetches just the requested range, and the cells go back when
// the handle closes or stays idle for readIdle.
type remoteReader struct {
	ob          *objects
	bucket, key string
	etag        string
	size        int64
	maxWindow   int64
	sem         chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// share is the reader's account in the read budget.
	share *readShare

	// mu guards the fields below.
	mu     sync.Mutex
	next   int64 // offset expected of a sequential read
	window int64 // cells to keep ahead; 0 when reading randomly
	ahead  int64 // first cell not started by the sequential read-ahead
	span   int64 // cells of the next read-ahead GET
	chunks map[int64]*chunk
	// lastRead is when the last sequential read came; idleTimer, armed
	// while the reader may hold cells, gives them back after readIdle
	// without reads. closed is set by close.
	lastRead  time.Time
	idleTimer *time.Timer
	closed    bool
}

// chunk is one read-ahead cell; done is closed when data and err are set.
// Its buffer, and its cell of the read budget, go back when the last of
// its holders lets go: the chunks map, the GET filling it, and each read
// copying from it.
type chunk struct {
	share *readShare
	done  chan struct{}
	refs  atomic.Int32
	buf   *cellBuf // nil until the GET reaches the cell
	data  []byte
	err   error
}

// unref drops one hold on c.
func (c *chunk) unref() {
	if c.refs.Add(-1) != 0 {
		return
	}
	if c.buf != nil {
		c.share.b.putBuf(c.buf)
		c.buf, c.data = nil, nil
	}
	c.share.give(1)
}

func newRemoteReader(parent context.Context, ob *objects, bucket, key string, info objInfo) *remoteReader {
	ctx, cancel := context.WithCancel(parent)
	return &remoteReader{
		ob: ob, bucket: bucket, key: key, etag: info.ETag, size: info.Size,
		maxWindow: max(1, int64(ob.concurrency)*8*(1<<20)/readChunk),
		sem:       make(chan struct{}, max(1, ob.concurrency)),
		ctx:       ctx, cancel: cancel,
		share:  &readShare{b: ob.budget},
		chunks: map[int64]*chunk{},
	}
}

// startLocked launches one GET for the cells from idx on, at most n of
// them, stopping at the end of the object, at a cell that exists or at
// the reader's share of the budget, and returns how many it covers (0
// when the budget has none for it); r.mu held.
func (r *remoteReader) startLocked(idx, n int64) int64 {
	free := int64(0)
	for i := idx; i < idx+n && i*readChunk < r.size; i++ {
		if _, ok := r.chunks[i]; ok {
			break
		}
		free++
	}
	if free == 0 {
		return 0
	}
	cells := make([]*chunk, r.share.take(free))
	for i := range cells {
		c := &chunk{share: r.share, done: make(chan struct{})}
		c.refs.Store(2) // the map and the GET
		r.chunks[idx+int64(i)] = c
		cells[i] = c
	}
	if len(cells) > 0 {
		r.wg.Add(1)
		go r.fetch(idx, cells)
	}
	return int64(len(cells))
}

// fetch fills cells, which start at cell idx, from one ranged GET.
func (r *remoteReader) fetch(idx int64, cells []*chunk) {
	defer r.wg.Done()
	fail := func(cells []*chunk, err error) {
		for _, c := range cells {
			c.err = err
			close(c.done)
			c.unref()
		}
	}
	select {
	case r.sem <- struct{}{}:
	case <-r.ctx.Done():
		fail(cells, r.ctx.Err())
		return
	}
	defer func() { <-r.sem }()
	if unwanted(cells) {
		fail(cells, errDropped)
		return
	}
	off := idx * readChunk
	body, err := r.ob.st.OpenRange(r.ctx, r.bucket, r.key, r.etag, off, min(int64(len(cells))*readChunk, r.size-off))
	if err != nil {
		fail(cells, err)
		return
	}
	defer body.Close()
	for i, c := range cells {
		if unwanted(cells[i:]) {
			fail(cells[i:], errDropped) // and leave the rest of the body
			return
		}
		c.buf = r.share.b.getBuf()
		n, err := io.ReadFull(body, c.buf.b[:min(readChunk, r.size-off)])
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = nil // the object is shorter than it was: a short read
		}
		if err != nil {
			fail(cells[i:], fmt.Errorf("read %s/%s: %w", r.bucket, r.key, err))
			return
		}
		c.data = c.buf.b[:n]
		close(c.done)
		c.unref()
		off += readChunk
	}
}

// errDropped ends the GET of cells nobody wants any more.
var errDropped = errors.New("fusefs: read-ahead dropped")

// unwanted reports whether every cell of cs was dropped from the window
// and is read by nobody: only the GET holds it, and nobody can take it
// again.
func unwanted(cs []*chunk) bool {
	for _, c := range cs {
		if c.refs.Load() > 1 {
			return false
		}
	}
	return true
}

// dropLocked removes cell idx from the window; r.mu held.
func (r *remoteReader) dropLocked(idx int64) {
	if c, ok := r.chunks[idx]; ok {
		delete(r.chunks, idx)
		c.unref()
	}
}

// read answers a READ of dest at off, from the store for a read that is
// not sequential, else with the bytes of the read-ahead cells as they are
// (no copy into dest).
func (r *remoteReader) read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, error) {
	p, need, first, seq := r.cells(dest, off)
	if !seq {
		n, err := r.ob.st.ReadAt(ctx, r.bucket, r.key, r.etag, p, off)
		return fuse.ReadResultData(p[:n]), err
	}
	res := &cellResult{cells: need, data: make([][]byte, 0, len(need))}
	n := int64(0)
	for i, c := range need {
		idx := first + int64(i)
		if err := r.wait(ctx, c, idx); err != nil {
			res.Done()
			return nil, err
		}
		from := off + n - idx*readChunk
		if from >= int64(len(c.data)) {
			break // the object is shorter than it was
		}
		b := c.data[from:min(int64(len(c.data)), from+int64(len(p))-n)]
		res.data = append(res.data, b)
		res.size += len(b)
		n += int64(len(b))
	}
	if res.size == 0 {
		res.Done() // go-fuse calls Done only for a result with bytes
		return fuse.ReadResultData(nil), nil
	}
	return res, nil
}

// cells clips p to the object, and for a sequential read moves the
// window and returns the cells that hold p, from cell first on, each with
// a hold the caller drops (unref). seq is false for a read that is not
// sequential: the window is dropped and the caller reads from the store.
func (r *remoteReader) cells(p []byte, off int64) (_ []byte, need []*chunk, first int64, seq bool) {
	if off >= r.size {
		return p[:0], nil, 0, true
	}
	if rest := r.size - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// The kernel's read-ahead has several READs in flight, which may come
	// in any order: a read a little behind the furthest one is sequential
	// too, and so is any read in the first seqSlack bytes until a read
	// goes past them (the kernel's first burst).
	seq = off == r.next ||
		(r.window > 0 && off >= r.next-seqSlack && off < r.next+r.window*readChunk) ||
		(r.next <= seqSlack && off < seqSlack)
	if !seq {
		r.next = off + int64(len(p))
		r.window, r.ahead, r.span = 0, 0, 1
		for idx := range r.chunks {
			r.dropLocked(idx)
		}
		r.share.leave() // it holds no cells: leave the share to others
		return p, nil, 0, false
	}
	r.share.join()
	r.lastRead = time.Now()
	if r.idleTimer == nil {
		r.idleTimer = time.AfterFunc(readIdle, r.idle)
	}
	r.next = max(r.next, off+int64(len(p)))
	r.window = min(max(2*r.window, 1), r.maxWindow)
	first = off / readChunk
	last := (off + int64(len(p)) - 1) / readChunk
	for idx := range r.chunks {
		if idx < (r.next-seqSlack)/readChunk {
			r.dropLocked(idx)
		}
	}
	var started []int64
	for idx := first; idx <= last; idx++ {
		if _, ok := r.chunks[idx]; ok {
			continue
		}
		// A cell needed now that is missing: if the share is spent,
		// the cells kept behind this read go first; failing that,
		// this read alone comes straight from the store (and the
		// cells just started for it are dropped).
		if r.startLocked(idx, 1) == 0 {
			for i := range r.chunks {
				if i < first {
					r.dropLocked(i)
				}
			}
			if r.startLocked(idx, 1) == 0 {
				for _, i := range started {
					r.dropLocked(i)
				}
				r.share.b.fallbacks.Add(1)
				return p, nil, 0, false
			}
		}
		started = append(started, idx)
	}
	r.aheadLocked(last, last+r.window)
	need = make([]*chunk, 0, last-first+1)
	for idx := first; idx <= last; idx++ {
		c := r.chunks[idx]
		c.refs.Add(1)
		need = append(need, c)
	}
	return p, need, first, true
}

// wait waits for cell idx, c, to be filled, and returns its error (the
// cell is then dropped so that a later read tries again).
func (r *remoteReader) wait(ctx context.Context, c *chunk, idx int64) error {
	select {
	case <-c.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if c.err != nil {
		r.mu.Lock()
		if r.chunks[idx] == c {
			r.dropLocked(idx)
		}
		r.mu.Unlock()
		return c.err
	}
	return nil
}

// cellResult answers a READ with bytes of read-ahead cells, holding the
// cells until go-fuse is done with them.
type cellResult struct {
	cells []*chunk
	data  [][]byte
	size  int
	once  sync.Once
}

// Size returns the bytes to send.
func (r *cellResult) Size() int { return r.size }

// Bytes copies the bytes into buf (the READ's own buffer): go-fuse may
// call Done before it writes what Bytes returns.
func (r *cellResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	buf = buf[:0]
	for _, b := range r.data {
		buf = append(buf, b...)
	}
	return buf, fuse.OK
}

// Slices gives go-fuse the cells' bytes as they are: it writes them with
// the reply header in one writev and only then calls Done. (go-fuse looks
// for this method, its unexported withSlice, and uses Bytes otherwise.)
func (r *cellResult) Slices() ([][]byte, fuse.Status) {
	return r.data, fuse.OK
}

// Done lets the cells go.
func (r *cellResult) Done() {
	r.once.Do(func() {
		for _, c := range r.cells {
			c.unref()
		}
	})
}

// aheadLocked starts the GETs of the cells after last up to end, in spans
// of r.span cells (doubling up to maxSpan); a shorter span waits for the
// window to move unless it reaches the end of the object. r.mu held.
func (r *remoteReader) aheadLocked(last, end int64) {
	r.ahead = max(r.ahead, last+1)
	r.span = max(r.span, 1)
	for r.ahead <= end && r.ahead*readChunk < r.size {
		if _, ok := r.chunks[r.ahead]; ok {
			r.ahead++
			continue
		}
		n := min(r.span, end-r.ahead+1)
		if n < r.span && (r.ahead+n)*readChunk < r.size {
			return
		}
		got := r.startLocked(r.ahead, n)
		if got == 0 {
			return // the reader's share is spent
		}
		r.ahead += got
		r.span = min(2*r.span, maxSpan)
	}
}

// idle gives the cells back to the budget when the reader has not read
// for readIdle (the timer runs again when it read meanwhile). The next
// sequential read starts a new window.
func (r *remoteReader) idle() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if since := time.Since(r.lastRead); since < readIdle {
		r.idleTimer.Reset(readIdle - since)
		return
	}
	r.idleTimer = nil
	for idx := range r.chunks {
		r.dropLocked(idx)
	}
	r.window, r.ahead, r.span = 0, 0, 1
	r.share.leave()
}

// close stops the read-ahead, waits for its goroutines and gives its
// buffers and its share of the budget back.
func (r *remoteReader) close() {
	r.mu.Lock()
	r.closed = true
	if r.idleTimer != nil {
		r.idleTimer.Stop()
	}
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	for idx := range r.chunks {
		r.dropLocked(idx)
	}
	r.share.leave()
}
