package sftpd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"golang.org/x/crypto/ssh"
)

func TestParseProxyMode(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    ProxyMode
		wantErr bool
	}{
		{"off", ProxyOff, false},
		{"optional", ProxyOptional, false},
		{"required", ProxyRequired, false},
		{"", ProxyOff, true},
		{"on", ProxyOff, true},
		{"Required", ProxyOff, true},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseProxyMode(tt.in)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("ParseProxyMode(%q): got %v, %v, want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
			if err == nil && got.String() != tt.in {
				t.Errorf("String: got %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestNewProxyConfig(t *testing.T) {
	base := Config{HostKeys: []ssh.Signer{testHostKey(t)}, Auth: &fakeAuth{}, Mounts: &fakeMounter{}}
	for _, tt := range []struct {
		name    string
		mode    ProxyMode
		trusted []netip.Prefix
		wantErr string
	}{
		{"off", ProxyOff, nil, ""},
		{"required without trusted", ProxyRequired, nil, "ProxyTrusted"},
		{"optional without trusted", ProxyOptional, nil, "ProxyTrusted"},
		{"unknown mode", ProxyMode(7), []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, "ProxyProtocol"},
		{"required", ProxyRequired, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			cfg.ProxyProtocol, cfg.ProxyTrusted = tt.mode, tt.trusted
			_, err := New(cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New: got %v, want no error", err)
			case tt.wantErr != "" && (!errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("New: got %v, want ErrBadConfig naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestRefusalLog(t *testing.T) {
	r := newRefusalLog()
	a := netip.MustParseAddr("192.0.2.1")
	t0 := time.Unix(1_000_000, 0)
	if _, log := r.note(a, t0); !log {
		t.Errorf("first refusal: got not logged, want logged")
	}
	if _, log := r.note(a, t0.Add(59*time.Second)); log {
		t.Errorf("second refusal within the minute: got logged, want not")
	}
	if _, log := r.note(a, t0.Add(61*time.Second)); !log {
		t.Errorf("refusal after the minute: got not logged, want logged")
	}
	// The map is bounded: past proxyRefusalAddrs fresh addresses, new
	// ones are counted, and the count rides on the next line.
	t1 := t0.Add(2 * time.Minute)
	for i := range proxyRefusalAddrs - 1 {
		b := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		if _, log := r.note(b, t1); !log {
			t.Fatalf("address %d: got not logged, want logged", i)
		}
	}
	over := netip.MustParseAddr("198.51.100.1")
	for range 3 {
		if _, log := r.note(over, t1); log {
			t.Errorf("refusal with the map full: got logged, want counted")
		}
	}
	if got := len(r.last); got > proxyRefusalAddrs {
		t.Errorf("addresses held: got %d, want at most %d", got, proxyRefusalAddrs)
	}
	if n, log := r.note(over, t1.Add(time.Minute)); !log || n != 3 {
		t.Errorf("refusal once entries expired: got logged %v with %d unlogged, want logged with 3", log, n)
	}
}

func TestPreauthGateAssign(t *testing.T) {
	g := newPreauthGate(MaxStartups{Start: 10, Rate: 100, Full: 10}, 2)
	src := netip.MustParseAddr("192.0.2.1")
	for i := range 3 {
		if _, ok := g.admit(netip.Addr{}); !ok {
			t.Fatalf("admit %d unassigned: refused", i)
		}
	}
	if !g.assign(src) || !g.assign(src) {
		t.Fatalf("assign: refused below perSource")
	}
	if g.assign(src) {
		t.Errorf("third assign to one source: got accepted, want refused (perSource 2)")
	}
	g.release(src)
	g.release(src)
	g.release(netip.Addr{})
	if n, left := g.unauthenticated(), len(g.bySource); n != 0 || left != 0 {
		t.Errorf("after releases: got %d held, %d sources, want 0, 0", n, left)
	}
}

// sshWithHeader connects to addr, sends header, then logs in as alice.
func sshWithHeader(t *testing.T, addr string, header []byte) (*ssh.Client, error) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Write(header); err != nil {
		nc.Close()
		return nil, err
	}
	c, chans, reqs, err := ssh.NewClientConn(nc, addr, clientConfig(testUser, ssh.Password(testToken)))
	if err != nil {
		nc.Close()
		return nil, err
	}
	cl := ssh.NewClient(c, chans, reqs)
	t.Cleanup(func() { cl.Close() })
	return cl, nil
}

// TestProxySlowBalancer: trusted peers that send no header are waited for
// in their own goroutines, within HandshakeTimeout, counted in the total
// only: they neither hold up the accept loop nor use the per-source slots
// of the balancer's address. A client is counted under its own address.
func TestProxySlowBalancer(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.ProxyProtocol = ProxyRequired
		c.ProxyTrusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.HandshakeTimeout = 4 * time.Second
		c.MaxStartupsPerSource = 2
	})
	var silent []net.Conn
	for range 5 {
		nc, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		silent = append(silent, nc)
	}
	start := time.Now()
	cl, err := sshWithHeader(t, ts.addr, []byte("PROXY TCP4 192.0.2.10 127.0.0.1 5000 2022\r\n"))
	if err != nil {
		t.Fatalf("login behind 5 silent balancer connections: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("login took %v, want well under the 4s the silent ones may wait", d)
	}
	if _, err := cl.NewSession(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the session", 5*time.Second, func() bool { return len(ts.srv.Sessions()) == 1 })
	if got := ts.srv.Sessions()[0].Remote; got != "192.0.2.10:5000" {
		t.Errorf("session remote: got %q, want 192.0.2.10:5000", got)
	}
	// The silent ones are closed once HandshakeTimeout has passed, with
	// nothing sent.
	for i, nc := range silent {
		nc.SetDeadline(time.Now().Add(15 * time.Second))
		if got, err := io.ReadAll(nc); err != nil || len(got) != 0 {
			t.Errorf("silent connection %d: got %q, %v, want closed with nothing sent", i, got, err)
		}
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("silent connections closed after %v, want about 4s", d)
	}
	if !strings.Contains(ts.log.String(), "loginGraceTime passed before the PROXY header") {
		t.Errorf("log: got no line about the missing header, want one per silent connection:\n%s", ts.log)
	}
}

// TestProxyPerSourceByClient: the pre-auth per-source bound counts the
// client addresses the headers give.
func TestProxyPerSourceByClient(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.ProxyProtocol = ProxyRequired
		c.ProxyTrusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.MaxStartupsPerSource = 2
	})
	header := func(ip string) []byte {
		return fmt.Appendf(nil, "PROXY TCP4 %s 127.0.0.1 5000 2022\r\n", ip)
	}
	// Two connections from 192.0.2.5 that stop after the header hold its
	// two slots.
	for range 2 {
		nc, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.Write(header("192.0.2.5"))
	}
	waitFor(t, "the two held slots", 5*time.Second, func() bool {
		ts.srv.gate.mu.Lock()
		defer ts.srv.gate.mu.Unlock()
		return ts.srv.gate.bySource[netip.MustParseAddr("192.0.2.5")] == 2
	})
	if _, err := sshWithHeader(t, ts.addr, header("192.0.2.5")); err == nil {
		t.Errorf("third connection from 192.0.2.5: got logged in, want dropped (maxStartupsPerSource 2)")
	}
	if _, err := sshWithHeader(t, ts.addr, header("192.0.2.6")); err != nil {
		t.Errorf("connection from 192.0.2.6 while 192.0.2.5 is full: %v", err)
	}
}

// FuzzReadProxyHeader: whatever the bytes, no panic; without a header
// the bytes read are given back from the first; with one, bytes that
// follow it.
func FuzzReadProxyHeader(f *testing.F) {
	f.Add([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
	f.Add([]byte("PROXY TCP4 192.0.2.1 127.0.0.1 5000 22\r\nSSH-2.0-x\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("PROXY TCP6 ::1 ::1 1 2\r\n"))
	src := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 5000}
	dst := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 22}
	v2, _ := proxyproto.HeaderProxyFromAddrs(2, src, dst).Format()
	f.Add(append(v2, "SSH-2.0-x\r\n"...))
	f.Add(v2[:14])
	f.Fuzz(func(t *testing.T, in []byte) {
		h, rest, err := readProxyHeader(bytes.NewReader(in))
		if err != nil {
			return
		}
		switch {
		case h == nil && !bytes.HasPrefix(in, rest):
			t.Errorf("no header: got %.40q back, want the first bytes of %.40q", rest, in)
		case h == nil && len(in) <= proxyHeaderBuffer && len(rest) != len(in):
			t.Errorf("no header: got %d bytes back, want all %d", len(rest), len(in))
		case h != nil && (len(rest) >= len(in) || !bytes.Contains(in[1:], rest)):
			t.Errorf("header: got %.40q after it, want bytes that follow it in %.40q", rest, in)
		}
	})
}
