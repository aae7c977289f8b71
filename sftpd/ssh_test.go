package sftpd

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

func TestLogin(t *testing.T) {
	ts := startServer(t, nil)
	tests := []struct {
		name   string
		user   string
		auth   ssh.AuthMethod
		ok     bool
		reason string
	}{
		{"password ok", testUser, ssh.Password(testToken), true, ""},
		{"password wrong", testUser, ssh.Password("wrong-token-123"), false, "bad token"},
		{"unknown user", "mallory", ssh.Password(testToken), false, "unknown user"},
		{"keyboard-interactive ok", testUser, ssh.KeyboardInteractive(answer(t, testToken)), true, ""},
		{"keyboard-interactive wrong", testUser, ssh.KeyboardInteractive(answer(t, "wrong-kbd-456")), false, "bad token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ssh.Dial("tcp", ts.addr, clientConfig(tt.user, tt.auth))
			if tt.ok {
				if err != nil {
					t.Fatalf("got %v, want login ok", err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("got login ok, want refused")
			}
			want := "reason=\"" + tt.reason + "\""
			waitFor(t, "refusal logged", 2*time.Second, func() bool { return strings.Contains(ts.log.String(), want) })
		})
	}
	logs := ts.log.String()
	for _, secret := range []string{testToken, "wrong-token-123", "wrong-kbd-456"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log output contains the secret %q", secret)
		}
	}
	if !strings.Contains(logs, "result=ok") || !strings.Contains(logs, "result=refused") {
		t.Errorf("got log %q, want login ok and refused events", logs)
	}
}

// answer is a keyboard-interactive client that checks it is asked one
// question with echo off and answers it.
func answer(t *testing.T, token string) ssh.KeyboardInteractiveChallenge {
	return func(name, instruction string, questions []string, echos []bool) ([]string, error) {
		if len(questions) != 1 || echos[0] {
			t.Errorf("got questions %q echo %v, want one question with echo off", questions, echos)
			return nil, errors.New("unexpected questions")
		}
		return []string{token}, nil
	}
}

func TestRefusalReasonRedactsSecret(t *testing.T) {
	got := refusalReason(errors.New("token abc123 unknown"), "abc123")
	if want := "token [redacted] unknown"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	got = refusalReason(refusal{"expired"}, "abc123")
	if want := "expired"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestFailureDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	ts := startServer(t, func(c *Config) { c.FailureDelay = delay })
	for _, user := range []string{testUser, "nobody"} {
		start := time.Now()
		c, err := ssh.Dial("tcp", ts.addr, clientConfig(user, ssh.Password("bad")))
		elapsed := time.Since(start)
		if err == nil {
			c.Close()
			t.Fatal("got login ok, want refused")
		}
		if elapsed < delay {
			t.Errorf("user %s: refusal took %v, want at least %v", user, elapsed, delay)
		}
	}
}

func TestMaxAuthTries(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxAuthTries = 2 })
	tries := 0
	auth := ssh.RetryableAuthMethod(ssh.PasswordCallback(func() (string, error) {
		tries++
		return "bad", nil
	}), 10)
	c, err := ssh.Dial("tcp", ts.addr, clientConfig(testUser, auth))
	if err == nil {
		c.Close()
		t.Fatal("got login ok, want refused")
	}
	if got := ts.auth.calls.Load(); got != 2 {
		t.Errorf("got %d checks, want 2 (MaxAuthTries)", got)
	}
	if tries > 3 {
		t.Errorf("client could try %d times, want the server to stop it after 2", tries)
	}
}

func TestShellAndExecRefused(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.dial(t)
	for _, mode := range []string{"shell", "exec"} {
		t.Run(mode, func(t *testing.T) {
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var stderr bytes.Buffer
			s.Stderr = &stderr
			if mode == "shell" {
				if err := s.Shell(); err != nil {
					t.Fatalf("shell: got %v, want the request accepted", err)
				}
				err = s.Wait()
			} else {
				err = s.Run("ls /")
			}
			var ee *ssh.ExitError
			if !errors.As(err, &ee) || ee.ExitStatus() != 1 {
				t.Errorf("got %v, want exit status 1", err)
			}
			if got, want := stderr.String(), sftpOnlyMessage+"\n"; got != want {
				t.Errorf("got stderr %q, want %q", got, want)
			}
		})
	}
}

func TestSessionRequestsRefused(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.dial(t)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err == nil {
		t.Error("pty-req: got accepted, want refused")
	}
	if err := s.Setenv("LANG", "C"); err == nil {
		t.Error("env: got accepted, want refused")
	}
	if err := s.RequestSubsystem("shell-not-sftp"); err == nil {
		t.Error("subsystem other than sftp: got accepted, want refused")
	}
	ok, _, err := c.SendRequest("auth-agent-req@openssh.com", true, nil)
	if err != nil || ok {
		t.Errorf("global request: got ok=%v err=%v, want refused", ok, err)
	}
	ok, _, err = c.SendRequest("tcpip-forward", true, ssh.Marshal(struct {
		Addr string
		Port uint32
	}{"127.0.0.1", 0}))
	if err != nil || ok {
		t.Errorf("tcpip-forward: got ok=%v err=%v, want refused", ok, err)
	}
}

func TestDirectTCPIPRefused(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.dial(t)
	conn, err := c.Dial("tcp", ts.addr)
	if err == nil {
		conn.Close()
		t.Fatal("direct-tcpip: got a connection, want refused")
	}
	var oe *ssh.OpenChannelError
	if !errors.As(err, &oe) || oe.Reason != ssh.Prohibited {
		t.Errorf("got %v, want OpenChannelError Prohibited", err)
	}
	_, _, err = c.OpenChannel("x11", nil)
	if !errors.As(err, &oe) || oe.Reason != ssh.Prohibited {
		t.Errorf("x11 channel: got %v, want OpenChannelError Prohibited", err)
	}
}

