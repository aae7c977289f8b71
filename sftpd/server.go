package sftpd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgate/sftpgate/internal/authapi"
)

// Authenticator checks a login. A refused login returns an error; if the
// error has a method Why() string, that reason is logged. An accepted
// login returns the token's scopes: nil for an unscoped token, else the
// subtrees the session is restricted to.
type Authenticator interface {
	Login(ctx context.Context, login, secret, remote string) (authapi.Scopes, error)
}

// Mounter gives the directory that is the root of a user's SFTP session,
// and a release func called at session end.
type Mounter interface {
	Acquire(ctx context.Context, user string) (dir string, release func(), err error)
}

// Config configures a Server.
type Config struct {
	// HostKeys are the server's host keys; at least one is required.
	HostKeys []ssh.Signer
	// Auth checks logins; required.
	Auth Authenticator
	// Keys checks public-key and certificate logins; nil turns them off
	// (only the password and keyboard-interactive methods are offered).
	Keys KeyAuthenticator
	// TrustedUserCAKeys are the CA keys whose user certificates are
	// accepted (the principal must be the login); none by default.
	TrustedUserCAKeys []ssh.PublicKey
	// OnKeyLogin, if not nil, is called after each successful public-key
	// (MethodKey) or certificate (MethodCert) login.
	OnKeyLogin func(method string)
	// Mounts gives each SFTP session its root directory; required.
	Mounts Mounter
	// Logger receives connection and audit events; nil discards them.
	Logger *slog.Logger
	// IdleTimeout closes a session with no SFTP traffic for that long (and
	// a connection with no session). Zero means 15 minutes; negative never.
	IdleTimeout time.Duration
	// MaxSessionsPerUser bounds a user's open session channels over all
	// connections. Zero means 64.
	MaxSessionsPerUser int
	// MaxHandlesPerSession bounds the files and directories one SFTP
	// session has open; an open past it fails with "too many open files".
	// Zero means 256.
	MaxHandlesPerSession int
	// MaxHandlesPerUser bounds the files and directories open over all of
	// a user's sessions. Zero means 512.
	MaxHandlesPerUser int
	// MaxFileSize is the largest size a write or a truncate may give a
	// file; past it they fail before the file is touched. Zero means
	// 5 TiB (the S3 limit).
	MaxFileSize int64
	// GatherPerSession bounds the memory holding one session's gathered
	// writes (rounded down to whole 1 MiB windows; below 1 MiB writes go
	// straight to the file). Past it, writes go straight to the file. Zero
	// means 8 MiB.
	GatherPerSession int64
	// GatherPerUser bounds the memory holding the gathered writes of all
	// of a user's sessions, as GatherPerSession. Zero means 16 MiB.
	GatherPerUser int64
	// HandshakeTimeout bounds the SSH handshake and authentication, from
	// the TCP accept to a successful login (OpenSSH's LoginGraceTime). Zero
	// means 30 seconds.
	HandshakeTimeout time.Duration
	// MaxStartups bounds the connections that have not authenticated yet
	// (see MaxStartups). Zero means DefaultMaxStartups (128:30:512).
	MaxStartups MaxStartups
	// MaxStartupsPerSource bounds the unauthenticated connections from one
	// IPv4 address or IPv6 /64; more are dropped at accept (through a
	// trusted load balancer: the client's address, once its PROXY header
	// is read). Zero means 32.
	MaxStartupsPerSource int
	// ProxyProtocol says whether the peers in ProxyTrusted (load
	// balancers) start their connections with a PROXY protocol header (v1
	// or v2) giving the client's address, which then stands for the
	// client everywhere (limiter, pre-auth limits, logs, Sessions). A
	// header from any other peer closes the connection. Zero is ProxyOff.
	ProxyProtocol ProxyMode
	// ProxyTrusted are the addresses allowed to send a PROXY header;
	// required when ProxyProtocol is not ProxyOff.
	ProxyTrusted []netip.Prefix
	// KeyExchanges, Ciphers and MACs are the algorithms offered, in order
	// of preference; nil means DefaultKeyExchanges, DefaultCiphers and
	// DefaultMACs. Every name must be one of KnownAlgorithms.
	KeyExchanges, Ciphers, MACs []string
	// MaxAuthTries is the number of failed authentications after which a
	// connection is closed. Zero means 3.
	MaxAuthTries int
	// FailureDelay is the least time every refused authentication takes
	// from the attempt's start, so that timing does not tell which part was
	// wrong. Zero means 500ms.
	FailureDelay time.Duration
	// GracePeriod is how long Shutdown lets sessions finish before closing
	// them. Zero means 10 seconds.
	GracePeriod time.Duration
	// OnSessionEnd, if not nil, is called once when a session ends, with
	// its final byte counts, just before it leaves Sessions(): a sampler
	// that adds the ended sessions' totals to the live ones never counts a
	// byte twice or misses one. It must not block.
	OnSessionEnd func(SessionInfo)
}

