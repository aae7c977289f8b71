package sftpd

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// serverGoroutines lists the goroutines running server code.
func serverGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, mark := range []string{"sftpd.(*serverConn)", "sftpd.(*session)", "sftpd.(*Server)", "sftp.(*RequestServer)", "sftp.(*packetManager)"} {
			if strings.Contains(g, mark) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

func TestShutdown(t *testing.T) {
	const grace = 300 * time.Millisecond
	ts := startServer(t, func(c *Config) { c.GracePeriod = grace })
	cl := ts.sftp(t)
	f, err := cl.Create("/open-at-shutdown")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("written before shutdown")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := ts.srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d < grace {
		t.Errorf("Shutdown returned after %v, want the %v grace period first", d, grace)
	}
	select {
	case err := <-ts.serveCh:
		if !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: got %v, want ErrServerClosed", err)
		}
		ts.serveCh <- err // for the cleanup check
	case <-time.After(2 * time.Second):
		t.Fatal("Serve did not return")
	}
	if got := ts.mounts.released.Load(); got != 1 {
		t.Errorf("got %d releases, want 1", got)
	}
	got, err := os.ReadFile(filepath.Join(ts.root(t), "open-at-shutdown"))
	if err != nil || string(got) != "written before shutdown" {
		t.Errorf("file open at shutdown: got %q, %v", got, err)
	}
	if _, err := cl.Stat("/"); err == nil {
		t.Error("session still works after Shutdown")
	}
	if _, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		t.Error("still accepting after Shutdown")
	}
	if g := serverGoroutines(); len(g) > 0 {
		t.Errorf("%d server goroutines left after Shutdown:\n%s", len(g), strings.Join(g, "\n\n"))
	}
	if err := ts.srv.Serve(mustListen(t)); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown: got %v, want ErrServerClosed", err)
	}
}

func mustListen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestShutdownQuickWhenIdle(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.GracePeriod = 5 * time.Second })
	c := ts.dial(t) // connected, no session
	start := time.Now()
	if err := ts.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown with no session took %v, want it at once", d)
	}
	if _, err := c.NewSession(); err == nil {
		t.Error("connection still open after Shutdown")
	}
}

func TestShutdownContext(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.GracePeriod = 5 * time.Second })
	ts.sftp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := ts.srv.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v, want about 100ms", d)
	}
	if got := ts.mounts.released.Load(); got != 1 {
		t.Errorf("got %d releases, want 1", got)
	}
}

func TestSessionsAndKill(t *testing.T) {
	ts := startServer(t, nil)
	c1 := ts.sftp(t)
	c2 := ts.sftp(t)
	writeFile(t, c1, "/one", "12345")
	sessions := ts.srv.Sessions()
	if len(sessions) != 2 {
		t.Fatalf("got %d sessions, want 2", len(sessions))
	}
	for _, si := range sessions {
		if si.User != testUser || !strings.HasPrefix(si.Remote, "127.0.0.1:") || si.ID == "" || si.Since.IsZero() {
			t.Errorf("got %+v, want alice from 127.0.0.1", si)
		}
	}
	if sessions[0].BytesUp != 5 || sessions[0].Op != "upload /one" {
		t.Errorf("first session: got up=%d op=%q, want 5 and %q", sessions[0].BytesUp, sessions[0].Op, "upload /one")
	}

	// A file open at kill time is closed, so its data is kept.
	f, err := c2.Create("/two")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.Kill(sessions[1].ID); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	waitFor(t, "killed session gone", 2*time.Second, func() bool { return len(ts.srv.Sessions()) == 1 })
	if _, err := c2.Stat("/"); err == nil {
		t.Error("killed session still answers")
	}
	if _, err := c1.Stat("/"); err != nil {
		t.Errorf("other session: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(ts.root(t), "two")); err != nil || string(got) != "abc" {
		t.Errorf("file open at kill: got %q, %v, want %q", got, err, "abc")
	}
	if got := ts.mounts.released.Load(); got != 1 {
		t.Errorf("got %d releases, want 1", got)
	}
	if !strings.Contains(ts.log.String(), "interrupted=") {
		t.Error("upload interrupted by kill not marked in the audit event")
	}
	if err := ts.srv.Kill("nope"); !errors.Is(err, ErrNoSession) {
		t.Errorf("Kill unknown: got %v, want ErrNoSession", err)
	}
}

func TestNewConfigErrors(t *testing.T) {
	key := testHostKey(t)
	auth := &fakeAuth{}
	mounts := &fakeMounter{}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no host key", Config{Auth: auth, Mounts: mounts}},
		{"nil host key", Config{HostKeys: []ssh.Signer{nil}, Auth: auth, Mounts: mounts}},
		{"no auth", Config{HostKeys: []ssh.Signer{key}, Mounts: mounts}},
		{"no mounts", Config{HostKeys: []ssh.Signer{key}, Auth: auth}},
		{"negative sessions", Config{HostKeys: []ssh.Signer{key}, Auth: auth, Mounts: mounts, MaxSessionsPerUser: -1}},
		{"negative delay", Config{HostKeys: []ssh.Signer{key}, Auth: auth, Mounts: mounts, FailureDelay: -time.Second}},
		{"negative handles per session", Config{HostKeys: []ssh.Signer{key}, Auth: auth, Mounts: mounts, MaxHandlesPerSession: -1}},
		{"negative handles per user", Config{HostKeys: []ssh.Signer{key}, Auth: auth, Mounts: mounts, MaxHandlesPerUser: -1}},
		{"negative file size", Config{HostKeys: []ssh.Signer{key}, Auth: auth, Mounts: mounts, MaxFileSize: -1}},
		{"negative gather per session", Config{HostKeys: []ssh.Signer{key}, Auth: auth, Mounts: mounts, GatherPerSession: -1}},
		{"negative gather per user", Config{HostKeys: []ssh.Signer{key}, Auth: auth, Mounts: mounts, GatherPerUser: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); !errors.Is(err, ErrBadConfig) {
				t.Errorf("got %v, want ErrBadConfig", err)
			}
		})
	}
	s, err := New(Config{HostKeys: []ssh.Signer{key}, Auth: auth, Mounts: mounts})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.IdleTimeout != DefaultIdleTimeout || s.cfg.MaxSessionsPerUser != 64 || s.cfg.MaxAuthTries != 3 ||
		s.cfg.FailureDelay != 500*time.Millisecond || s.cfg.GracePeriod != 10*time.Second || s.cfg.HandshakeTimeout != 30*time.Second ||
		s.cfg.MaxHandlesPerSession != 256 || s.cfg.MaxHandlesPerUser != 512 || s.cfg.MaxFileSize != 5<<40 ||
		s.cfg.GatherPerSession != 8<<20 || s.cfg.GatherPerUser != 16<<20 {
		t.Errorf("defaults: got %+v", s.cfg)
	}
}

