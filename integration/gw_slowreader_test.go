package integration

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/crypto/ssh"
)

// throttledConn is a client connection whose reads can be paused (the
// client stops reading the socket) or slowed down.
type throttledConn struct {
	net.Conn

	// mu guards the fields below.
	mu      sync.Mutex
	paused  bool
	resume  chan struct{} // closed when paused ends
	perRead int           // bytes per Read, 0 for any
	delay   time.Duration // before each Read
}

func (c *throttledConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	paused, resume, per, delay := c.paused, c.resume, c.perRead, c.delay
	c.mu.Unlock()
	if paused {
		<-resume
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	if per > 0 && len(p) > per {
		p = p[:per]
	}
	return c.Conn.Read(p)
}

// pause stops reading until unpause.
func (c *throttledConn) pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.paused {
		c.paused, c.resume = true, make(chan struct{})
	}
}

func (c *throttledConn) unpause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.paused {
		c.paused = false
		close(c.resume)
	}
}

// throttle makes every Read wait delay and return at most per bytes.
func (c *throttledConn) throttle(per int, delay time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.perRead, c.delay = per, delay
}

// dialThrottled logs in over a throttledConn whose socket has a small
// receive buffer (16 KiB, fixed: no autotuning), so that the server's
// writes block as soon as the client stops reading.
func (g *gateway) dialThrottled(t *testing.T, user, tok string) (*ssh.Client, *throttledConn) {
	t.Helper()
	g.secret(tok)
	d := net.Dialer{Timeout: dialTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	nc, err := d.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := &throttledConn{Conn: nc}
	t.Cleanup(func() { tc.unpause(); nc.Close() })
	nc.SetDeadline(time.Now().Add(dialTimeout))
	c, chans, reqs, err := ssh.NewClientConn(tc, g.addr, &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.Password(tok)},
		HostKeyCallback: ssh.FixedHostKey(g.hostKey), Timeout: dialTimeout,
	})
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	nc.SetDeadline(time.Time{})
	client := ssh.NewClient(c, chans, reqs)
	t.Cleanup(func() { client.Close() })
	return client, tc
}

// TestGatewaySlowReader: a client that stops reading in the middle of a
// download is disconnected within idleTimeout (and a margin), even though
// the server is blocked writing to it; a client that reads slowly but
// steadily, for longer than idleTimeout, is not.
func TestGatewaySlowReader(t *testing.T) {
	const idle = 3 * time.Second
	g := startGateway(t, gwOptions{idleTimeout: idle.String()})
	tok := g.addUser("alice", personalWS)
	const size = 64 * mib
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := g.minio.Client.PutObject(ctx, g.personalBucket, personalKey("alice", "big.bin"), prng(11, size), size, minio.PutObjectOptions{}); err != nil {
		t.Fatalf("minio put: %v", err)
	}

	t.Run("stopped", func(t *testing.T) {
		c, tc := g.dialThrottled(t, "alice", tok)
		sc := newSFTP(t, c)
		f, err := sc.Open("/" + personalWS + "/big.bin")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { tc.unpause(); f.Close() }()
		readErr := make(chan error, 1)
		read := make(chan int64, 1)
		go func() {
			var n int64
			buf := make([]byte, 256<<10)
			for {
				m, err := f.Read(buf)
				n += int64(m)
				if n >= 4*mib {
					select {
					case read <- n:
					default:
					}
				}
				if err != nil {
					readErr <- err
					return
				}
			}
		}()
		select {
		case <-read:
		case err := <-readErr:
			t.Fatalf("download failed before 4 MiB: %v", err)
		case <-time.After(time.Minute):
			t.Fatal("no 4 MiB downloaded in a minute")
		}
		logsBefore := len(g.logs())
		tc.pause()
		paused := time.Now()
		var closedAfter time.Duration
		ok := waitFor(idle+20*time.Second, 50*time.Millisecond, func() bool {
			if strings.Contains(g.logs()[logsBefore:], "client stopped reading, closing connection") {
				closedAfter = time.Since(paused)
				return true
			}
			return false
		})
		if !ok {
			t.Fatalf("the daemon did not close the connection of a client that stopped reading within %v:\n%s", idle+20*time.Second, tail(g.logs()[logsBefore:], 20))
		}
		t.Logf("client stopped reading: disconnected after %v (idleTimeout %v)", closedAfter.Round(time.Millisecond), idle)
		// The session's idle timeout closes its channel after idle; a
		// client that does not read never answers, and the connection is
		// closed a grace (min(idle, 10s)) later, or after idle if a socket
		// write was blocked (its deadline).
		if closedAfter < idle-500*time.Millisecond || closedAfter > 2*idle+10*time.Second {
			t.Errorf("disconnected after %v, want idleTimeout %v (+ a margin)", closedAfter, idle)
		}
		tc.unpause()
		select {
		case err := <-readErr:
			if err == io.EOF || err == nil {
				t.Errorf("download of a closed connection: got %v, want an error", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("the client's download did not fail after the disconnection")
		}
	})

	t.Run("slow but steady", func(t *testing.T) {
		c, tc := g.dialThrottled(t, "alice", tok)
		sc := newSFTP(t, c)
		f, err := sc.Open("/" + personalWS + "/big.bin")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		logsBefore := len(g.logs())
		tc.throttle(16<<10, 200*time.Millisecond) // ~80 KiB/s: the server's writes block, and progress
		var n int64
		buf := make([]byte, 32<<10)
		start := time.Now()
		for time.Since(start) < 2*idle+time.Second { // past idle + the close grace
			m, err := f.Read(buf)
			n += int64(m)
			if err != nil {
				t.Fatalf("slow download failed after %v, %d bytes: %v", time.Since(start), n, err)
			}
		}
		t.Logf("slow reader: %d KiB in %v, not disconnected", n>>10, time.Since(start).Round(time.Millisecond))
		if strings.Contains(g.logs()[logsBefore:], "client stopped reading") {
			t.Errorf("a slow but steady reader was disconnected")
		}
	})
}