// Defaults applied by New to zero Config fields.
const (
	DefaultIdleTimeout          = 15 * time.Minute
	DefaultMaxSessionsPerUser   = 64
	DefaultMaxHandlesPerSession = 256
	DefaultMaxHandlesPerUser    = 512
	DefaultMaxFileSize          = 5 << 40 // 5 TiB, the largest S3 object
	DefaultGatherPerSession     = 8 << 20
	DefaultGatherPerUser        = 16 << 20
	DefaultHandshakeTimeout     = 30 * time.Second
	DefaultMaxStartupsPerSource = 32
	DefaultMaxAuthTries         = 3
	DefaultFailureDelay         = 500 * time.Millisecond
	DefaultGracePeriod          = 10 * time.Second
)

// Server is an SSH server that serves only SFTP. Create it with New, run it
// with Serve and stop it with Shutdown.
type Server struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // for Auth and Mounts calls; cancelled by Shutdown
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the server starts

	// closing is closed when Shutdown starts.
	closing chan struct{}

	// gate admits the connections that have not authenticated.
	gate *preauthGate
	// proxyRefusals rate-limits the log lines of refused PROXY headers.
	proxyRefusals *refusalLog

	// windows holds the buffers of the sessions' gathered writes.
	windows windowPool

	// mu guards the fields below.
	mu           sync.Mutex
	shuttingDown bool
	listeners    map[net.Listener]struct{}
	conns        map[*serverConn]struct{}
	connIDs      map[string]struct{} // the ids of conns
	sessions     map[string]*session
	perUser      map[string]*userState
	// newConnID draws a connection id: newID (a test replaces it).
	newConnID func() string
}

// userState is what the sessions of one user share: the counts their
// limits apply to. It exists while the user has a session.
type userState struct {
	sessions int          // live sessions; guarded by Server.mu
	handles  atomic.Int64 // open handles over all sessions
	windows  atomic.Int64 // gathered-write windows over all sessions
}

// SessionInfo describes a live session, for administration.
type SessionInfo struct {
	ID     string    // "<connection id>-<n>" (12 hex digits, a dash, a number), as in the log lines; the key for Kill
	User   string    // the login
	Remote string    // client address
	Since  time.Time // when the session was opened
	// BytesUp and BytesDown count file data written and read.
	BytesUp, BytesDown int64
	Op                 string // the current or last operation, e.g. "upload /ws/a.txt"
}

// advertiseExtensions makes pkg/sftp advertise only the extensions that
// work here (its default also advertises hardlink@openssh.com, which is
// refused). The list is process-wide in pkg/sftp and read by every
// session, so New sets it once per process: setting it per Server would
// race with the sessions of another Server.
var advertiseExtensions = sync.OnceValue(func() error {
	return sftp.SetSFTPExtensions("posix-rename@openssh.com", "statvfs@openssh.com")
})

