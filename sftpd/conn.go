package sftpd

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgate/sftpgate/internal/authapi"
)

// serverConn is one SSH connection.
type serverConn struct {
	srv    *Server
	id     string // short random id, in every log line
	nc     net.Conn
	remote string
	log    *slog.Logger
	user   string // set once the handshake has succeeded
	// scopes restrict the session's paths (nil: unrestricted); set with user.
	scopes authapi.Scopes
	// src is the source the pre-auth slot is counted under; the zero
	// Addr while a load balancer's PROXY header is not read yet.
	src netip.Addr
	// viaProxy is set for a peer in ProxyTrusted; health for a balancer's
	// own connection (a PROXY header with no client address).
	viaProxy, health bool

	// preauthOnce gives back the connection's pre-auth slot, once.
	preauthOnce sync.Once

	// Server.mu guards the fields below.
	nsess    int       // live sessions
	nextSess int       // sessions opened so far, for ids
	lastEnd  time.Time // when the last session ended (or the login)
}

// newServerConn makes the connection nc, from src, with the id id.
func newServerConn(s *Server, nc net.Conn, src netip.Addr, id string) *serverConn {
	remote := nc.RemoteAddr().String()
	return &serverConn{
		srv:    s,
		id:     id,
		nc:     nc,
		remote: remote,
		src:    src,
		log:    s.log.With("conn", id, "remote", remote),
	}
}

// connIDBytes is the number of random bytes of a connection id (12 hex
// digits): enough that two nodes of a cluster, with thousands of
// connections each, practically never draw the same one (about one chance
// in five million with 10,000 connections over the cluster), short enough
// to type.
// A server never gives one id to two of its live connections (see
// freeConnIDLocked); across nodes, "sessions kill" refuses an id listed
// twice rather than pick one.
const connIDBytes = 6

// maxConnIDDraws bounds the draws of freeConnIDLocked.
const maxConnIDDraws = 16

// newID returns a random connection id: connIDBytes bytes, in hex.
func newID() string {
	var b [connIDBytes]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather than fail)
	return hex.EncodeToString(b[:])
}

// releasePreauth gives back the connection's pre-auth slot (at login or
// at the end, whichever comes first).
func (c *serverConn) releasePreauth() {
	c.preauthOnce.Do(func() { c.srv.gate.release(c.src) })
}

// serve runs the connection: handshake, then channels until it closes.
func (c *serverConn) serve() {
	s := c.srv
	defer s.wg.Done()
	defer s.forgetConn(c)
	defer c.nc.Close()
	defer c.releasePreauth()

	// The whole handshake and login must fit in HandshakeTimeout
	// (loginGraceTime); until the login succeeds the connection holds a
	// pre-auth slot and no buffer of its own.
	if err := c.nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout)); err != nil {
		c.log.Info("connection failed", "err", err)
		return
	}
	nc := c.nc
	var pc *proxyConn
	if s.cfg.ProxyProtocol != ProxyOff {
		var ok bool
		if pc, ok = c.proxyHandshake(); !ok {
			return
		}
		nc = pc
	}
	var stall time.Duration
	if s.cfg.IdleTimeout > 0 {
		stall = s.cfg.IdleTimeout
	}
	bc := newBatchConn(nc, stall, func() {
		c.log.Info("client stopped reading, closing connection", "stalled", stall)
	})
	defer bc.Close()
	sc, chans, reqs, err := ssh.NewServerConn(bc, c.sshConfig())
	if err != nil {
		switch {
		case pc != nil && pc.refused.Load():
			// Logged by refuseProxy.
		case c.health:
			c.log.Debug("load balancer health check closed", "err", err)
		case errors.Is(err, os.ErrDeadlineExceeded):
			c.log.Info("handshake failed: loginGraceTime passed", "loginGraceTime", s.cfg.HandshakeTimeout)
		default:
			c.log.Info("handshake failed", "err", err)
		}
		return
	}
	defer sc.Close()
	if err := c.nc.SetDeadline(time.Time{}); err != nil {
		c.log.Info("connection failed", "err", err)
		return
	}
	c.releasePreauth()
	bc.startBatching()
	c.user = sc.User()
	c.scopes = loginScopes(sc.Permissions)
	c.log = c.log.With("user", c.user)
	s.mu.Lock()
	c.lastEnd = time.Now()
	s.mu.Unlock()
	c.log.Info("connected", "client", string(sc.ClientVersion()))

	// Global requests (tcpip-forward, keepalives) are all answered false.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ssh.DiscardRequests(reqs)
	}()

	done := make(chan struct{})
	if s.cfg.IdleTimeout > 0 {
		s.wg.Add(1)
		go c.watchIdle(done)
	}
	for nch := range chans {
		if nch.ChannelType() != "session" {
			c.log.Info("channel refused", "type", nch.ChannelType())
			nch.Reject(ssh.Prohibited, "only session channels are allowed")
			continue
		}
		ss, reason, msg := s.reserveSession(c)
		if ss == nil {
			c.log.Info("session refused", "reason", msg)
			nch.Reject(reason, msg)
			continue
		}
		ch, chReqs, err := nch.Accept()
		if err != nil {
			s.endSession(ss)
			c.log.Info("session accept failed", "err", err)
			continue
		}
		s.addSession(ss, ch)
		go ss.run(chReqs)
	}
	close(done)
	c.log.Info("disconnected")
}

// maxSessionCloseGrace bounds how long a session may take to end after
// its idle timeout closed its channel (the grace is IdleTimeout if
// shorter). A peer that reads answers the close at once; one that stopped
// reading never does (the server's writes wait for a window adjustment
// that does not come), and its connection is closed.
const maxSessionCloseGrace = 10 * time.Second

// watchIdle closes the connection once it has had no session for
// IdleTimeout, or once one of its sessions has been silent (and not busy)
// for IdleTimeout + the close grace: the session's idle timeout closed its
// channel and the client did not answer, it has stopped reading.
func (c *serverConn) watchIdle(done <-chan struct{}) {
	s := c.srv
	defer s.wg.Done()
	idle := s.cfg.IdleTimeout
	grace := min(idle, maxSessionCloseGrace)
	poll := grace / 2
	t := time.NewTimer(idle)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		n, since := c.nsess, time.Since(c.lastEnd)
		stuck := n > 0 && s.stuckSessionLocked(c, idle+grace)
		s.mu.Unlock()
		switch {
		case stuck:
			c.log.Info("client stopped reading, closing connection", "stalled", idle+grace)
			c.nc.Close()
			return
		case n > 0:
			t.Reset(poll)
		case since < idle:
			t.Reset(idle - since)
		default:
			c.log.Info("idle timeout, closing connection")
			c.nc.Close()
			return
		}
	}
}

// stuckSessionLocked reports whether a session of c has had no traffic
// for longer than d while not busy. s.mu must be held.
func (s *Server) stuckSessionLocked(c *serverConn, d time.Duration) bool {
	for _, ss := range s.sessions {
		if ss.conn == c && ss.busy.Load() == 0 && time.Since(time.Unix(0, ss.lastActive.Load())) > d {
			return true
		}
	}
	return false
}
