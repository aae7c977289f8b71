package fusefs

import (
	"context"
	"sync"
)

// readChunk is the size of one read-ahead GET.
const readChunk = 2 << 20

// remoteReader reads one object for one handle. Sequential reads are
// served from a read-ahead window of parallel ranged GETs that doubles on
// every sequential read up to maxWindow chunks; other reads fetch just the
// requested range.
type remoteReader struct {
	ob          *objects
	bucket, key string
	etag        string
	size        int64
	maxWindow   int
	sem         chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards the fields below.
	mu     sync.Mutex
	next   int64 // offset expected of a sequential read
	window int   // chunks to keep ahead; 0 when reading randomly
	chunks map[int64]*chunk
}

// chunk is one read-ahead GET; done is closed when data and err are set.
type chunk struct {
	done chan struct{}
	data []byte
	err  error
}

func newRemoteReader(parent context.Context, ob *objects, bucket, key string, info objInfo) *remoteReader {
	ctx, cancel := context.WithCancel(parent)
	return &remoteReader{
		ob: ob, bucket: bucket, key: key, etag: info.ETag, size: info.Size,
		maxWindow: max(1, ob.concurrency*8*(1<<20)/readChunk),
		sem:       make(chan struct{}, max(1, ob.concurrency)),
		ctx:       ctx, cancel: cancel,
		chunks: map[int64]*chunk{},
	}
}

// startLocked launches the GET of chunk idx unless it exists; r.mu held.
func (r *remoteReader) startLocked(idx int64) {
	if _, ok := r.chunks[idx]; ok || idx*readChunk >= r.size {
		return
	}
	c := &chunk{done: make(chan struct{})}
	r.chunks[idx] = c
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(c.done)
		select {
		case r.sem <- struct{}{}:
		case <-r.ctx.Done():
			c.err = r.ctx.Err()
			return
		}
		defer func() { <-r.sem }()
		off := idx * readChunk
		buf := make([]byte, min(readChunk, r.size-off))
		n, err := r.ob.readRange(r.ctx, r.bucket, r.key, r.etag, buf, off)
		c.data, c.err = buf[:n], err
	}()
}

// readAt fills p from off and returns the bytes read (short at the end).
func (r *remoteReader) readAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off >= r.size {
		return 0, nil
	}
	if rest := r.size - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	r.mu.Lock()
	seq := off == r.next || (r.window > 0 && off > r.next-readChunk && off < r.next+int64(r.window)*readChunk)
	if off == 0 && r.next == 0 {
		seq = true
	}
	r.next = off + int64(len(p))
	if !seq {
		r.window = 0
		for idx := range r.chunks {
			delete(r.chunks, idx)
		}
		r.mu.Unlock()
		return r.ob.readRange(ctx, r.bucket, r.key, r.etag, p, off)
	}
	if r.window == 0 {
		r.window = 1
	} else if r.window < r.maxWindow {
		r.window = min(r.window*2, r.maxWindow)
	}
	first := off / readChunk
	last := (off + int64(len(p)) - 1) / readChunk
	for idx := range r.chunks {
		if idx < first-1 {
			delete(r.chunks, idx)
		}
	}
	for idx := first; idx <= last+int64(r.window); idx++ {
		r.startLocked(idx)
	}
	need := make([]*chunk, 0, last-first+1)
	for idx := first; idx <= last; idx++ {
		need = append(need, r.chunks[idx])
	}
	r.mu.Unlock()

	n := 0
	for i, c := range need {
		select {
		case <-c.done:
		case <-ctx.Done():
			return n, ctx.Err()
		}
		if c.err != nil {
			r.mu.Lock()
			if r.chunks[first+int64(i)] == c {
				delete(r.chunks, first+int64(i))
			}
			r.mu.Unlock()
			return n, c.err
		}
		cstart := (first + int64(i)) * readChunk
		from := off + int64(n) - cstart
		if from >= int64(len(c.data)) {
			break
		}
		n += copy(p[n:], c.data[from:])
	}
	return n, nil
}

// close stops the read-ahead and waits for its goroutines.
func (r *remoteReader) close() {
	r.cancel()
	r.wg.Wait()
}