func writeFile(t *testing.T, cl *sftp.Client, name, content string) {
	t.Helper()
	f, err := cl.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOnSessionEnd checks that the hook is called once per session, with
// the final byte counts, before the session leaves Sessions().
func TestOnSessionEnd(t *testing.T) {
	type report struct {
		si     SessionInfo
		listed bool // still in Sessions() when reported
	}
	var mu sync.Mutex
	var ended []report
	var ts *testServer
	ts = startServer(t, func(c *Config) {
		c.OnSessionEnd = func(si SessionInfo) {
			r := report{si: si}
			for _, s := range ts.srv.Sessions() {
				r.listed = r.listed || s.ID == si.ID
			}
			mu.Lock()
			ended = append(ended, r)
			mu.Unlock()
		}
	})
	ts.root(t)
	c := ts.sftp(t)
	data := bytes.Repeat([]byte("x"), 12345)
	f, err := c.Create("/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor(t, "session end reported", 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ended) > 0
	})
	waitFor(t, "session gone", 5*time.Second, func() bool { return len(ts.srv.Sessions()) == 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(ended) != 1 {
		t.Fatalf("hook calls: got %d, want 1", len(ended))
	}
	if got := ended[0]; got.si.BytesUp != int64(len(data)) || got.si.User != testUser || !got.listed {
		t.Errorf("reported session: got %+v, want %d bytes up for %s, still listed when reported", got, len(data), testUser)
	}
}

// TestSessionIDs: a session id is 12 hex digits, a dash and a number; a
// connection never gets the id of a live one, even when the random draw
// gives it again, so that the sessions of two connections never share an
// id.
func TestSessionIDs(t *testing.T) {
	ts := startServer(t, nil)
	ts.sftp(t)
	first := ts.srv.Sessions()
	if len(first) != 1 || !regexp.MustCompile(`^[0-9a-f]{12}-1$`).MatchString(first[0].ID) {
		t.Fatalf("sessions: got %+v, want one with an id of 12 hex digits and -1", first)
	}
	// The draws: the id of the live connection twice, then a free one.
	clash := strings.TrimSuffix(first[0].ID, "-1")
	draws := []string{clash, clash, "00000000abcd"}
	ts.srv.mu.Lock()
	ts.srv.newConnID = func() string {
		id := draws[0]
		if len(draws) > 1 {
			draws = draws[1:]
		}
		return id
	}
	ts.srv.mu.Unlock()
	ts.sftp(t)
	var ids []string
	for _, si := range ts.srv.Sessions() {
		ids = append(ids, si.ID)
	}
	slices.Sort(ids)
	want := []string{"00000000abcd-1", first[0].ID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("session ids after a clashing draw: got %q, want %q", ids, want)
	}
}
