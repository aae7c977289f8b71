package integration

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// floodConn is one connection of a flood: it never sends a byte.
type floodConn struct {
	banner bool          // the server sent its SSH version (it held the connection)
	closed time.Duration // from the dial to the server's close
}

// flood is a set of connections that never send a byte.
type flood struct {
	conns   []*floodConn
	dialed  time.Duration // time to dial them all
	failed  atomic.Int64  // dials that failed
	wg      sync.WaitGroup
	mu      sync.Mutex
	sockets []net.Conn
}

// startFlood dials n connections to addr from the local address src (a
// loopback address), parallel at a time, and watches each until the
// server closes it (bounded by 2 minutes). Cleanup closes them all.
func startFlood(t testing.TB, addr, src string, n, parallel int) *flood {
	t.Helper()
	f := &flood{conns: make([]*floodConn, n)}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	next := atomic.Int64{}
	start := time.Now()
	var dials sync.WaitGroup
	for range parallel {
		dials.Add(1)
		go func() {
			defer dials.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				fc := &floodConn{}
				f.conns[i] = fc
				c, err := d.Dial("tcp", addr)
				if err != nil {
					f.failed.Add(1)
					fc.closed = -1
					continue
				}
				f.mu.Lock()
				f.sockets = append(f.sockets, c)
				f.mu.Unlock()
				f.wg.Add(1)
				go func() {
					defer f.wg.Done()
					began := time.Now()
					c.SetReadDeadline(began.Add(2 * time.Minute))
					var got bytes.Buffer
					io.Copy(&got, c) // until the server closes (or resets)
					fc.banner = strings.HasPrefix(got.String(), "SSH-")
					fc.closed = time.Since(began)
				}()
			}
		}()
	}
	dials.Wait()
	f.dialed = time.Since(start)
	t.Cleanup(f.close)
	return f
}

// wait waits until the server closed every connection, or timeout.
func (f *flood) wait(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// close closes the client side of every connection.
func (f *flood) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.sockets {
		c.Close()
	}
	f.sockets = nil
}

// stats returns how many connections the server held (sent its banner)
// and dropped, and the longest and median time to close of each kind.
func (f *flood) stats() (held, dropped int, heldMin, heldMax, dropMedian, dropMax time.Duration) {
	var h, d []time.Duration
	for _, c := range f.conns {
		switch {
		case c == nil || c.closed < 0:
		case c.banner:
			h = append(h, c.closed)
		default:
			d = append(d, c.closed)
		}
	}
	slices.Sort(h)
	slices.Sort(d)
	if len(h) > 0 {
		heldMin, heldMax = h[0], h[len(h)-1]
	}
	if len(d) > 0 {
		dropMedian, dropMax = d[len(d)/2], d[len(d)-1]
	}
	return len(h), len(d), heldMin, heldMax, dropMedian, dropMax
}

// daemonFDs counts the daemon's open file descriptors.
func daemonFDs(t testing.TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("daemon fds: %v", err)
	}
	return len(ents)
}

// fdSampler records the daemon's peak fd count until stopped.
func fdSampler(t testing.TB, pid int) (stop func() int) {
	var peak atomic.Int64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil && int64(len(ents)) > peak.Load() {
				peak.Store(int64(len(ents)))
			}
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return func() int {
		close(done)
		<-finished
		return int(peak.Load())
	}
}

// uploadTimed logs in as user from 127.0.0.1 and uploads 1 MiB, returning
// how long the whole took.
func uploadTimed(g *gateway, user, tok, name string) (time.Duration, error) {
	start := time.Now()
	c, err := g.login(user, tok)
	if err != nil {
		return time.Since(start), fmt.Errorf("login: %w", err)
	}
	defer c.Close()
	sc, err := newSFTPClient(c)
	if err != nil {
		return time.Since(start), fmt.Errorf("sftp: %w", err)
	}
	defer sc.Close()
	f, err := sc.Create("/" + personalWS + "/" + name)
	if err != nil {
		return time.Since(start), err
	}
	if _, err := f.ReadFrom(prng(7, mib)); err != nil {
		f.Close()
		return time.Since(start), err
	}
	if err := f.Close(); err != nil {
		return time.Since(start), err
	}
	return time.Since(start), nil
}

