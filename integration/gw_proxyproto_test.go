package integration

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// The PROXY protocol (proxyProtocol, proxyTrusted) with HAProxy in front of
// the gateway, and the headers it refuses.

// proxyV1 is a PROXY v1 header for a client at src ("192.0.2.7:40000")
// connecting to dst.
func proxyV1(src string, dst string) []byte {
	sh, sp, _ := net.SplitHostPort(src)
	dh, dp, _ := net.SplitHostPort(dst)
	fam := "TCP4"
	if strings.Contains(sh, ":") {
		fam = "TCP6"
		if !strings.Contains(dh, ":") {
			dh = "::1" // one family per header
		}
	}
	return fmt.Appendf(nil, "PROXY %s %s %s %s %s\r\n", fam, sh, dh, sp, dp)
}

// proxyV2 is a PROXY v2 header for a client at src connecting to dst.
func proxyV2(t testing.TB, src, dst string) []byte {
	t.Helper()
	s, err := net.ResolveTCPAddr("tcp", src)
	if err != nil {
		t.Fatal(err)
	}
	d, err := net.ResolveTCPAddr("tcp", dst)
	if err != nil {
		t.Fatal(err)
	}
	if s.IP.To4() == nil && d.IP.To4() != nil {
		d.IP = net.IPv6loopback // one family per header
	}
	b, err := proxyproto.HeaderProxyFromAddrs(2, s, d).Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sessionFrom returns the session of user in `sessions --json`.
func (g *gateway) sessionFrom(user string) (opsSessionRow, bool) {
	for _, r := range g.sessionRows() {
		if r.User == user {
			return r, true
		}
	}
	return opsSessionRow{}, false
}

// TestGatewayProxyHAProxy runs a gateway with proxyProtocol "required"
// behind HAProxy (send-proxy-v2, health checks): logins from 127.0.0.2 and
// 127.0.0.3 show those addresses in `sessions` and in the audit log, a
// file goes up and down with its hash checked, and 20 wrong tokens from
// 127.0.0.2 lock that address out while 127.0.0.3 still logs in.
func TestGatewayProxyHAProxy(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{proxyProtocol: "required"})
	lb := balance(t, g)
	alice := g.addUser("alice", personalWS)
	bob := g.addUser("bob", personalWS)

	scA := g.mustSFTPVia(lb.Addr, "127.0.0.2", "alice", alice)
	g.mustSFTPVia(lb.Addr, "127.0.0.3", "bob", bob)

	t.Run("sessions and log show the client address", func(t *testing.T) {
		for user, ip := range map[string]string{"alice": "127.0.0.2", "bob": "127.0.0.3"} {
			row, ok := g.sessionFrom(user)
			if !ok || !strings.HasPrefix(row.Remote, ip+":") {
				t.Errorf("sessions: got %+v (found %v) for %s, want remote %s:port", row, ok, user, ip)
			}
			lines := g.logLines(`msg=login`, `result=ok`, `user=`+user)
			if len(lines) != 1 || !strings.Contains(lines[0], "remote="+ip+":") || !strings.Contains(lines[0], "via=127.0.0.1:") {
				t.Errorf("login lines of %s: got %q, want one with remote=%s:port via=127.0.0.1:port", user, lines, ip)
			}
		}
	})

	t.Run("upload and download through the balancer", func(t *testing.T) {
		const size = 48 << 20
		start := time.Now()
		f, err := scA.Create("/" + personalWS + "/big.bin")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, prng(13, size)); err != nil {
			t.Fatalf("upload: %v", err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		up := time.Since(start)
		want := prngSum(13, size)
		if sum, n, _ := objectSum(t, g.minio, g.personalBucket, personalKey("alice", "big.bin")); sum != want || n != size {
			t.Errorf("object: got %d bytes sha256 %s, want %d bytes %s", n, sum, size, want)
		}
		start = time.Now()
		r, err := scA.Open("/" + personalWS + "/big.bin")
		if err != nil {
			t.Fatal(err)
		}
		sum, n, err := sumOf(r)
		r.Close()
		if err != nil || sum != want || n != size {
			t.Errorf("download: got %d bytes sha256 %s, %v, want %d bytes %s", n, sum, err, size, want)
		}
		down := time.Since(start)
		t.Logf("48 MiB through HAProxy: up %v (%.0f MiB/s), down %v (%.0f MiB/s)",
			up.Round(time.Millisecond), 48/up.Seconds(), down.Round(time.Millisecond), 48/down.Seconds())
	})

	t.Run("20 wrong tokens lock the client address out", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 5 {
					wrong := randomToken(t)
					g.secret(wrong)
					c, err := g.dialFrom(lb.Addr, "127.0.0.2", fmt.Sprintf("nobody%d", w*5+i), ssh.Password(wrong))
					if err == nil {
						c.Close()
						errs <- errors.New("a wrong token was accepted")
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		carol := g.addUser("carol", personalWS)
		if c, err := g.dialFrom(lb.Addr, "127.0.0.2", "carol", ssh.Password(carol)); err == nil {
			c.Close()
			t.Errorf("carol from 127.0.0.2 after 20 failures from it: got logged in, want refused (address locked out)")
		}
		if lines := g.logLines(`msg=login`, `user=carol`, `remote=127.0.0.2:`, `result=refused`); len(lines) != 1 || !strings.Contains(lines[0], "rate") {
			t.Errorf("carol's refusal from 127.0.0.2: got %q, want one rate-limited refusal", lines)
		}
		c, err := g.dialFrom(lb.Addr, "127.0.0.3", "carol", ssh.Password(carol))
		if err != nil {
			t.Fatalf("carol from 127.0.0.3 while 127.0.0.2 is locked out: got %v, want logged in", err)
		}
		c.Close()
	})

	// The health checks (every 2 s: a LOCAL header, then a close after the
	// SSH version) are not logged; StartHAProxy's own probe (or two, if
	// the first timed out), a client connection from 127.0.0.1 that closes
	// after the version, is. The test lasts long enough for 3 checks.
	if lines := g.logLines("handshake failed", "remote=127.0.0.1:"); len(lines) > 2 {
		t.Errorf("handshake failures logged: got %d, want at most 2 (health checks must stay quiet): %q", len(lines), lines)
	}
	if lines := g.logLines("connection refused"); len(lines) != 0 {
		t.Errorf("refused connections behind the balancer: got %q, want none", lines)
	}
}

// TestGatewayProxyRefusals runs a gateway with proxyProtocol "required"
// trusting 127.0.0.1 and 127.0.0.4: a trusted peer's header (v1 or v2,
// IPv4 or IPv6 client) gives the session its address; a header from an
// untrusted peer, a malformed header or a trusted peer without one close
// the connection, each logged once per peer address however often it
// happens; an untrusted peer without a header is an ordinary client.
func TestGatewayProxyRefusals(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{proxyProtocol: "required", proxyTrusted: []string{"127.0.0.1", "127.0.0.4/32"}})
	tok := g.addUser("alice", personalWS)
	g.secret(tok)

	t.Run("trusted header gives the client address", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			src    string
			header func(src, dst string) []byte
		}{
			{"v1 IPv4", "192.0.2.7:40001", proxyV1},
			{"v1 IPv6", "[2001:db8::7]:40002", proxyV1},
			{"v2 IPv4", "198.51.100.9:40003", func(s, d string) []byte { return proxyV2(t, s, d) }},
			{"v2 IPv6", "[2001:db8::9]:40004", func(s, d string) []byte { return proxyV2(t, s, d) }},
		} {
			c := rawDial(t, g.addr, "127.0.0.1", dialTimeout)
			if _, err := c.Write(tc.header(tc.src, g.addr)); err != nil {
				t.Fatal(err)
			}
			cl, err := g.sshOn(c, "alice", ssh.Password(tok))
			if err != nil {
				t.Errorf("%s: login after the header: %v", tc.name, err)
				continue
			}
			sc := newSFTP(t, cl)
			row, ok := g.sessionFrom("alice")
			if !ok || row.Remote != tc.src {
				t.Errorf("%s: sessions: got %+v, want remote %s", tc.name, row, tc.src)
			}
			sc.Close()
			cl.Close()
			waitFor(10*time.Second, 50*time.Millisecond, func() bool { _, ok := g.sessionFrom("alice"); return !ok })
		}
	})

	// closedAfter sends data on a new connection from local and returns
	// what the gateway sent before closing it (an error if it did not
	// close it within 10 s).
	closedAfter := func(t *testing.T, local string, data []byte) (string, error) {
		c := rawDial(t, g.addr, local, 10*time.Second)
		if _, err := c.Write(data); err != nil {
			return "", err
		}
		got, err := io.ReadAll(c)
		return string(got), err
	}
	sshVersion := []byte("SSH-2.0-Go\r\n")

	t.Run("header from an untrusted peer", func(t *testing.T) {
		for i, h := range [][]byte{
			proxyV1("192.0.2.7:40001", g.addr),
			proxyV2(t, "192.0.2.7:40001", g.addr),
			proxyV1("192.0.2.7:40001", g.addr),
		} {
			got, err := closedAfter(t, "127.0.0.2", append(h, sshVersion...))
			// The gateway speaks first to an untrusted peer (clients that
			// wait for its version still work), then closes.
			if err != nil || got != "SSH-2.0-sftpgate\r\n" {
				t.Errorf("attempt %d: got %q, %v, want the version line then the close", i+1, got, err)
			}
		}
		// Without a header the same peer is an ordinary client.
		cl, err := g.dialFrom(g.addr, "127.0.0.2", "alice", ssh.Password(tok))
		if err != nil {
			t.Fatalf("login from 127.0.0.2 without a header: %v", err)
		}
		sc := newSFTP(t, cl)
		if row, ok := g.sessionFrom("alice"); !ok || !strings.HasPrefix(row.Remote, "127.0.0.2:") {
			t.Errorf("sessions: got %+v, want remote 127.0.0.2:port", row)
		}
		sc.Close()
		cl.Close()
	})

	t.Run("malformed header from a trusted peer", func(t *testing.T) {
		v2 := proxyV2(t, "192.0.2.7:40001", g.addr)
		v2[12] = 0x25 // an unknown command
		for i, h := range [][]byte{
			[]byte("PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n"),
			v2,
			[]byte("PROXY TCP5 192.0.2.7 127.0.0.1 40001 2022\r\n"),
		} {
			// Closed before the gateway says anything.
			if got, err := closedAfter(t, "127.0.0.1", append(h, sshVersion...)); err != nil || got != "" {
				t.Errorf("attempt %d: got %q, %v, want the connection closed with nothing sent", i+1, got, err)
			}
		}
	})

	t.Run("required header missing", func(t *testing.T) {
		for i := range 3 {
			if got, err := closedAfter(t, "127.0.0.4", sshVersion); err != nil || got != "" {
				t.Errorf("attempt %d: got %q, %v, want the connection closed with nothing sent", i+1, got, err)
			}
		}
		if c, err := g.dialFrom(g.addr, "127.0.0.4", "alice", ssh.Password(tok)); err == nil {
			c.Close()
			t.Errorf("login from trusted 127.0.0.4 without a header: got logged in, want refused")
		}
	})

	// One line per peer address and minute, whatever the count.
	for _, tc := range []struct{ remote, reason string }{
		{"remote=127.0.0.2:", "not in proxyTrusted"},
		{"remote=127.0.0.1:", "malformed PROXY header"},
		{"remote=127.0.0.4:", "no PROXY header"},
	} {
		if lines := g.logLines(`msg="connection refused"`, tc.remote); len(lines) != 1 || !strings.Contains(lines[0], tc.reason) {
			t.Errorf("refusals logged for %s: got %q, want one line saying %q", tc.remote, lines, tc.reason)
		}
	}
}