// New checks cfg, applies defaults and returns a Server. The first call
// also sets the SFTP extensions that pkg/sftp advertises, for the process.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := advertiseExtensions(); err != nil {
		return nil, fmt.Errorf("sftpd: advertise sftp extensions: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = newCleanLogger(log)
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg:           cfg,
		log:           log,
		ctx:           ctx,
		cancel:        cancel,
		closing:       make(chan struct{}),
		gate:          newPreauthGate(cfg.MaxStartups, cfg.MaxStartupsPerSource),
		proxyRefusals: newRefusalLog(),
		windows:       windowPool{size: combineBudgetSize},
		newConnID:     newID,
		listeners:     make(map[net.Listener]struct{}),
		conns:         make(map[*serverConn]struct{}),
		connIDs:       make(map[string]struct{}),
		sessions:      make(map[string]*session),
		perUser:       make(map[string]*userState),
	}, nil
}

// withDefaults checks cfg and returns it with the defaults in its zero
// fields. Every error wraps ErrBadConfig and names the field.
func (cfg Config) withDefaults() (Config, error) {
	switch {
	case len(cfg.HostKeys) == 0:
		return Config{}, fmt.Errorf("%w: no host key", ErrBadConfig)
	case cfg.Auth == nil:
		return Config{}, fmt.Errorf("%w: no authenticator", ErrBadConfig)
	case cfg.Mounts == nil:
		return Config{}, fmt.Errorf("%w: no mounter", ErrBadConfig)
	}
	for _, err := range []error{
		notNegative("MaxSessionsPerUser", cfg.MaxSessionsPerUser),
		notNegative("MaxHandlesPerSession", cfg.MaxHandlesPerSession),
		notNegative("MaxHandlesPerUser", cfg.MaxHandlesPerUser),
		notNegative("MaxFileSize", cfg.MaxFileSize),
		notNegative("GatherPerSession", cfg.GatherPerSession),
		notNegative("GatherPerUser", cfg.GatherPerUser),
		notNegative("MaxAuthTries", cfg.MaxAuthTries),
		notNegative("HandshakeTimeout", cfg.HandshakeTimeout),
		notNegative("FailureDelay", cfg.FailureDelay),
		notNegative("GracePeriod", cfg.GracePeriod),
		notNegative("MaxStartupsPerSource", cfg.MaxStartupsPerSource),
	} {
		if err != nil {
			return Config{}, err
		}
	}
	switch {
	case cfg.ProxyProtocol < ProxyOff || cfg.ProxyProtocol > ProxyRequired:
		return Config{}, fmt.Errorf("%w: unknown ProxyProtocol %v", ErrBadConfig, cfg.ProxyProtocol)
	case cfg.ProxyProtocol != ProxyOff && len(cfg.ProxyTrusted) == 0:
		return Config{}, fmt.Errorf("%w: ProxyProtocol %v with no ProxyTrusted address", ErrBadConfig, cfg.ProxyProtocol)
	}
	if cfg.MaxStartups == (MaxStartups{}) {
		cfg.MaxStartups = DefaultMaxStartups
	}
	if err := cfg.MaxStartups.check(); err != nil {
		return Config{}, fmt.Errorf("%w: MaxStartups %v: %w", ErrBadConfig, cfg.MaxStartups, err)
	}
	cfg.MaxStartupsPerSource = cmp.Or(cfg.MaxStartupsPerSource, DefaultMaxStartupsPerSource)
	for _, a := range []struct {
		kind string
		list *[]string
		def  []string
	}{
		{AlgoKeyExchange, &cfg.KeyExchanges, DefaultKeyExchanges},
		{AlgoCipher, &cfg.Ciphers, DefaultCiphers},
		{AlgoMAC, &cfg.MACs, DefaultMACs},
	} {
		if *a.list == nil {
			*a.list = a.def
		}
		if err := CheckAlgorithms(a.kind, *a.list); err != nil {
			return Config{}, fmt.Errorf("%w: %w", ErrBadConfig, err)
		}
	}
	for i, k := range cfg.HostKeys {
		if k == nil {
			return Config{}, fmt.Errorf("%w: host key %d is nil", ErrBadConfig, i)
		}
	}
	cfg.IdleTimeout = cmp.Or(cfg.IdleTimeout, DefaultIdleTimeout)
	cfg.MaxSessionsPerUser = cmp.Or(cfg.MaxSessionsPerUser, DefaultMaxSessionsPerUser)
	cfg.MaxHandlesPerSession = cmp.Or(cfg.MaxHandlesPerSession, DefaultMaxHandlesPerSession)
	cfg.MaxHandlesPerUser = cmp.Or(cfg.MaxHandlesPerUser, DefaultMaxHandlesPerUser)
	cfg.MaxFileSize = cmp.Or(cfg.MaxFileSize, DefaultMaxFileSize)
	cfg.GatherPerSession = cmp.Or(cfg.GatherPerSession, DefaultGatherPerSession)
	cfg.GatherPerUser = cmp.Or(cfg.GatherPerUser, DefaultGatherPerUser)
	cfg.HandshakeTimeout = cmp.Or(cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	cfg.MaxAuthTries = cmp.Or(cfg.MaxAuthTries, DefaultMaxAuthTries)
	cfg.FailureDelay = cmp.Or(cfg.FailureDelay, DefaultFailureDelay)
	cfg.GracePeriod = cmp.Or(cfg.GracePeriod, DefaultGracePeriod)
	return cfg, nil
}

// notNegative refuses a Config field below zero (zero picks the default).
func notNegative[T int | int64 | time.Duration](name string, v T) error {
	if v < 0 {
		return fmt.Errorf("%w: %s %v is negative", ErrBadConfig, name, v)
	}
	return nil
}

// Serve accepts connections on l until Shutdown, then returns
// ErrServerClosed. Any other accept error that is not temporary is
// returned. Serve may be called on several listeners.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.shuttingDown {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			select {
			case <-s.closing:
				return ErrServerClosed
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept: %w", err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed, retrying", "err", err, "delay", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-s.closing:
				t.Stop()
				return ErrServerClosed
			case <-t.C:
			}
			continue
		}
		backoff = 0
		// A connection from a load balancer is counted under its client's
		// source once its goroutine has read the PROXY header; until then
		// it counts only in the total.
		src := sourceOf(nc.RemoteAddr())
		viaProxy := s.proxyTrusted(nc.RemoteAddr())
		if viaProxy {
			src = netip.Addr{}
		}
		if reason, ok := s.gate.admit(src); !ok {
			// Dropped at once: no goroutine, no buffer, the descriptor
			// freed before the next accept.
			nc.Close()
			if counts, log := s.gate.noteDrop(reason, time.Now()); log {
				s.log.Warn("pre-auth connections dropped", "dropped", counts, "unauthenticated", s.gate.unauthenticated(),
					"maxStartups", s.cfg.MaxStartups.String(), "maxStartupsPerSource", s.cfg.MaxStartupsPerSource)
			}
			continue
		}
		c, ok := s.trackConn(nc, src, viaProxy)
		if !ok {
			nc.Close()
			return ErrServerClosed
		}
		go c.serve()
	}
}

