package auth

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func newTestLimiter(cfg LimiterConfig) (*Limiter, *fakeClock) {
	clk := newFakeClock()
	return NewLimiter(cfg, clk.Now), clk
}

// failN records n failures.
func failN(l *Limiter, login, remote string, n int) {
	for range n {
		l.Failure(login, remote)
	}
}

func TestLimiterDefaults(t *testing.T) {
	l := NewLimiter(LimiterConfig{}, nil)
	want := LimiterConfig{
		MaxFailures: DefaultMaxFailures, MaxAddrFailures: DefaultMaxAddrFailures,
		Window: DefaultWindow, Backoff: DefaultBackoff, MaxBackoff: DefaultMaxBackoff,
	}
	if l.cfg != want {
		t.Errorf("got %+v, want %+v", l.cfg, want)
	}
}

func TestLimiter(t *testing.T) {
	cfg := LimiterConfig{MaxFailures: 3, MaxAddrFailures: 6, Window: time.Minute, Backoff: 10 * time.Second, MaxBackoff: 35 * time.Second}
	type step struct {
		advance time.Duration
		op      string // "fail", "ok", "allow", "deny"
		login   string
		remote  string
		n       int // repeat count for "fail"
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"under the limit", []step{
			{op: "fail", login: "a", remote: "10.0.0.1:1", n: 2},
			{op: "allow", login: "a", remote: "10.0.0.1:2"},
		}},
		{"pair lockout", []step{
			{op: "fail", login: "a", remote: "10.0.0.1:1", n: 3},
			{op: "deny", login: "a", remote: "10.0.0.1:2"},
			// same login, other address: unaffected
			{op: "allow", login: "a", remote: "10.0.0.2:1"},
			// same address, other login: unaffected (address under its own limit)
			{op: "allow", login: "b", remote: "10.0.0.1:3"},
			{advance: 10*time.Second - time.Nanosecond, op: "deny", login: "a", remote: "10.0.0.1:1"},
			{advance: time.Nanosecond, op: "allow", login: "a", remote: "10.0.0.1:1"},
		}},
		{"failures outside the window do not add up", []step{
			{op: "fail", login: "a", remote: "10.0.0.1:1", n: 2},
			{advance: time.Minute, op: "fail", login: "a", remote: "10.0.0.1:1", n: 2},
			{op: "allow", login: "a", remote: "10.0.0.1:1"},
		}},
		{"address lockout does not affect other addresses", []step{
			// 6 logins × 1 failure from one address
			{op: "fail", login: "u1", remote: "10.0.0.9:1", n: 1},
			{op: "fail", login: "u2", remote: "10.0.0.9:2", n: 1},
			{op: "fail", login: "u3", remote: "10.0.0.9:3", n: 1},
			{op: "fail", login: "u4", remote: "10.0.0.9:4", n: 1},
			{op: "fail", login: "u5", remote: "10.0.0.9:5", n: 1},
			{op: "fail", login: "u6", remote: "10.0.0.9:6", n: 1},
			{op: "deny", login: "fresh", remote: "10.0.0.9:7"},
			{op: "deny", login: "u1", remote: "10.0.0.9"},
			{op: "allow", login: "u1", remote: "10.0.0.10:1"},
			{op: "allow", login: "fresh", remote: "10.0.0.10:1"},
		}},
		{"back-off doubles up to the cap", []step{
			{op: "fail", login: "a", remote: "10.0.0.1:1", n: 3},
			{advance: 10*time.Second - 1, op: "deny", login: "a", remote: "10.0.0.1:1"},
			{advance: 1, op: "allow", login: "a", remote: "10.0.0.1:1"},
			{op: "fail", login: "a", remote: "10.0.0.1:1", n: 3}, // 2nd lockout: 20s
			{advance: 20*time.Second - 1, op: "deny", login: "a", remote: "10.0.0.1:1"},
			{advance: 1, op: "allow", login: "a", remote: "10.0.0.1:1"},
			{op: "fail", login: "a", remote: "10.0.0.1:1", n: 3}, // 3rd: 40s capped at 35s
			{advance: 35*time.Second - 1, op: "deny", login: "a", remote: "10.0.0.1:1"},
			{advance: 1, op: "allow", login: "a", remote: "10.0.0.1:1"},
		}},
		{"failures while locked do not extend the lockout", []step{
			{op: "fail", login: "a", remote: "10.0.0.1:1", n: 3},
			{advance: 5 * time.Second, op: "fail", login: "a", remote: "10.0.0.1:1", n: 10},
			{advance: 5 * time.Second, op: "allow", login: "a", remote: "10.0.0.1:1"},
		}},
		{"success resets pair and address", []step{
			{op: "fail", login: "a", remote: "10.0.0.1:1", n: 2},
			{op: "fail", login: "b", remote: "10.0.0.1:1", n: 2},
			{op: "ok", login: "a", remote: "10.0.0.1:2"},
			{op: "fail", login: "a", remote: "10.0.0.1:1", n: 2},
			{op: "allow", login: "a", remote: "10.0.0.1:1"},
			{op: "fail", login: "c", remote: "10.0.0.1:1", n: 2},
			// address count restarted at the success: 2+2 < 6
			{op: "allow", login: "d", remote: "10.0.0.1:1"},
		}},
		{"success after a lockout restarts the back-off", []step{
			{op: "fail", login: "a", remote: "10.0.0.1:1", n: 3},
			{advance: 10 * time.Second, op: "ok", login: "a", remote: "10.0.0.1:1"},
			{op: "fail", login: "a", remote: "10.0.0.1:1", n: 3},
			{advance: 10 * time.Second, op: "allow", login: "a", remote: "10.0.0.1:1"},
		}},
		{"ipv6 grouped by /64", []step{
			{op: "fail", login: "a", remote: "[2001:db8:1:2::1]:22", n: 2},
			{op: "fail", login: "a", remote: "[2001:db8:1:2:ffff::9]:22", n: 1},
			{op: "deny", login: "a", remote: "2001:db8:1:2::77"},
			{op: "allow", login: "a", remote: "[2001:db8:1:3::1]:22"},
		}},
		{"ipv4-mapped ipv6 is ipv4", []step{
			{op: "fail", login: "a", remote: "[::ffff:10.0.0.1]:22", n: 3},
			{op: "deny", login: "a", remote: "10.0.0.1:22"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, clk := newTestLimiter(cfg)
			for i, st := range tt.steps {
				clk.Advance(st.advance)
				switch st.op {
				case "fail":
					failN(l, st.login, st.remote, st.n)
				case "ok":
					l.Success(st.login, st.remote)
				case "allow", "deny":
					if got, want := l.Allow(st.login, st.remote), st.op == "allow"; got != want {
						t.Fatalf("step %d: Allow(%q, %q) got %v, want %v", i, st.login, st.remote, got, want)
					}
				default:
					t.Fatalf("bad op %q", st.op)
				}
			}
		})
	}
}

