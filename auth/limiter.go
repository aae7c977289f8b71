package auth

import (
	"container/list"
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

// DefaultMaxEntries bounds the keys the limiter holds (see
// LimiterConfig.MaxEntries).
const DefaultMaxEntries = 50000

// DefaultMaxNetFailures is how many failures from one IPv6 /48, for any
// logins and addresses in it, within DefaultWindow, lock the /48 out.
const DefaultMaxNetFailures = 100

// LimiterConfig tunes the failed-login limiter. Zero fields take the
// Default values.
type LimiterConfig struct {
	// MaxFailures per (login, address) within Window; zero means
	// DefaultMaxFailures.
	MaxFailures int
	// MaxAddrFailures per address (IPv4 address, IPv6 /64), whatever the
	// login, within Window; zero means DefaultMaxAddrFailures.
	MaxAddrFailures int
	// MaxNetFailures per IPv6 /48, whatever the login and the /64, within
	// Window; zero means DefaultMaxNetFailures.
	MaxNetFailures int
	// Window over which failures are counted; zero means DefaultWindow.
	Window time.Duration
	// Backoff is the first lockout's length; zero means DefaultBackoff.
	Backoff time.Duration
	// MaxBackoff caps the doubling; zero means DefaultMaxBackoff.
	MaxBackoff time.Duration
	// MaxEntries bounds the keys held in all (pairs, addresses, /48s):
	// beyond it the least recently used key is forgotten. Zero means
	// DefaultMaxEntries.
	MaxEntries int
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
	if c.MaxNetFailures <= 0 {
		c.MaxNetFailures = DefaultMaxNetFailures
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
	if c.MaxEntries <= 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	return c
}

// Limiter refuses login attempts after repeated failures. It is in memory
// and safe for concurrent use.
//
// It counts failures under three kinds of keys:
//   - the pair (login, address): MaxFailures failures within Window lock
//     that login out from that address only. Counting per login alone
//     would let anyone lock a user out by guessing from anywhere; keyed by
//     the pair, the attacked user still logs in from their own address.
//   - the address alone: MaxAddrFailures failures within Window, for any
//     logins, lock the address out, so that one address cannot try many
//     logins (nor grow the pair table: a locked-out address adds no
//     entries).
//   - for IPv6, the /48 as well: MaxNetFailures failures within Window
//     from any /64 of it lock the /48 out, so that a site cannot rotate
//     through its 65,536 /64s.
//
// A lockout lasts Backoff, doubling at each further lockout of the same
// key up to MaxBackoff; a key is forgotten once it has been quiet for
// Window after its last failure and lockout. A success clears only the
// pair (login, address): the address keeps its count, so that a valid
// account cannot be used to reset the count of failures for others.
// Addresses are the host part of "host:port"; IPv6 addresses are grouped
// by /64, the block one site usually gets.
//
// Memory is bounded: at most MaxEntries keys are held, the least recently
// used going first, and each key holds at most its limit of failure times.
type Limiter struct {
	cfg LimiterConfig
	now func() time.Time

	// mu guards the fields below.
	mu        sync.Mutex
	entries   map[limitKey]*list.Element // of *limitEntry
	lru       list.List                  // most recently used first
	lastSweep time.Time
}

// Kinds of keys.
const (
	kindPair = iota // (login, address)
	kindAddr        // address (IPv4, IPv6 /64)
	kindNet         // IPv6 /48
)

// limitKey is one counted key.
type limitKey struct {
	kind  uint8
	login string // kindPair only
	addr  string
}

// limitEntry is the failure history of one key.
type limitEntry struct {
	key         limitKey
	fails       []int64 // unix nanos, within the window, oldest first
	last        int64   // last failure
	used        int64   // last use (failure or check), for the sweep
	lockedUntil int64
	lockouts    int // successive lockouts, for the back-off
}

// NewLimiter returns a limiter with cfg (zero fields take the defaults)
// reading the time from now (time.Now if nil).
func NewLimiter(cfg LimiterConfig, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{
		cfg:     cfg.withDefaults(),
		now:     now,
		entries: make(map[limitKey]*list.Element),
	}
}

// keysOf returns the keys of an attempt of login from remote: the pair,
// the address and, for IPv6, the /48 ("" otherwise).
func keysOf(login, remote string) (pair, addr, net limitKey) {
	a, n := addrKeys(remote)
	return limitKey{kind: kindPair, login: truncKey(login), addr: a},
		limitKey{kind: kindAddr, addr: a},
		limitKey{kind: kindNet, addr: n}
}

// Allow reports whether login may try to log in from remote now.
func (l *Limiter) Allow(login, remote string) bool {
	if l.cfg.Disabled {
		return true
	}
	now := l.now().UnixNano()
	pk, ak, nk := keysOf(login, remote)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range []limitKey{nk, ak, pk} {
		if k.addr == "" && k.kind == kindNet {
			continue
		}
		if e := l.getLocked(k, now); e != nil && now < e.lockedUntil {
			return false
		}
	}
	return true
}

// Failure records a failed attempt of login from remote. While the pair,
// the address or its /48 is locked out, failures are ignored: they
// neither count nor extend the lockout.
func (l *Limiter) Failure(login, remote string) {
	if l.cfg.Disabled {
		return
	}
	t := l.now()
	now := t.UnixNano()
	pk, ak, nk := keysOf(login, remote)
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.Sub(l.lastSweep) >= l.cfg.Window {
		l.sweepLocked(t)
	}
	keys := []limitKey{pk, ak, nk}
	limits := []int{l.cfg.MaxFailures, l.cfg.MaxAddrFailures, l.cfg.MaxNetFailures}
	if nk.addr == "" {
		keys, limits = keys[:2], limits[:2]
	}
	for _, k := range keys {
		if e := l.getLocked(k, now); e != nil && now < e.lockedUntil {
			// An attempt made while locked out was not allowed to run; it
			// neither counts nor extends the lockout.
			return
		}
	}
	for i, k := range keys {
		l.failLocked(l.getOrAddLocked(k, now), now, limits[i])
	}
}

// Success clears the failures of login from remote (the pair only: the
// address and its /48 keep theirs).
func (l *Limiter) Success(login, remote string) {
	if l.cfg.Disabled {
		return
	}
	pk, _, _ := keysOf(login, remote)
	l.mu.Lock()
	defer l.mu.Unlock()
	if el := l.entries[pk]; el != nil {
		l.lru.Remove(el)
		delete(l.entries, pk)
	}
}

// getLocked returns the entry of k, marked used at now, or nil.
func (l *Limiter) getLocked(k limitKey, now int64) *limitEntry {
	el := l.entries[k]
	if el == nil {
		return nil
	}
	l.lru.MoveToFront(el)
	e := el.Value.(*limitEntry)
	e.used = now
	return e
}

// getOrAddLocked returns the entry of k, adding it (and forgetting the
// least recently used key if the table is full).
func (l *Limiter) getOrAddLocked(k limitKey, now int64) *limitEntry {
	if e := l.getLocked(k, now); e != nil {
		return e
	}
	for l.lru.Len() >= l.cfg.MaxEntries {
		old := l.lru.Back()
		l.lru.Remove(old)
		delete(l.entries, old.Value.(*limitEntry).key)
	}
	e := &limitEntry{key: k, used: now}
	l.entries[k] = l.lru.PushFront(e)
	return e
}

// failLocked records a failure at now in e, locking it out at max.
func (l *Limiter) failLocked(e *limitEntry, now int64, max int) {
	window := int64(l.cfg.Window)
	cut := 0
	for cut < len(e.fails) && now-e.fails[cut] >= window {
		cut++
	}
	e.fails = append(e.fails[:0], e.fails[cut:]...)
	e.fails = append(e.fails, now)
	e.last = now
	if len(e.fails) >= max {
		e.lockouts++
		e.lockedUntil = now + int64(l.backoff(e.lockouts))
		e.fails = nil // the slice's memory goes with it
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

// sweepLocked forgets the keys that have been quiet for a window. Keys
// are kept most recently used first, so it looks only at the tail not
// used for a window.
func (l *Limiter) sweepLocked(t time.Time) {
	l.lastSweep = t
	now, window := t.UnixNano(), int64(l.cfg.Window)
	for el := l.lru.Back(); el != nil; {
		e := el.Value.(*limitEntry)
		if now-e.used < window {
			break
		}
		prev := el.Prev()
		if now-e.last >= window && now >= e.lockedUntil+window {
			l.lru.Remove(el)
			delete(l.entries, e.key)
		}
		el = prev
	}
}

// size returns the number of keys held; for tests.
func (l *Limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// AddrKey returns the key the limiter counts remote under: the host part
// of "host:port" (or remote itself if it has no port), an IP address in
// canonical form with IPv4-mapped IPv6 unmapped and IPv6 reduced to its
// /64, anything else lowercased and truncated.
func AddrKey(remote string) string {
	a, _ := addrKeys(remote)
	return a
}

// addrKeys returns AddrKey(remote) and, for an IPv6 address, its /48
// ("" otherwise).
func addrKeys(remote string) (addr, net48 string) {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.WithZone("").Unmap()
		if a.Is6() {
			p64, _ := a.Prefix(64)
			p48, _ := a.Prefix(48)
			return p64.String(), p48.String()
		}
		return a.String(), ""
	}
	return truncKey(strings.ToLower(host)), ""
}

// truncKey truncates a key so that one entry's memory stays bounded.
func truncKey(s string) string {
	if len(s) > maxKeyLen {
		return s[:maxKeyLen]
	}
	return s
}
