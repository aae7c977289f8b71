package auth

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

func newTestLimiter(cfg LimiterConfig) (*Limiter, *fakeClock) {
	clk := newFakeClock()
	return NewLimiter(cfg, clk.Now), clk
}

// failN records n failures.
func failN(l testLimiter, login, remote string, n int) {
	for range n {
		l.Failure(login, remote)
	}
}

func TestLimiterDefaults(t *testing.T) {
	l := NewLimiter(LimiterConfig{}, nil)
	want := LimiterConfig{
		MaxFailures: DefaultMaxFailures, MaxAddrFailures: DefaultMaxAddrFailures, MaxNetFailures: DefaultMaxNetFailures,
		Window: DefaultWindow, Backoff: DefaultBackoff, MaxBackoff: DefaultMaxBackoff, MaxEntries: DefaultMaxEntries,
	}
	if l.cfg != want {
		t.Errorf("got %+v, want %+v", l.cfg, want)
	}
}

func TestLimiter(t *testing.T) {
	cfg := LimiterConfig{MaxFailures: 3, MaxAddrFailures: 6, MaxNetFailures: 10, Window: time.Minute, Backoff: 10 * time.Second, MaxBackoff: 35 * time.Second}
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
		{"success clears the pair, not the address", []step{
			{op: "fail", login: "a", remote: "10.0.0.1:1", n: 2},
			{op: "fail", login: "b", remote: "10.0.0.1:1", n: 2},
			{op: "ok", login: "a", remote: "10.0.0.1:2"},
			{op: "fail", login: "a", remote: "10.0.0.1:1", n: 1},
			// the pair restarted at the success: 1 < 3
			{op: "allow", login: "a", remote: "10.0.0.1:1"},
			// the address did not: 5 failures, then a 6th locks it
			{op: "allow", login: "d", remote: "10.0.0.1:1"},
			{op: "fail", login: "c", remote: "10.0.0.1:1", n: 1},
			{op: "deny", login: "d", remote: "10.0.0.1:1"},
			{op: "deny", login: "a", remote: "10.0.0.1:1"},
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
		{"ipv6 /48 counted across its /64s", []step{
			// 10 /64s of one /48, one failure each: under the /64 limit,
			// at the /48 one
			{op: "fail", login: "a", remote: "[2001:db8:5:0::1]:22", n: 1},
			{op: "fail", login: "a", remote: "[2001:db8:5:1::1]:22", n: 1},
			{op: "fail", login: "a", remote: "[2001:db8:5:2::1]:22", n: 1},
			{op: "fail", login: "a", remote: "[2001:db8:5:3::1]:22", n: 1},
			{op: "fail", login: "a", remote: "[2001:db8:5:4::1]:22", n: 1},
			{op: "fail", login: "a", remote: "[2001:db8:5:5::1]:22", n: 1},
			{op: "fail", login: "a", remote: "[2001:db8:5:6::1]:22", n: 1},
			{op: "fail", login: "a", remote: "[2001:db8:5:7::1]:22", n: 1},
			{op: "fail", login: "a", remote: "[2001:db8:5:8::1]:22", n: 1},
			{op: "allow", login: "b", remote: "[2001:db8:5:ffff::1]:22"},
			{op: "fail", login: "a", remote: "[2001:db8:5:9::1]:22", n: 1},
			{op: "deny", login: "b", remote: "[2001:db8:5:ffff::1]:22"},
			// another /48 is not affected
			{op: "allow", login: "b", remote: "[2001:db8:6::1]:22"},
			{advance: 10 * time.Second, op: "allow", login: "b", remote: "[2001:db8:5:ffff::1]:22"},
		}},
		{"ipv4-mapped ipv6 is ipv4", []step{
			{op: "fail", login: "a", remote: "[::ffff:10.0.0.1]:22", n: 3},
			{op: "deny", login: "a", remote: "10.0.0.1:22"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachLimiter(t, cfg, func(t *testing.T, l testLimiter, clk *fakeClock) {
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
		})
	}
}

func TestLimiterDisabled(t *testing.T) {
	eachLimiter(t, LimiterConfig{Disabled: true, MaxFailures: 1}, func(t *testing.T, l testLimiter, _ *fakeClock) {
		failN(l, "a", "10.0.0.1:1", 100)
		if !l.Allow("a", "10.0.0.1:1") {
			t.Errorf("disabled limiter refused")
		}
	})
}

func TestLimiterForgetsQuietKeys(t *testing.T) {
	eachLimiter(t, LimiterConfig{MaxFailures: 3, MaxAddrFailures: 1000, Window: time.Minute, Backoff: time.Second}, func(t *testing.T, l testLimiter, clk *fakeClock) {
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
	})
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

// TestLimiterBoundedMemory: failures from 100,000 distinct addresses (half
// IPv4, half IPv6 in distinct /48s) leave at most MaxEntries keys, and the
// heap grows by a bounded amount.
func TestLimiterBoundedMemory(t *testing.T) {
	const addrs = 100000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l, _ := newTestLimiter(LimiterConfig{})
	for i := range addrs {
		remote := fmt.Sprintf("10.%d.%d.%d:22", i>>16&0xff, i>>8&0xff, i&0xff)
		if i%2 == 1 {
			remote = fmt.Sprintf("[2001:%x:%x::1]:22", i>>16, i&0xffff)
		}
		l.Failure(fmt.Sprintf("user%d", i%1000), remote)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	n := l.size()
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d addresses: %d keys held (bound %d), heap +%.1f MiB (%.0f B per key)",
		addrs, n, DefaultMaxEntries, float64(grown)/(1<<20), float64(grown)/float64(max(n, 1)))
	if n > DefaultMaxEntries {
		t.Errorf("got %d keys, want at most %d", n, DefaultMaxEntries)
	}
	if n < DefaultMaxEntries/2 {
		t.Errorf("got %d keys, want the table used (about %d)", n, DefaultMaxEntries)
	}
	const maxHeap = 32 << 20
	if grown > maxHeap {
		t.Errorf("heap grew by %d bytes, want at most %d", grown, maxHeap)
	}
	runtime.KeepAlive(l)
}

// TestLimiterEvictsLeastRecentlyUsed: a key in use survives a flood of new
// keys; an old quiet one goes.
func TestLimiterEvictsLeastRecentlyUsed(t *testing.T) {
	l, _ := newTestLimiter(LimiterConfig{MaxFailures: 3, MaxAddrFailures: 1000, MaxEntries: 100})
	failN(l, "old", "10.9.0.1:1", 2)
	failN(l, "kept", "10.9.0.2:1", 2)
	for i := range 200 {
		l.Allow("kept", "10.9.0.2:1") // used: moves to the front
		l.Failure("x", fmt.Sprintf("10.8.%d.%d:1", i/250, i%250))
	}
	if got := l.size(); got > 100 {
		t.Errorf("got %d keys, want at most 100", got)
	}
	l.Failure("kept", "10.9.0.2:1")
	if l.Allow("kept", "10.9.0.2:1") {
		t.Errorf("a key in use was forgotten: 3rd failure did not lock the pair out")
	}
	l.Failure("old", "10.9.0.1:1")
	if !l.Allow("old", "10.9.0.1:1") {
		t.Errorf("an old quiet key was kept: its 3rd failure locked the pair out")
	}
}

// TestLimiterInsider: a user with a valid account who logs in once every
// 19 failures of other logins from the same address is refused once the
// address has had MaxAddrFailures failures: successes do not reset it.
func TestLimiterInsider(t *testing.T) {
	eachLimiter(t, LimiterConfig{}, func(t *testing.T, l testLimiter, clk *fakeClock) {
		const remote = "10.7.0.1:22"
		ran, refused := 0, 0
		for round := range 20 {
			for i := range 20 {
				login := fmt.Sprintf("victim%d-%d", round, i)
				good := i == 19
				if good {
					login = "insider"
				}
				if !l.Allow(login, remote) {
					refused++
					continue
				}
				ran++
				if good {
					l.Success(login, remote)
				} else {
					l.Failure(login, remote)
				}
				clk.Advance(time.Second)
			}
		}
		t.Logf("insider pattern: %d attempts ran, %d refused", ran, refused)
		if refused == 0 {
			t.Fatalf("got no refusal, want the address locked out")
		}
		// Within the first window (10 minutes, 1 s per attempt) at most
		// MaxAddrFailures failures and the insider's logins may run.
		if max := DefaultMaxAddrFailures + DefaultMaxAddrFailures/19 + 1; ran > max*3 {
			t.Errorf("got %d attempts run, want far fewer (about %d per window)", ran, max)
		}
	})
}
