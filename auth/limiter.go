package auth

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Failed-login limiter defaults (see LimiterConfig).
const (
	// DefaultMaxFailures is how many failures for one login from one
	// address, within DefaultWindow, lock that pair out.
	DefaultMaxFailures = 5
	// DefaultMaxAddrFailures is how many failures from one address, for any
	// logins, within DefaultWindow, lock that address out.
	DefaultMaxAddrFailures = 20
	// DefaultWindow is the period over which failures are counted.
	DefaultWindow = 10 * time.Minute
	// DefaultBackoff is the first lockout's length; each further lockout of
	// the same key doubles it.
	DefaultBackoff = 30 * time.Second
	// DefaultMaxBackoff caps the lockout length.
	DefaultMaxBackoff = 15 * time.Minute
)

// maxKeyLen bounds the memory one key (a login or an unparsable address)
// takes in the limiter.
const maxKeyLen = 256

// LimiterConfig tunes the failed-login limiter. Zero fields take the
// Default values.
type LimiterConfig struct {
	// MaxFailures per (login, address) within Window; zero means
	// DefaultMaxFailures.
	MaxFailures int
	// MaxAddrFailures per address, whatever the login, within Window; zero
	// means DefaultMaxAddrFailures.
	MaxAddrFailures int
	// Window over which failures are counted; zero means DefaultWindow.
	Window time.Duration
	// Backoff is the first lockout's length; zero means DefaultBackoff.
	Backoff time.Duration
	// MaxBackoff caps the doubling; zero means DefaultMaxBackoff.
	MaxBackoff time.Duration
	// Disabled turns the limiter off: every attempt is allowed.
	Disabled bool
}