// trackConn registers a new connection and counts its goroutine, unless
// the server is shutting down.
func (s *Server) trackConn(nc net.Conn, src netip.Addr, viaProxy bool) (*serverConn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown {
		s.gate.release(src)
		return nil, false
	}
	c := newServerConn(s, nc, src, s.freeConnIDLocked())
	c.viaProxy = viaProxy
	s.conns[c] = struct{}{}
	s.connIDs[c.id] = struct{}{}
	s.wg.Add(1)
	return c, true
}

// freeConnIDLocked draws a connection id that no live connection has, so
// that the ids of the sessions (the keys of s.sessions) are unique on the
// server. It draws again on a clash, at most maxConnIDDraws times (with
// 48 random bits a second draw is already never needed in practice).
func (s *Server) freeConnIDLocked() string {
	id := s.newConnID()
	for range maxConnIDDraws - 1 {
		if _, taken := s.connIDs[id]; !taken {
			break
		}
		id = s.newConnID()
	}
	return id
}

// forgetConn removes c from the live connections.
func (s *Server) forgetConn(c *serverConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	delete(s.connIDs, c.id)
}

// Shutdown stops accepting connections, lets open sessions run until they
// end, GracePeriod passes or ctx is done, then closes every connection
// (open files are closed, so their uploads still happen) and waits for
// every goroutine of the server. It returns ctx's error if ctx ended before
// the sessions did.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.shuttingDown {
		s.shuttingDown = true
		close(s.closing)
	}
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()

	grace := time.NewTimer(s.cfg.GracePeriod)
	defer grace.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var err error