// TestGatewayPreauthFlood: thousands of connections that never send a
// byte, against a daemon limited to 1024 file descriptors. From one
// address (127.0.0.2), at most maxStartupsPerSource are held, the rest
// dropped at once, and a user from 127.0.0.1 still logs in and uploads
// within 5 s; the held ones are closed at loginGraceTime. From eight
// addresses, at most maxStartups' full are held.
func TestGatewayPreauthFlood(t *testing.T) {
	const (
		perSource = 32
		start     = 40
		full      = 80
		grace     = 4 * time.Second
		floodN    = 3000
	)
	g := startGateway(t, gwOptions{nofile: 1024, extra: map[string]any{
		"maxStartups":          fmt.Sprintf("%d:30:%d", start, full),
		"maxStartupsPerSource": perSource,
		"loginGraceTime":       grace.String(),
	}})
	tok := g.addUser("alice", personalWS)
	if _, err := uploadTimed(g, "alice", tok, "warmup.bin"); err != nil {
		t.Fatalf("upload before the flood: %v", err)
	}
	pid := g.pid()
	rss0, fd0 := procStatusKiB(t, pid, "VmRSS"), daemonFDs(t, pid)

	// One address.
	peak := fdSampler(t, pid)
	f := startFlood(t, g.addr, "127.0.0.2", floodN, 64)
	rss1, fd1 := procStatusKiB(t, pid, "VmRSS"), daemonFDs(t, pid)
	took, err := uploadTimed(g, "alice", tok, "during.bin")
	if err != nil {
		t.Errorf("login and upload from 127.0.0.1 during the flood: %v", err)
	} else if took > 5*time.Second {
		t.Errorf("login and upload during the flood: got %v, want < 5s", took)
	}
	if !f.wait(grace + 30*time.Second) {
		t.Fatalf("flood connections still open %v after the flood", grace+30*time.Second)
	}
	peak1 := peak()
	held, dropped, hMin, hMax, dMed, dMax := f.stats()
	t.Logf("one address: %d connections dialed in %v (%d dials failed): %d held (closed after %v to %v), %d dropped (closed after %v median, %v max); login+upload from 127.0.0.1 took %v",
		floodN, f.dialed.Round(time.Millisecond), f.failed.Load(), held, hMin.Round(time.Millisecond), hMax.Round(time.Millisecond),
		dropped, dMed.Round(time.Millisecond), dMax.Round(time.Millisecond), took.Round(time.Millisecond))
	t.Logf("daemon: before %d fds, RSS %.1f MiB; during %d fds (peak %d), RSS %.1f MiB", fd0, float64(rss0)/1024, fd1, peak1, float64(rss1)/1024)
	if f.failed.Load() > 0 {
		t.Errorf("%d dials failed, want none (the daemon must keep accepting)", f.failed.Load())
	}
	// Slots are given back only at loginGraceTime: a flood that took d to
	// dial gets at most perSource per grace period started.
	if maxHeld := perSource * (1 + int(f.dialed/grace)); held > maxHeld || held == 0 {
		t.Errorf("held connections: got %d, want 1 to %d", held, maxHeld)
	}
	if hMin < grace-time.Second || hMax > grace+10*time.Second {
		t.Errorf("held connections closed after %v to %v, want about loginGraceTime %v", hMin, hMax, grace)
	}
	if dMax >= grace-time.Second {
		t.Errorf("dropped connections: the slowest was closed after %v, want at once (well under loginGraceTime %v)", dMax, grace)
	}
	if peak1 > fd0+perSource+20 {
		t.Errorf("daemon fds during the flood: peak %d, want at most %d + %d + a few", peak1, fd0, perSource)
	}
	if !strings.Contains(g.logs(), "maxStartupsPerSource") {
		t.Errorf("the log does not report connections dropped by maxStartupsPerSource")
	}

	// Eight addresses: the total bound.
	peak = fdSampler(t, pid)
	var floods []*flood
	var fw sync.WaitGroup
	var fmu sync.Mutex
	for i := range 8 {
		fw.Add(1)
		go func() {
			defer fw.Done()
			fl := startFlood(t, g.addr, fmt.Sprintf("127.0.0.%d", 3+i), 150, 8)
			fmu.Lock()
			floods = append(floods, fl)
			fmu.Unlock()
		}()
	}
	fw.Wait()
	for _, fl := range floods {
		if !fl.wait(grace + 30*time.Second) {
			t.Fatalf("flood connections still open %v after the flood", grace+30*time.Second)
		}
	}
	peak2 := peak()
	held = 0
	for _, fl := range floods {
		h, _, _, _, _, _ := fl.stats()
		held += h
	}
	t.Logf("eight addresses: 1200 connections: %d held in all, daemon fds peak %d", held, peak2)
	if peak2 > fd0+full+20 {
		t.Errorf("daemon fds during the flood from eight addresses: peak %d, want at most %d + %d + a few", peak2, fd0, full)
	}
	logs := g.logs()
	if !strings.Contains(logs, "maxStartups full") && !strings.Contains(logs, "maxStartups random early drop") {
		t.Errorf("the log does not report connections dropped by maxStartups")
	}

	rss2, fd2 := procStatusKiB(t, pid, "VmRSS"), daemonFDs(t, pid)
	t.Logf("daemon after: %d fds, RSS %.1f MiB", fd2, float64(rss2)/1024)
	if took, err := uploadTimed(g, "alice", tok, "after.bin"); err != nil {
		t.Errorf("upload after the flood: %v (%v)", err, took)
	}
	if fd2 > fd0+5 {
		t.Errorf("daemon fds after the flood: got %d, want about %d as before", fd2, fd0)
	}
}
