package sftpd

import (
	"bytes"
	"errors"
	"io"
	"net"
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
