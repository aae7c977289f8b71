package sftpd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"
)

// ProxyMode says whether the SSH listener reads a PROXY protocol header
// (v1 or v2, as HAProxy's send-proxy and send-proxy-v2 write it) from the
// load balancers in Config.ProxyTrusted.
type ProxyMode int

// The PROXY protocol modes.
const (
	// ProxyOff reads no header: every peer is the client.
	ProxyOff ProxyMode = iota
	// ProxyOptional lets a trusted peer send a header; a trusted peer that
	// sends none is itself the client.
	ProxyOptional
	// ProxyRequired closes a connection from a trusted peer that does not
	// start with a header.
	ProxyRequired
)

// String returns the mode's name as written in the configuration.
func (m ProxyMode) String() string {
	switch m {
	case ProxyOff:
		return "off"
	case ProxyOptional:
		return "optional"
	case ProxyRequired:
		return "required"
	}
	return fmt.Sprintf("ProxyMode(%d)", int(m))
}

// ParseProxyMode parses "off", "optional" or "required".
func ParseProxyMode(s string) (ProxyMode, error) {
	for _, m := range []ProxyMode{ProxyOff, ProxyOptional, ProxyRequired} {
		if s == m.String() {
			return m, nil
		}
	}
	return ProxyOff, fmt.Errorf("%q: want \"off\", \"optional\" or \"required\"", CleanLogText(s))
}

// proxyHeaderBuffer is the read buffer of a PROXY header: a v2 header
// longer than that (its TLVs included) is refused as malformed. HAProxy's
// are 28 bytes (IPv4) to 52 (IPv6) plus the TLVs it is told to add.
const proxyHeaderBuffer = 2048

// Reasons a connection is refused for its PROXY header, as logged.
const (
	refuseUntrusted = "PROXY header from a peer not in proxyTrusted"
	refuseMalformed = "malformed PROXY header"
	refuseMissing   = "no PROXY header (proxyProtocol is required)"
)

// proxyRefusalEvery is the least time between two log lines about refused
// PROXY headers from one peer address.
const proxyRefusalEvery = time.Minute

// proxyRefusalAddrs bounds the peer addresses remembered to rate-limit
// those lines; past it, refusals from new addresses are counted and the
// count is given with the next line logged.
const proxyRefusalAddrs = 1024

// refusalLog rate-limits the log lines of refused PROXY headers: one per
// peer address per proxyRefusalEvery.
type refusalLog struct {
	// mu guards the fields below.
	mu         sync.Mutex
	last       map[netip.Addr]time.Time // when a refusal from the address was last logged
	suppressed int                      // refusals not logged because last was full
}

func newRefusalLog() *refusalLog {
	return &refusalLog{last: make(map[netip.Addr]time.Time)}
}

// note counts a refusal from peer at now. It returns true when it is to be
// logged, with the refusals from other addresses left unlogged since the
// last line because the map was full.
func (r *refusalLog) note(peer netip.Addr, now time.Time) (suppressed int, log bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.last[peer]; ok && now.Sub(t) < proxyRefusalEvery {
		return 0, false
	}
	if _, ok := r.last[peer]; !ok && len(r.last) >= proxyRefusalAddrs {
		for a, t := range r.last {
			if now.Sub(t) >= proxyRefusalEvery {
				delete(r.last, a)
			}
		}
		if len(r.last) >= proxyRefusalAddrs {
			r.suppressed++
			return 0, false
		}
	}
	r.last[peer] = now
	suppressed, r.suppressed = r.suppressed, 0
	return suppressed, true
}

// peerIP returns the IP address of a (IPv4-mapped addresses unmapped).
func peerIP(a net.Addr) netip.Addr {
	var ip netip.Addr
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ = netip.AddrFromSlice(ta.IP)
	} else if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		ip = ap.Addr()
	}
	return ip.WithZone("").Unmap()
}

// proxyTrusted reports whether the PROXY protocol is on and the peer a is
// one of the load balancers allowed to send a header.
func (s *Server) proxyTrusted(a net.Addr) bool {
	if s.cfg.ProxyProtocol == ProxyOff {
		return false
	}
	ip := peerIP(a)
	for _, p := range s.cfg.ProxyTrusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// errProxyIO marks an error of reading the connection, not of the header.
type errProxyIO struct{ err error }

func (e errProxyIO) Error() string { return e.err.Error() }
func (e errProxyIO) Unwrap() error { return e.err }

// readProxyHeader reads the PROXY header r starts with, if it starts with
// one. It returns the header (nil when the first bytes are not a PROXY
// signature) and the bytes read past it, for the SSH layer. A failure to
// read r is an errProxyIO; any other error is a malformed header.
func readProxyHeader(r io.Reader) (*proxyproto.Header, []byte, error) {
	br := bufio.NewReaderSize(r, proxyHeaderBuffer)
	if _, err := br.Peek(1); err != nil {
		return nil, nil, errProxyIO{err}
	}
	h, err := proxyproto.Read(br)
	switch {
	case errors.Is(err, proxyproto.ErrNoProxyProtocol):
		h, err = nil, nil
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET):
		return nil, nil, errProxyIO{err}
	case err != nil:
		return nil, nil, err
	}
	rest, _ := br.Peek(br.Buffered())
	return h, append([]byte(nil), rest...), nil
}

