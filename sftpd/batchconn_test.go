package sftpd

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// Many small writes arrive whole and in order, the last ones sent by
// Close; reads through the buffer see what the peer sent.
func TestBatchConnOrderAndClose(t *testing.T) {
	peer, nc := tcpPair(t)
	bc := newBatchConn(nc, 0, nil)
	bc.startBatching()
	var want bytes.Buffer
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	for i := range 5000 {
		p := bytes.Repeat([]byte{byte(i)}, 1+i%700)
		want.Write(p)
		if _, err := bc.Write(p); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if _, err := peer.Write([]byte("from the peer")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(bc, buf); err != nil || string(buf) != "from" {
		t.Fatalf("read: %q, %v", buf, err)
	}
	if err := bc.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, want.Bytes()) {
			t.Fatalf("peer got %d bytes, want the %d written, in order", len(b), want.Len())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("peer never saw the end of the stream")
	}
	if _, err := bc.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v, want net.ErrClosed", err)
	}
}

// Once the socket is gone, a write fails (maybe one later: writes are
// queued) and Close returns without waiting.
func TestBatchConnSendError(t *testing.T) {
	_, nc := tcpPair(t)
	bc := newBatchConn(nc, 0, nil)
	bc.startBatching()
	nc.Close() // as the idle watcher and Shutdown do, under the SSH layer
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = bc.Write([]byte("x"))
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		t.Fatal("writes on a closed socket kept succeeding")
	}
	done := make(chan struct{})
	go func() { bc.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(batchCloseWait + 5*time.Second):
		t.Fatal("Close hung after a send error")
	}
}

// A peer that stops reading makes a blocked write fail after the stall
// timeout and closes the connection; one that reads slowly, with pauses
// shorter than the timeout, is served.
func TestBatchConnWriteStall(t *testing.T) {
	const stall = 500 * time.Millisecond
	t.Run("stopped", func(t *testing.T) {
		peer, nc := tcpPair(t)
		stalled := make(chan struct{})
		bc := newBatchConn(nc, stall, func() { close(stalled) })
		bc.startBatching()
		defer bc.Close()
		start := time.Now()
		chunk := make([]byte, 32<<10)
		var err error
		for i := 0; i < 100000 && err == nil; i++ { // 3 GiB at most: far more than the socket buffers
			_, err = bc.Write(chunk)
		}
		took := time.Since(start)
		if !errors.Is(err, errWriteStalled) {
			t.Fatalf("got %v, want errWriteStalled", err)
		}
		select {
		case <-stalled:
		default:
			t.Errorf("onStall not called")
		}
		t.Logf("peer not reading: write failed after %v", took.Round(time.Millisecond))
		if took > stall+10*time.Second {
			t.Errorf("write failed after %v, want about %v", took, stall)
		}
		// The socket is closed: the peer sees the end.
		peer.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, peer); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("peer read: got %v, want the end of the stream", err)
		}
	})
	t.Run("slow", func(t *testing.T) {
		peer, nc := tcpPair(t)
		bc := newBatchConn(nc, stall, nil)
		bc.startBatching()
		defer bc.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 16<<10)
			for {
				time.Sleep(stall / 5)
				if _, err := peer.Read(buf); err != nil {
					return
				}
			}
		}()
		chunk := make([]byte, 32<<10)
		deadline := time.Now().Add(6 * stall)
		n := 0
		for time.Now().Before(deadline) {
			if _, err := bc.Write(chunk); err != nil {
				t.Fatalf("write to a slow reader failed after %d bytes: %v", n, err)
			}
			n += len(chunk)
		}
		t.Logf("slow peer: %d KiB queued or sent in %v without a stall", n>>10, 6*stall)
		peer.Close()
		<-done
	})
}