wait:
	for s.liveSessions() > 0 {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		case <-grace.C:
			break wait
		case <-tick.C:
		}
	}

	s.mu.Lock()
	n := len(s.sessions)
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	if n > 0 {
		s.log.Info("shutdown: closing sessions", "sessions", n)
	}
	s.cancel()
	s.wg.Wait()
	return err
}

func (s *Server) liveSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Sessions returns the live sessions, oldest first.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	list := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		list = append(list, ss)
	}
	s.mu.Unlock()
	out := make([]SessionInfo, 0, len(list))
	for _, ss := range list {
		out = append(out, ss.info())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Since.Equal(out[j].Since) {
			return out[i].Since.Before(out[j].Since)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Kill closes the session with the given id (and its connection if it has
// no other session). Its open files are closed, so their uploads still
// happen. It returns an error wrapping ErrNoSession for an unknown id.
func (s *Server) Kill(id string) error {
	s.mu.Lock()
	ss, ok := s.sessions[id]
	alone := ok && ss.conn.nsess == 1
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("kill %q: %w", id, ErrNoSession)
	}
	ss.log.Info("session killed")
	ss.ch.Close()
	if alone {
		ss.conn.nc.Close()
	}
	return nil
}

// reserveSession takes a session slot on c for its user, or says why not.
// The session is registered (visible to Sessions and Kill) by addSession
// once its channel is accepted, or its slot given back by endSession.
func (s *Server) reserveSession(c *serverConn) (*session, ssh.RejectionReason, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown {
		return nil, ssh.ResourceShortage, "server is shutting down"
	}
	us := s.perUser[c.user]
	if us == nil {
		us = &userState{}
		s.perUser[c.user] = us
	}
	if us.sessions >= s.cfg.MaxSessionsPerUser {
		return nil, ssh.ResourceShortage, fmt.Sprintf("too many sessions for %s (limit %d)", c.user, s.cfg.MaxSessionsPerUser)
	}
	us.sessions++
	c.nsess++
	c.nextSess++
	return newSession(c, us, fmt.Sprintf("%s-%d", c.id, c.nextSess)), 0, ""
}

// addSession registers a session whose channel is accepted and counts its
// goroutine.
func (s *Server) addSession(ss *session, ch ssh.Channel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss.ch = ch
	s.sessions[ss.id] = ss
	s.wg.Add(1)
}

// endSession reports a session's end and forgets it, freeing its slot.
func (s *Server) endSession(ss *session) {
	if s.cfg.OnSessionEnd != nil {
		s.cfg.OnSessionEnd(ss.info())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, ss.id)
	if ss.user.sessions--; ss.user.sessions <= 0 && s.perUser[ss.conn.user] == ss.user {
		delete(s.perUser, ss.conn.user)
	}
	ss.conn.nsess--
	ss.conn.lastEnd = time.Now()
}