func (c LimiterConfig) withDefaults() LimiterConfig {
	if c.MaxFailures <= 0 {
		c.MaxFailures = DefaultMaxFailures
	}
	if c.MaxAddrFailures <= 0 {
		c.MaxAddrFailures = DefaultMaxAddrFailures
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.Backoff <= 0 {
		c.Backoff = DefaultBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.MaxBackoff < c.Backoff {
		c.MaxBackoff = c.Backoff
	}
	return c
}

// Limiter refuses login attempts after repeated failures. It is in memory
// and safe for concurrent use.
//
// It counts failures under two kinds of keys:
//   - the pair (login, address): MaxFailures failures within Window lock
//     that login out from that address only. Counting per login alone
//     would let anyone lock a user out by guessing from anywhere; keyed by
//     the pair, the attacked user still logs in from their own address.
//   - the address alone: MaxAddrFailures failures within Window, for any
//     logins, lock the address out, so that one address cannot try many
//     logins (nor grow the pair table without bound: a locked-out address
//     adds no entries).
//
// A lockout lasts Backoff, doubling at each further lockout of the same
// key up to MaxBackoff; a key is forgotten once it has been quiet for
// Window after its last failure and lockout. A success resets the pair and
// the address. Addresses are the host part of "host:port"; IPv6 addresses
// are grouped by /64, the block one site usually gets, so that an attacker
// cannot rotate through the addresses of its own network.
type Limiter struct {
	cfg LimiterConfig
	now func() time.Time

	// mu guards the maps and lastSweep.
	mu        sync.Mutex
	pairs     map[pairKey]*limitEntry
	addrs     map[string]*limitEntry
	lastSweep time.Time
}

type pairKey struct{ login, addr string }

// limitEntry is the failure history of one key.
type limitEntry struct {
	fails       []time.Time // within the window, oldest first
	last        time.Time   // last failure
	lockedUntil time.Time
	lockouts    int // successive lockouts, for the back-off
}

// NewLimiter returns a limiter with cfg (zero fields take the defaults)
// reading the time from now (time.Now if nil).
func NewLimiter(cfg LimiterConfig, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{
		cfg:   cfg.withDefaults(),
		now:   now,
		pairs: make(map[pairKey]*limitEntry),
		addrs: make(map[string]*limitEntry),
	}
}

// Allow reports whether login may try to log in from remote now.
func (l *Limiter) Allow(login, remote string) bool {
	if l.cfg.Disabled {
		return true
	}
	now := l.now()
	pk := pairKey{limitKey(login), AddrKey(remote)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.addrs[pk.addr]; e != nil && now.Before(e.lockedUntil) {
		return false
	}
	if e := l.pairs[pk]; e != nil && now.Before(e.lockedUntil) {
		return false
	}
	return true
}

// Failure records a failed attempt of login from remote. While the pair or
// the address is locked out, failures are ignored: they neither count nor
// extend the lockout.
func (l *Limiter) Failure(login, remote string) {
	if l.cfg.Disabled {
		return
	}
	now := l.now()
	pk := pairKey{limitKey(login), AddrKey(remote)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= l.cfg.Window {
		l.sweepLocked(now)
	}
	pe, ae := l.pairs[pk], l.addrs[pk.addr]
	if pe != nil && now.Before(pe.lockedUntil) || ae != nil && now.Before(ae.lockedUntil) {
		// An attempt made while locked out was not allowed to run; it
		// neither counts nor extends the lockout.
		return
	}
	if pe == nil {
		pe = &limitEntry{}
		l.pairs[pk] = pe
	}
	l.failLocked(pe, now, l.cfg.MaxFailures)
	if ae == nil {
		ae = &limitEntry{}
		l.addrs[pk.addr] = ae
	}
	l.failLocked(ae, now, l.cfg.MaxAddrFailures)
}

// Success resets the counters of login from remote and of remote.
func (l *Limiter) Success(login, remote string) {
	if l.cfg.Disabled {
		return
	}
	pk := pairKey{limitKey(login), AddrKey(remote)}
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.pairs, pk)
	delete(l.addrs, pk.addr)
}

// failLocked records a failure at now in e, locking it out at max.
func (l *Limiter) failLocked(e *limitEntry, now time.Time, max int) {
	cut := 0
	for cut < len(e.fails) && now.Sub(e.fails[cut]) >= l.cfg.Window {
		cut++
	}
	e.fails = append(e.fails[:0], e.fails[cut:]...)
	e.fails = append(e.fails, now)
	e.last = now
	if len(e.fails) >= max {
		e.lockouts++
		e.lockedUntil = now.Add(l.backoff(e.lockouts))
		e.fails = e.fails[:0]
	}
}

// backoff returns the length of the nth lockout.
func (l *Limiter) backoff(n int) time.Duration {
	d := l.cfg.Backoff
	for i := 1; i < n && d < l.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, l.cfg.MaxBackoff)
}

// sweepLocked forgets the keys that have been quiet for a window.
func (l *Limiter) sweepLocked(now time.Time) {
	l.lastSweep = now
	stale := func(e *limitEntry) bool {
		return now.Sub(e.last) >= l.cfg.Window && !now.Before(e.lockedUntil.Add(l.cfg.Window))
	}
	for k, e := range l.pairs {
		if stale(e) {
			delete(l.pairs, k)
		}
	}
	for k, e := range l.addrs {
		if stale(e) {
			delete(l.addrs, k)
		}
	}
}

// size returns the number of keys held; for tests.
func (l *Limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pairs) + len(l.addrs)
}

// AddrKey returns the key the limiter counts remote under: the host part
// of "host:port" (or remote itself if it has no port), an IP address in
// canonical form with IPv4-mapped IPv6 unmapped and IPv6 reduced to its
// /64, anything else lowercased and truncated.
func AddrKey(remote string) string {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.WithZone("").Unmap()
		if a.Is6() {
			p, _ := a.Prefix(64)
			return p.String()
		}
		return a.String()
	}
	return limitKey(strings.ToLower(host))
}

// limitKey truncates a key so that one entry's memory stays bounded.
func limitKey(s string) string {
	if len(s) > maxKeyLen {
		return s[:maxKeyLen]
	}
	return s
}