// TestGatewayProxyOptional runs a gateway with proxyProtocol "optional":
// its trusted peer logs in with or without a header.
func TestGatewayProxyOptional(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{proxyProtocol: "optional"})
	tok := g.addUser("alice", personalWS)
	g.secret(tok)

	cl, err := g.dialFrom(g.addr, "127.0.0.1", "alice", ssh.Password(tok))
	if err != nil {
		t.Fatalf("login from trusted 127.0.0.1 without a header: %v", err)
	}
	sc := newSFTP(t, cl)
	if row, ok := g.sessionFrom("alice"); !ok || !strings.HasPrefix(row.Remote, "127.0.0.1:") {
		t.Errorf("sessions without a header: got %+v, want remote 127.0.0.1:port", row)
	}
	sc.Close()
	cl.Close()
	waitFor(10*time.Second, 50*time.Millisecond, func() bool { _, ok := g.sessionFrom("alice"); return !ok })

	c := rawDial(t, g.addr, "127.0.0.1", dialTimeout)
	if _, err := c.Write(proxyV2(t, "192.0.2.77:4242", g.addr)); err != nil {
		t.Fatal(err)
	}
	cl, err = g.sshOn(c, "alice", ssh.Password(tok))
	if err != nil {
		t.Fatalf("login with a header: %v", err)
	}
	sc = newSFTP(t, cl)
	if row, ok := g.sessionFrom("alice"); !ok || row.Remote != "192.0.2.77:4242" {
		t.Errorf("sessions with a header: got %+v, want remote 192.0.2.77:4242", row)
	}
	sc.Close()
	cl.Close()
}

