package sftpd

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Buffer sizes of the batching layers.
const (
	batchReadSize   = 64 << 10  // bytes read from the socket at once, at most
	batchWriteQueue = 128 << 10 // bytes queued before Write waits
	// batchCloseWait bounds how long closing a connection waits for
	// queued bytes to reach a peer that does not read.
	batchCloseWait = 5 * time.Second
)

// batchWriter hands what is written to one goroutine that writes
// everything queued meanwhile to w in a single call. It sits where a
// writer makes many small writes that are cheaper together (the SSH
// transport flushes every packet with its own system call). Under load
// the writes merge; when idle, latency is that of a goroutine switch.
//
// Write returns once the bytes are queued; a failed write to w is
// returned by the next Write. Close waits until the queue is written.
type batchWriter struct {
	w io.Writer

	// mu guards the fields below; cond waits on it.
	mu      sync.Mutex
	cond    sync.Cond // the queue changed: bytes added or written, or closing
	queue   []byte    // bytes to write
	spare   []byte    // the other buffer, reused
	err     error     // first write error, sticky
	closing bool
	done    chan struct{} // closed when the writing goroutine has returned
}

func newBatchWriter(w io.Writer) *batchWriter {
	b := &batchWriter{w: w, done: make(chan struct{})}
	b.cond.L = &b.mu
	go b.run()
	return b
}

// Write queues p, waiting while the queue is full.
func (b *batchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.err == nil && !b.closing && len(b.queue) > 0 && len(b.queue)+len(p) > batchWriteQueue {
		b.cond.Wait()
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.closing {
		return 0, net.ErrClosed
	}
	b.queue = append(b.queue, p...)
	b.cond.Broadcast()
	return len(p), nil
}

// run writes the queue to w until Close or a write error.
func (b *batchWriter) run() {
	defer close(b.done)
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		for len(b.queue) == 0 && !b.closing {
			b.cond.Wait()
		}
		if len(b.queue) == 0 {
			return
		}
		buf := b.queue
		b.queue = b.spare[:0]
		b.cond.Broadcast()
		b.mu.Unlock()
		_, err := b.w.Write(buf)
		b.mu.Lock()
		b.spare = buf[:0]
		if err != nil {
			b.err = err
			b.queue = nil
			b.cond.Broadcast()
			return
		}
	}
}

// Close lets the queue drain, stops the writing goroutine and returns
// the write error, if any. Later Writes fail. It does not close w.
func (b *batchWriter) Close() error {
	b.mu.Lock()
	b.closing = true
	b.cond.Broadcast()
	b.mu.Unlock()
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// errWriteStalled is the error of a write that made no progress for the
// stall timeout.
var errWriteStalled = errors.New("sftpd: peer stopped reading: write stalled")

// batchConn is the TCP connection as the SSH transport sees it.
//
// Until startBatching is called (once the user is authenticated), reads
// and writes go straight to the socket: a connection that has not logged
// in costs no buffer and no goroutine here.
//
// Then golang.org/x/crypto/ssh reads each packet in two or three small
// reads, here served from a buffer, and writes each packet (at most 32
// KiB) with its own flush, here merged by a batchWriter. A bulk transfer
// costs a few system calls per MiB instead of about a hundred; measured on
// a 1 GiB transfer, the daemon used 0.3 to 0.5 s less CPU.
//
// Writes of the batching stage carry a deadline of stall (if positive)
// that is pushed back whenever bytes move: a peer that reads, however
// slowly, is served; one that stops reading for stall has the connection
// closed (onStall is called first).
type batchConn struct {
	net.Conn
	stall   time.Duration
	onStall func()

	batching atomic.Bool
	// r is the read buffer, made by the first Read after startBatching;
	// only the reading goroutine touches it.
	r *bufio.Reader

	// wmu guards w.
	wmu sync.Mutex
	w   *batchWriter

	closeBy atomic.Int64 // unix nanos: the close's write deadline, once closing

	closeOnce sync.Once
	closeErr  error
}

func newBatchConn(nc net.Conn, stall time.Duration, onStall func()) *batchConn {
	return &batchConn{Conn: nc, stall: stall, onStall: onStall}
}

// startBatching switches the connection to buffered reads and batched,
// stall-bounded writes.
func (c *batchConn) startBatching() { c.batching.Store(true) }

// Read reads from the buffer, refilled with one read of the socket (or
// from the socket itself before startBatching).
func (c *batchConn) Read(p []byte) (int, error) {
	if c.r == nil {
		if !c.batching.Load() {
			return c.Conn.Read(p)
		}
		c.r = bufio.NewReaderSize(c.Conn, batchReadSize)
	}
	return c.r.Read(p)
}

// Write queues p for sending (or writes it before startBatching).
func (c *batchConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	w := c.w
	if w == nil && c.batching.Load() && c.closeBy.Load() == 0 {
		w = newBatchWriter(writerFunc(c.writeSocket))
		c.w = w
	}
	c.wmu.Unlock()
	if w == nil {
		return c.Conn.Write(p)
	}
	return w.Write(p)
}

// writerFunc turns a function into an io.Writer.
type writerFunc func(p []byte) (int, error)

// Write calls f.
func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// writeSocket writes p to the socket, pushing the write deadline back by
// stall every time bytes moved: some of p was written, or the peer took
// some of what the socket had queued (the kernel wakes a blocked writer
// only once much of a large send buffer is free, so the queue is what
// shows a slow reader's progress). A write during which nothing moves for
// stall closes the connection.
func (c *batchConn) writeSocket(p []byte) (int, error) {
	written := 0
	for {
		queued, known := -1, false
		if by := c.closeBy.Load(); by != 0 {
			c.Conn.SetWriteDeadline(time.Unix(0, by))
		} else if c.stall > 0 {
			c.Conn.SetWriteDeadline(time.Now().Add(c.stall))
			queued, known = unsentBytes(c.Conn)
		}
		n, err := c.Conn.Write(p[written:])
		written += n
		if err == nil {
			return written, nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) || c.closeBy.Load() != 0 {
			return written, err
		}
		if n > 0 {
			continue // the peer reads, slowly: give it another period
		}
		if now, ok := unsentBytes(c.Conn); known && ok && now < queued {
			continue // the peer took queued bytes
		}
		if c.onStall != nil {
			c.onStall()
		}
		c.Conn.Close()
		return written, errWriteStalled
	}
}

// Close sends what is queued (for batchCloseWait at most), then closes
// the socket.
func (c *batchConn) Close() error {
	c.closeOnce.Do(func() {
		by := time.Now().Add(batchCloseWait)
		c.closeBy.Store(by.UnixNano())
		c.Conn.SetWriteDeadline(by)
		c.wmu.Lock()
		w := c.w
		c.wmu.Unlock()
		if w != nil {
			w.Close()
		}
		c.closeErr = c.Conn.Close()
	})
	return c.closeErr
}
