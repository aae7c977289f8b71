package integration

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// Helpers of the tests of gateways behind a load balancer: N nodes on one
// MinIO and one HAProxy in front of them.

// startGateways starts n gateways as the nodes of one cluster, all with
// opts: the same host key and the same buckets (the object store is the
// shared state), each with its own working directory, mounts and cache.
// With opts.database PostgreSQL they share one identity store (users,
// tokens, limiter); with SQLite each node has its own, and users and
// tokens are added node by node.
func startGateways(t testing.TB, n int, opts gwOptions) []*gateway {
	t.Helper()
	first := startGateway(t, opts)
	gws := []*gateway{first}
	for range n - 1 {
		o := opts
		o.peer = first
		gws = append(gws, startGateway(t, o))
	}
	return gws
}

// balance starts HAProxy (testenv.HAProxyConfig: TCP mode, send-proxy-v2,
// health checks) in front of gws; cleanup stops it. The test is skipped
// when HAProxy is not installed, unless SFTPGATE_REQUIRE_HAPROXY is set.
func balance(t testing.TB, gws ...*gateway) *testenv.HAProxy {
	t.Helper()
	addrs := make([]string, len(gws))
	for i, g := range gws {
		addrs[i] = g.addr
	}
	return testenv.StartHAProxy(t, addrs)
}

// mustSFTPVia logs in through addr (a balancer) from the local address
// local and starts an SFTP session; cleanup closes both.
func (g *gateway) mustSFTPVia(addr, local, user, token string) *sftp.Client {
	g.t.Helper()
	g.secret(token)
	c, err := g.dialFrom(addr, local, user, ssh.Password(token))
	if err != nil {
		g.t.Fatalf("ssh login as %s through %s from %s: %v", user, addr, local, err)
	}
	g.t.Cleanup(func() { c.Close() })
	return newSFTP(g.t, c)
}

// rawDial opens a TCP connection to addr from local ("" for any) with a
// deadline of timeout.
func rawDial(t testing.TB, addr, local string, timeout time.Duration) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: timeout}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, local, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(timeout))
	return c
}

// logLines returns the lines of the daemon's log that contain every one
// of parts.
func (g *gateway) logLines(parts ...string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(g.logs()))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
lines:
	for sc.Scan() {
		for _, p := range parts {
			if !strings.Contains(sc.Text(), p) {
				continue lines
			}
		}
		out = append(out, sc.Text())
	}
	return out
}