// proxyConn is a connection whose first bytes were read to look for a
// PROXY header: it gives the bytes read past the header first. From a peer
// not trusted to send a header, the look happens at the first Read (after
// the SSH layer has sent its version: clients that wait for it before
// sending theirs still work), and a header found makes the Read fail.
type proxyConn struct {
	net.Conn
	rest []byte
	// client is the address the header gave; nil: the peer's.
	client net.Addr
	// untrusted is set for a peer not in ProxyTrusted: the first Read
	// looks for a header; refuse is called, and the Read fails, if it
	// finds one.
	untrusted bool
	refuse    func(reason string, err error)
	refused   atomic.Bool
}

// errProxyRefused is what a refused connection's Read returns.
var errProxyRefused = errors.New("sftpd: PROXY header refused")

// Read returns the bytes read past the header, then reads the connection.
func (p *proxyConn) Read(b []byte) (int, error) {
	if p.untrusted {
		p.untrusted = false
		h, rest, err := readProxyHeader(p.Conn)
		var ioErr errProxyIO
		switch {
		case errors.As(err, &ioErr):
			return 0, ioErr.err
		case err != nil || h != nil:
			p.refused.Store(true)
			p.refuse(refuseUntrusted, err)
			return 0, errProxyRefused
		}
		p.rest = rest
	}
	if len(p.rest) > 0 {
		n := copy(b, p.rest)
		p.rest = p.rest[n:]
		if len(p.rest) == 0 {
			p.rest = nil
		}
		return n, nil
	}
	return p.Conn.Read(b)
}

// RemoteAddr returns the client's address: the header's, else the peer's.
func (p *proxyConn) RemoteAddr() net.Addr {
	if p.client != nil {
		return p.client
	}
	return p.Conn.RemoteAddr()
}

// SyscallConn gives the socket's, so that the batching layer can still see
// its send queue.
func (p *proxyConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := p.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("sftpd: not a socket")
	}
	return sc.SyscallConn()
}

var _ syscall.Conn = (*proxyConn)(nil)

// proxyHandshake runs before the SSH handshake when the PROXY protocol is
// on. From a trusted peer it reads the header (within the connection's
// deadline, loginGraceTime), makes its source address the connection's
// remote address, and takes the pre-auth slot of that address. It returns
// the connection the SSH layer reads, or false when the connection is to
// be closed (the reason already logged).
func (c *serverConn) proxyHandshake() (*proxyConn, bool) {
	s := c.srv
	peer := c.nc.RemoteAddr()
	if !c.viaProxy {
		return &proxyConn{Conn: c.nc, untrusted: true, refuse: c.refuseProxy}, true
	}
	h, rest, err := readProxyHeader(c.nc)
	var ioErr errProxyIO
	switch {
	case errors.As(err, &ioErr):
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.log.Info("handshake failed: loginGraceTime passed before the PROXY header", "loginGraceTime", s.cfg.HandshakeTimeout)
		} else {
			// A health check's connect and close, most often.
			c.log.Debug("connection closed before the PROXY header", "err", ioErr.err)
		}
		return nil, false
	case err != nil:
		c.refuseProxy(refuseMalformed, err)
		return nil, false
	case h == nil && s.cfg.ProxyProtocol == ProxyRequired:
		c.refuseProxy(refuseMissing, nil)
		return nil, false
	}
	client := peer
	if h != nil {
		src, _, ok := h.TCPAddrs()
		switch {
		case ok:
			client = src
		case h.Command.IsLocal() || h.TransportProtocol.IsUnspec():
			// The balancer's own connection (HAProxy's health checks send
			// LOCAL): the peer is the client.
			c.health = true
		default:
			c.refuseProxy(refuseMalformed, fmt.Errorf("unsupported address family %#x", byte(h.TransportProtocol)))
			return nil, false
		}
	}
	src := sourceOf(client)
	if !s.gate.assign(src) {
		if counts, log := s.gate.noteDrop("maxStartupsPerSource", time.Now()); log {
			s.log.Warn("pre-auth connections dropped", "dropped", counts, "unauthenticated", s.gate.unauthenticated(),
				"maxStartups", s.cfg.MaxStartups.String(), "maxStartupsPerSource", s.cfg.MaxStartupsPerSource)
		}
		return nil, false
	}
	c.src = src
	c.remote = client.String()
	c.log = s.log.With("conn", c.id, "remote", c.remote, "via", peer.String())
	pc := &proxyConn{Conn: c.nc, rest: rest}
	if client != peer {
		pc.client = client
	}
	return pc, true
}

// refuseProxy logs a refused PROXY header, at most once per peer address
// per proxyRefusalEvery.
func (c *serverConn) refuseProxy(reason string, err error) {
	peer := c.nc.RemoteAddr()
	suppressed, log := c.srv.proxyRefusals.note(peerIP(peer), time.Now())
	if !log {
		return
	}
	attrs := []any{"reason", reason, "proxyProtocol", c.srv.cfg.ProxyProtocol.String()}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	if suppressed > 0 {
		attrs = append(attrs, "unloggedFromOtherPeers", suppressed)
	}
	c.log.Warn("connection refused", attrs...)
}