func TestSessionLimit(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxSessionsPerUser = 2 })
	c1, c2 := ts.dial(t), ts.dial(t)
	s1, err := c1.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	s2, err := c2.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	_, err = c1.NewSession()
	var oe *ssh.OpenChannelError
	if !errors.As(err, &oe) || oe.Reason != ssh.ResourceShortage {
		t.Fatalf("third session: got %v, want ResourceShortage", err)
	}
	if want := "too many sessions for alice (limit 2)"; oe.Message != want {
		t.Errorf("got message %q, want %q", oe.Message, want)
	}
	// Another user is not affected.
	bob, err := ssh.Dial("tcp", ts.addr, clientConfig("bob", ssh.Password("bob-token")))
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	sb, err := bob.NewSession()
	if err != nil {
		t.Fatalf("bob: got %v, want a session", err)
	}
	sb.Close()
	// A slot frees when a session ends.
	s1.Close()
	s2.Close()
	waitFor(t, "slots freed", 2*time.Second, func() bool { return len(ts.srv.Sessions()) == 0 })
	s3, err := c1.NewSession()
	if err != nil {
		t.Fatalf("after close: got %v, want a session", err)
	}
	s3.Close()
}

func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	cl := ts.sftp(t)
	// Activity keeps the session open past the timeout.
	for range 5 {
		time.Sleep(100 * time.Millisecond)
		if _, err := cl.Stat("/"); err != nil {
			t.Fatalf("active session: %v", err)
		}
	}
	start := time.Now()
	done := make(chan struct{})
	go func() { cl.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("idle session not closed")
	}
	if _, err := cl.Stat("/"); err == nil {
		t.Error("stat after idle close: got ok, want error")
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("closed after %v idle, want about 300ms", d)
	}
	waitFor(t, "mount released", 2*time.Second, func() bool { return ts.mounts.released.Load() == 1 })
	if !strings.Contains(ts.log.String(), "idle timeout") {
		t.Error("idle close not logged")
	}
}

func TestIdleConnectionWithoutSession(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.IdleTimeout = 200 * time.Millisecond })
	c := ts.dial(t)
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("connection without session not closed after the idle timeout")
	}
}

func TestMountAcquiredAndReleasedOnce(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.dial(t)
	for i := 1; i <= 3; i++ {
		cl, err := sftp.NewClient(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := ts.mounts.acquired.Load(); got != int32(i) {
			t.Errorf("got %d acquires, want %d", got, i)
		}
		if _, err := cl.ReadDir("/"); err != nil {
			t.Fatal(err)
		}
		cl.Close()
		waitFor(t, "release", 2*time.Second, func() bool { return ts.mounts.released.Load() == int32(i) })
	}
	// Shell sessions do not touch the mount.
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	s.Run("true")
	time.Sleep(50 * time.Millisecond)
	if a, r := ts.mounts.acquired.Load(), ts.mounts.released.Load(); a != 3 || r != 3 {
		t.Errorf("got %d acquires and %d releases, want 3 and 3", a, r)
	}
}

func TestMountUnavailable(t *testing.T) {
	ts := startServer(t, nil)
	ts.mounts.fail.Store(true)
	c := ts.dial(t)
	if _, err := sftp.NewClient(c); err == nil {
		t.Fatal("got an sftp session, want the subsystem refused")
	}
	if !strings.Contains(ts.log.String(), "mount: unavailable") {
		t.Error("mount failure not logged")
	}
	waitFor(t, "session gone", 2*time.Second, func() bool { return len(ts.srv.Sessions()) == 0 })
}

func TestHandshakeTimeout(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.HandshakeTimeout = 200 * time.Millisecond })
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(3 * time.Second))
	// Say nothing: the server must hang up.
	start := time.Now()
	_, err = io.Copy(io.Discard, nc)
	if err != nil {
		t.Fatalf("got %v, want the server to close the connection", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed after %v, want about 200ms", d)
	}
}

func TestIdleSessionWithoutSftp(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.IdleTimeout = 200 * time.Millisecond })
	c := ts.dial(t)
	if _, err := c.NewSession(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "session registered", time.Second, func() bool { return len(ts.srv.Sessions()) == 1 })
	waitFor(t, "session without sftp closed", 3*time.Second, func() bool { return len(ts.srv.Sessions()) == 0 })
}

// The server offers AES only: a client with nothing else gets in with
// each of them; one that offers only chacha20-poly1305 is refused at the
// handshake (OpenSSH, which lists it first, then takes AES).
func TestCiphers(t *testing.T) {
	ts := startServer(t, nil)
	for _, cipher := range DefaultCiphers {
		cfg := clientConfig(testUser, ssh.Password(testToken))
		cfg.Ciphers = []string{cipher}
		c, err := ssh.Dial("tcp", ts.addr, cfg)
		if err != nil {
			t.Errorf("%s: %v", cipher, err)
			continue
		}
		c.Close()
	}
	cfg := clientConfig(testUser, ssh.Password(testToken))
	cfg.Ciphers = []string{ssh.CipherChaCha20Poly1305}
	if c, err := ssh.Dial("tcp", ts.addr, cfg); err == nil {
		c.Close()
		t.Errorf("chacha20-poly1305 only: handshake succeeded, want no common cipher")
	} else if !strings.Contains(err.Error(), "no common algorithm") {
		t.Errorf("chacha20-poly1305 only: %v, want no common algorithm", err)
	}
}