// TestGatewayClusterHAProxy runs two nodes (same host key, same buckets)
// behind HAProxy. Until the identity store is shared, alice exists on
// each node with the same SSH key. Her sessions spread over both nodes,
// each node's `sessions` shows the client address, a file written through
// one session reads back through every other; when a node is killed,
// logins through the balancer go on, and the node rejoins once restarted.
func TestGatewayClusterHAProxy(t *testing.T) {
	t.Parallel()
	gws := startGateways(t, 2, gwOptions{proxyProtocol: "required"})
	lb := balance(t, gws...)
	keyFile := sshKeygen(t, t.TempDir(), "id_alice", "-t", "ed25519")
	for _, g := range gws {
		g.mustCLI("admin", "user", "create", "-u", "alice")
		g.mustCLI("admin", "workspace", "grant", "--slug", personalWS, "-u", "alice")
		g.mustCLI("admin", "user", "key", "add", "-u", "alice", "--file", keyFile+".pub")
	}
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	login := func(local string) (*ssh.Client, error) {
		return gws[0].dialFrom(lb.Addr, local, "alice", ssh.PublicKeys(signer))
	}

	var clients []*sftp.Client
	for i := range 4 {
		c, err := login("127.0.0.2")
		if err != nil {
			t.Fatalf("login %d through the balancer: %v", i+1, err)
		}
		t.Cleanup(func() { c.Close() })
		clients = append(clients, newSFTP(t, c))
	}
	for i, g := range gws {
		rows := g.sessionRows()
		if len(rows) == 0 {
			t.Errorf("node %d: no session, want some of the 4 (leastconn)", i+1)
		}
		for _, r := range rows {
			if !strings.HasPrefix(r.Remote, "127.0.0.2:") {
				t.Errorf("node %d: session remote %q, want 127.0.0.2:port", i+1, r.Remote)
			}
		}
	}

	const size = 5 << 20
	want := prngSum(21, size)
	f, err := clients[0].Create("/" + personalWS + "/shared.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, prng(21, size)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for i, sc := range clients {
		var sum string
		var n int64
		ok := waitFor(5*time.Second, 100*time.Millisecond, func() bool {
			r, err := sc.Open("/" + personalWS + "/shared.bin")
			if err != nil {
				return false
			}
			defer r.Close()
			sum, n, err = sumOf(r)
			return err == nil && sum == want
		})
		if !ok {
			t.Errorf("session %d: read %d bytes sha256 %s, want %d bytes %s", i+1, n, sum, size, want)
		}
	}

	// Node 2 dies: logins through the balancer still work (a refused
	// connection is redispatched, the health check takes the node out).
	gws[1].kill9()
	for i := range 3 {
		c, err := login("127.0.0.3")
		if err != nil {
			t.Fatalf("login %d with node 2 dead: %v", i+1, err)
		}
		c.Close()
	}
	// Restarted, it serves again.
	gws[1].start()
	gws[1].waitReady()
	if !waitFor(20*time.Second, 200*time.Millisecond, func() bool {
		c, err := login("127.0.0.3")
		if err != nil {
			return false
		}
		defer c.Close()
		if _, err := newSFTPClient(c); err != nil {
			return false
		}
		return len(gws[1].sessionRows()) > 0
	}) {
		t.Errorf("node 2 got no session within 20s of its restart")
	}
}
