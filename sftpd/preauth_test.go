package sftpd

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseMaxStartups(t *testing.T) {
	tests := []struct {
		in   string
		want MaxStartups
		err  string
	}{
		{in: "128:30:512", want: MaxStartups{128, 30, 512}},
		{in: "10:0:10", want: MaxStartups{10, 0, 10}},
		{in: "64", want: MaxStartups{64, 100, 64}},
		{in: "", err: "not a whole"},
		{in: "1:2", err: "want \"start:rate:full\""},
		{in: "0:30:10", err: "start must be at least 1"},
		{in: "20:30:10", err: "full (10) must be at least start (20)"},
		{in: "10:101:20", err: "rate is a percentage"},
		{in: "10:-1:20", err: "not a whole"},
		{in: "a:b:c", err: "not a whole"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMaxStartups(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
			if back, err := ParseMaxStartups(got.String()); err != nil || back != got {
				t.Errorf("String() %q does not parse back: %v, %v", got.String(), back, err)
			}
		})
	}
}

func TestSourceOf(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 1}, "2001:db8:1:2::"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "eth0"}, "fe80::"},
	}
	for _, tt := range tests {
		if got := sourceOf(tt.addr).String(); got != tt.want {
			t.Errorf("sourceOf(%v): got %s, want %s", tt.addr, got, tt.want)
		}
	}
}

// The gate holds at most perSource per source and full in all, drops
// with a probability rising from rate at start to 100% at full, and
// gives slots back.
func TestPreauthGate(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	t.Run("per source", func(t *testing.T) {
		g := newPreauthGate(MaxStartups{100, 30, 200}, 3)
		for i := range 3 {
			if _, ok := g.admit(a); !ok {
				t.Fatalf("connection %d from a refused, want admitted", i)
			}
		}
		if reason, ok := g.admit(a); ok || reason != "maxStartupsPerSource" {
			t.Fatalf("4th from a: got %q, %v; want dropped by maxStartupsPerSource", reason, ok)
		}
		if _, ok := g.admit(b); !ok {
			t.Fatalf("b refused, want admitted")
		}
		g.release(a)
		if _, ok := g.admit(a); !ok {
			t.Fatalf("a refused after a release, want admitted")
		}
	})
	t.Run("hard cap", func(t *testing.T) {
		g := newPreauthGate(MaxStartups{10, 100, 10}, 1000)
		for range 10 {
			if _, ok := g.admit(a); !ok {
				t.Fatalf("refused under the cap")
			}
		}
		for range 100 {
			if reason, ok := g.admit(b); ok || reason != "maxStartups full" {
				t.Fatalf("at the cap: got %q, %v; want dropped", reason, ok)
			}
		}
	})
	t.Run("random early drop", func(t *testing.T) {
		// Held at start (10) of 10:30:110: each new one is dropped with
		// probability 30%; measured over 2000 tries.
		g := newPreauthGate(MaxStartups{10, 30, 110}, 1<<20)
		for range 10 {
			g.admit(a)
		}
		drops := 0
		for range 2000 {
			if _, ok := g.admit(b); ok {
				g.release(b)
			} else {
				drops++
			}
		}
		if drops < 450 || drops > 750 {
			t.Errorf("at start: got %d drops of 2000, want about 600 (30%%)", drops)
		}
		// Half way to full (60 held): 30 + 70/2 = 65%.
		for range 50 {
			g.total++ // held connections, counted as admit would
		}
		drops = 0
		for range 2000 {
			if _, ok := g.admit(b); ok {
				g.release(b)
			} else {
				drops++
			}
		}
		if drops < 1150 || drops > 1450 {
			t.Errorf("half way: got %d drops of 2000, want about 1300 (65%%)", drops)
		}
	})
	t.Run("drop log", func(t *testing.T) {
		g := newPreauthGate(DefaultMaxStartups, 32)
		now := time.Unix(1000, 0)
		if _, log := g.noteDrop("x", now); !log {
			t.Errorf("first drop not logged")
		}
		if _, log := g.noteDrop("x", now.Add(time.Second)); log {
			t.Errorf("second drop of the same reason logged at once")
		}
		counts, log := g.noteDrop("y", now.Add(time.Second))
		if !log || counts["x"] != 1 || counts["y"] != 1 {
			t.Errorf("first drop of another reason: got %v, %v; want x=1 y=1 logged", counts, log)
		}
		g.noteDrop("x", now.Add(2*time.Second))
		counts, log = g.noteDrop("x", now.Add(dropLogEvery))
		if !log || counts["x"] != 2 || counts["y"] != 0 {
			t.Errorf("after dropLogEvery: got %v, %v; want x=2 logged", counts, log)
		}
	})
}

// FuzzParseMaxStartups: a configuration string never panics the parser,
// and what it accepts is consistent and prints back the same.
func FuzzParseMaxStartups(f *testing.F) {
	for _, s := range []string{"128:30:512", "64", "1:0:1", "::", "9999999999999999999:1:1", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMaxStartups(s)
		if err != nil {
			return
		}
		if m.Start < 1 || m.Full < m.Start || m.Rate < 0 || m.Rate > 100 {
			t.Fatalf("ParseMaxStartups(%q) = %v: inconsistent", s, m)
		}
		if back, err := ParseMaxStartups(m.String()); err != nil || back != m {
			t.Fatalf("ParseMaxStartups(%q).String() = %q parses as %v, %v", s, m.String(), back, err)
		}
	})
}