func TestLimiterDisabled(t *testing.T) {
	l, _ := newTestLimiter(LimiterConfig{Disabled: true, MaxFailures: 1})
	failN(l, "a", "10.0.0.1:1", 100)
	if !l.Allow("a", "10.0.0.1:1") {
		t.Errorf("disabled limiter refused")
	}
}

func TestLimiterForgetsQuietKeys(t *testing.T) {
	l, clk := newTestLimiter(LimiterConfig{MaxFailures: 3, MaxAddrFailures: 1000, Window: time.Minute, Backoff: time.Second})
	for i := range 50 {
		l.Failure(fmt.Sprint("user", i), fmt.Sprintf("10.0.%d.1:1", i))
	}
	if got, want := l.size(), 100; got != want {
		t.Fatalf("got %d keys, want %d", got, want)
	}
	clk.Advance(time.Minute)
	l.Failure("x", "10.9.9.9:1") // triggers the sweep
	if got, want := l.size(), 2; got != want {
		t.Errorf("after a quiet window: got %d keys, want %d", got, want)
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l, _ := newTestLimiter(LimiterConfig{MaxFailures: 5, MaxAddrFailures: 1 << 20})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				remote := fmt.Sprintf("10.1.%d.%d:1", g, i%7)
				if l.Allow("u", remote) {
					l.Failure("u", remote)
				}
				if i%50 == 0 {
					l.Success("u", remote)
				}
			}
		}()
	}
	wg.Wait()
	if l.Allow("u", "10.1.0.1:1") {
		t.Errorf("a pair with many failures is still allowed")
	}
}

func TestAddrKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.1:22", "192.0.2.1"},
		{"192.0.2.1", "192.0.2.1"},
		{"[2001:db8::1]:22", "2001:db8::/64"},
		{"2001:db8::1", "2001:db8::/64"},
		{"[2001:db8::1]", "2001:db8::/64"},
		{"[fe80::1%eth0]:22", "fe80::/64"},
		{"[::ffff:192.0.2.1]:22", "192.0.2.1"},
		{"::1", "::/64"},
		{"Example.COM:22", "example.com"},
		{"", ""},
		{"garbage:::", "garbage:::"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := AddrKey(tt.in); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzAddrKey: remote addresses come from the network; any string gives a
// bounded key without panicking.
func FuzzAddrKey(f *testing.F) {
	for _, s := range []string{"192.0.2.1:22", "[2001:db8::1]:22", "::1", "[fe80::1%eth0]:1", "", ":", "[]:", "[::ffff:1.2.3.4]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if k := AddrKey(s); len(k) > maxKeyLen {
			t.Fatalf("AddrKey(%q) has %d bytes, want at most %d", s, len(k), maxKeyLen)
		}
	})
}
