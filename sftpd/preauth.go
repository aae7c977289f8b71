package sftpd

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxStartups bounds the connections that have not authenticated yet, as
// OpenSSH's MaxStartups "start:rate:full": below Start every connection is
// accepted; from Start on, a new one is dropped with probability Rate
// percent, rising linearly to 100% at Full; at Full every new one is
// dropped.
type MaxStartups struct {
	Start, Rate, Full int // connections, percent, connections
}

// DefaultMaxStartups is the MaxStartups of a zero Config.
var DefaultMaxStartups = MaxStartups{Start: 128, Rate: 30, Full: 512}

// String returns m as "start:rate:full".
func (m MaxStartups) String() string {
	return fmt.Sprintf("%d:%d:%d", m.Start, m.Rate, m.Full)
}

// ParseMaxStartups parses "start:rate:full" (1 ≤ start ≤ full, rate a
// percentage) or a single number n, meaning "n:100:n" (a hard cap).
func ParseMaxStartups(s string) (MaxStartups, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 1 && len(parts) != 3 {
		return MaxStartups{}, fmt.Errorf("%q: want \"start:rate:full\" (e.g. \"128:30:512\") or a single number", s)
	}
	n := make([]int, len(parts))
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return MaxStartups{}, fmt.Errorf("%q: %q is not a whole non-negative number", s, p)
		}
		n[i] = v
	}
	m := MaxStartups{Start: n[0], Rate: 100, Full: n[0]}
	if len(n) == 3 {
		m = MaxStartups{Start: n[0], Rate: n[1], Full: n[2]}
	}
	if err := m.check(); err != nil {
		return MaxStartups{}, fmt.Errorf("%q: %w", s, err)
	}
	return m, nil
}

func (m MaxStartups) check() error {
	switch {
	case m.Start < 1:
		return fmt.Errorf("start must be at least 1, got %d", m.Start)
	case m.Full < m.Start:
		return fmt.Errorf("full (%d) must be at least start (%d)", m.Full, m.Start)
	case m.Rate < 0 || m.Rate > 100:
		return fmt.Errorf("rate is a percentage, 0 to 100, got %d", m.Rate)
	}
	return nil
}

// dropLogEvery is the least time between two log lines about dropped
// connections: a flood writes a few lines, not one per connection.
const dropLogEvery = 10 * time.Second

// preauthGate counts the connections that have not authenticated, in all
// and per source (an IPv4 address, an IPv6 /64), and decides which new
// ones are dropped at accept.
type preauthGate struct {
	limits    MaxStartups
	perSource int

	// mu guards the fields below.
	mu       sync.Mutex
	total    int
	bySource map[netip.Addr]int
	// dropped counts drops since the last log line, by reason.
	dropped map[string]int
	// logged holds the reasons logged since lastLog.
	logged  map[string]bool
	lastLog time.Time
}

func newPreauthGate(limits MaxStartups, perSource int) *preauthGate {
	return &preauthGate{
		limits:    limits,
		perSource: perSource,
		bySource:  make(map[netip.Addr]int),
		dropped:   make(map[string]int),
		logged:    make(map[string]bool),
	}
}

// sourceOf is the key a connection's source is counted under: its IPv4
// address, or its IPv6 /64 (the block one site usually gets).
func sourceOf(a net.Addr) netip.Addr {
	ip := peerIP(a)
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// admit takes a pre-auth slot for a connection from src, or returns why
// it is dropped. With the zero Addr as src the slot counts only in the
// total until assign gives it a source.
func (g *preauthGate) admit(src netip.Addr) (reason string, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch n := g.total; {
	case n >= g.limits.Full:
		return "maxStartups full", false
	case n >= g.limits.Start:
		p := g.limits.Rate
		if g.limits.Full > g.limits.Start {
			p += (100 - g.limits.Rate) * (n - g.limits.Start) / (g.limits.Full - g.limits.Start)
		}
		if rand.IntN(100) < p {
			return "maxStartups random early drop", false
		}
	}
	if src.IsValid() && g.bySource[src] >= g.perSource {
		return "maxStartupsPerSource", false
	}
	g.total++
	if src.IsValid() {
		g.bySource[src]++
	}
	return "", true
}

// assign counts a slot taken with the zero Addr under src, unless src
// already holds perSource slots. On false the slot is still held (in the
// total only) and must be released with the zero Addr.
func (g *preauthGate) assign(src netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.bySource[src] >= g.perSource {
		return false
	}
	g.bySource[src]++
	return true
}

// release gives back the slot of a connection from src (the zero Addr for
// a slot never assigned a source).
func (g *preauthGate) release(src netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if !src.IsValid() {
		return
	}
	if g.bySource[src]--; g.bySource[src] <= 0 {
		delete(g.bySource, src)
	}
}

// noteDrop counts a drop. At the first drop for a reason, and then every
// dropLogEvery, it returns the drops counted since the last time, to be
// logged, and true.
func (g *preauthGate) noteDrop(reason string, now time.Time) (map[string]int, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.dropped[reason]++
	switch {
	case now.Sub(g.lastLog) >= dropLogEvery:
		g.lastLog = now
		clear(g.logged)
	case g.logged[reason]:
		return nil, false
	}
	g.logged[reason] = true
	out := g.dropped
	g.dropped = make(map[string]int)
	return out, true
}

// unauthenticated returns the number of connections holding a slot.
func (g *preauthGate) unauthenticated() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.total
}
