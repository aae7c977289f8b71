package integration

import (
	"bytes"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestGatewayShellRefused asks for a shell and for commands: the gateway
// answers with its message and a non-zero exit status.
func TestGatewayShellRefused(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)
	c := g.mustSSH("alice", tok)

	for _, tt := range []struct {
		name string
		run  func(*ssh.Session) error
	}{
		{"shell", func(s *ssh.Session) error {
			if err := s.Shell(); err != nil {
				return err
			}
			return s.Wait()
		}},
		{"exec ls", func(s *ssh.Session) error { return s.Run("ls") }},
		{"exec scp", func(s *ssh.Session) error { return s.Run("scp -t /personal-files") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := c.NewSession()
			if err != nil {
				t.Fatalf("new session: %v", err)
			}
			defer s.Close()
			var stdout, stderr bytes.Buffer
			s.Stdout, s.Stderr = &stdout, &stderr
			done := make(chan error, 1)
			go func() { done <- tt.run(s) }()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("%s: no answer after 30s", tt.name)
			}
			var exit *ssh.ExitError
			if !errors.As(err, &exit) || exit.ExitStatus() == 0 {
				t.Errorf("%s: got %v, want a non-zero exit status", tt.name, err)
			}
			if got, want := strings.TrimSpace(stdout.String()+stderr.String()), "This service allows SFTP connections only."; got != want {
				t.Errorf("%s: got output %q, want %q", tt.name, got, want)
			}
		})
	}

	// The connection is still usable for SFTP after the refusals.
	sc := newSFTP(t, c)
	if _, err := sc.ReadDir("/"); err != nil {
		t.Errorf("sftp after refused shells: %v", err)
	}
}

// TestGatewayIdleTimeout leaves a session idle past idleTimeout: the
// gateway closes it; an active one stays.
func TestGatewayIdleTimeout(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{idleTimeout: "3s"})
	tok := g.addUser("alice", personalWS)

	idle := g.mustSSH("alice", tok)
	idleSFTP := newSFTP(t, idle)
	if _, err := idleSFTP.ReadDir("/"); err != nil {
		t.Fatalf("ReadDir: %v", err)
	}
	active := newSFTP(t, g.mustSSH("alice", tok))

	closed := make(chan error, 1)
	go func() { closed <- idle.Wait() }()
	start := time.Now()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-closed:
			if d := time.Since(start); d < 2*time.Second {
				t.Errorf("idle session closed after %v, want about 3s", d)
			}
			if _, err := active.Getwd(); err != nil {
				t.Errorf("active session: got %v, want it still open", err)
			}
			if _, err := active.ReadDir("/"); err != nil {
				t.Errorf("active session after the idle one closed: %v", err)
			}
			if _, err := idleSFTP.ReadDir("/"); err == nil {
				t.Errorf("idle session: got a listing after the timeout, want an error")
			}
			return
		case <-tick.C:
			if _, err := active.ReadDir("/"); err != nil {
				t.Fatalf("active session: %v", err)
			}
			if time.Since(start) > 20*time.Second {
				t.Fatalf("idle session still open %v after, want closed after 3s", time.Since(start))
			}
		}
	}
}

// TestGatewaySessionLimit opens maxSessionsPerUser (2) SFTP sessions: the
// third one is refused, other users are not affected, and a slot freed by
// closing a session can be used again.
func TestGatewaySessionLimit(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{maxSessions: 2})
	tok := g.addUser("alice", personalWS)
	bobTok := g.addUser("bob", personalWS)

	first := g.mustSSH("alice", tok)
	newSFTP(t, first)
	newSFTP(t, g.mustSSH("alice", tok))

	third := func() error {
		c, err := g.login("alice", tok)
		if err != nil {
			return err
		}
		defer c.Close()
		s, err := c.NewSession()
		if err != nil {
			return err
		}
		defer s.Close()
		return s.RequestSubsystem("sftp")
	}
	if err := third(); err == nil {
		t.Errorf("3rd session of alice with maxSessionsPerUser 2: got success, want refused")
	}
	if _, err := g.login("bob", bobTok); err != nil {
		t.Errorf("bob while alice is at her limit: %v", err)
	}
	first.Close()
	if !waitFor(10*time.Second, 100*time.Millisecond, func() bool { return third() == nil }) {
		t.Errorf("after closing a session: got the new one refused, want accepted")
	}
}

// TestGatewayMountLifecycle checks that a user's view is mounted at
// <mountRoot>/<user> while a session is open, unmounted some time after
// the last session ends (30 s in the daemon), and mounted again at the
// next login.
func TestGatewayMountLifecycle(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)
	view := filepath.Join(g.mounts, "alice")

	c := g.mustSSH("alice", tok)
	sc := newSFTP(t, c)
	writeFile(t, sc, "/personal-files/kept.txt", "kept")
	if got := mountsUnder(t, g.mounts); !slices.Equal(got, []string{view}) {
		t.Fatalf("mounts with a session open: got %q, want [%s]", got, view)
	}
	sc.Close()
	c.Close()
	if !waitFor(90*time.Second, 500*time.Millisecond, func() bool { return len(mountsUnder(t, g.mounts)) == 0 }) {
		t.Fatalf("mounts 90s after the last session: got %q, want none", mountsUnder(t, g.mounts))
	}
	sc = g.mustSFTP("alice", tok)
	if b, err := readAll(sc, "/personal-files/kept.txt"); err != nil || b != "kept" {
		t.Errorf("after remount: got %q, %v, want %q", b, err, "kept")
	}
	if got := mountsUnder(t, g.mounts); !slices.Equal(got, []string{view}) {
		t.Errorf("mounts after logging in again: got %q, want [%s]", got, view)
	}
}
