package sftpd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgate/sftpgate/auth"
)

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// refusal is an Authenticator error with a reason.
type refusal struct{ why string }

func (r refusal) Error() string { return "auth: refused" }
func (r refusal) Why() string   { return r.why }

// fakeAuth accepts user/secret pairs from a map; scopes, if set before the
// server starts, gives secrets their scopes.
type fakeAuth struct {
	users  map[string]string
	scopes map[string]auth.Scopes
	calls  atomic.Int32
}

func (a *fakeAuth) Login(ctx context.Context, login, secret, remote string) (auth.Scopes, error) {
	a.calls.Add(1)
	want, ok := a.users[login]
	if !ok {
		return nil, refusal{"unknown user"}
	}
	if secret != want {
		return nil, refusal{"bad token"}
	}
	return a.scopes[secret], nil
}

// fakeMounter gives every user a directory under base and counts acquires
// and releases.
type fakeMounter struct {
	base     string
	acquired atomic.Int32
	released atomic.Int32
	fail     atomic.Bool
}

func (m *fakeMounter) Acquire(ctx context.Context, user string) (string, func(), error) {
	if m.fail.Load() {
		return "", nil, errors.New("mount: unavailable")
	}
	dir := filepath.Join(m.base, user)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	m.acquired.Add(1)
	return dir, func() { m.released.Add(1) }, nil
}

const (
	testUser  = "alice"
	testToken = "s3cr3t-t0ken-value-XYZ"
)

type testServer struct {
	srv     *Server
	addr    string
	log     *syncBuffer
	auth    *fakeAuth
	mounts  *fakeMounter
	serveCh chan error
}

// root is alice's session directory on disk.
func (ts *testServer) root(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(ts.mounts.base, testUser)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func testHostKey(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startServer runs a server on 127.0.0.1 with fast test defaults, changed
// by mod, and shuts it down at cleanup.
func startServer(t testing.TB, mod func(*Config)) *testServer {
	t.Helper()
	ts := &testServer{
		log:     &syncBuffer{},
		auth:    &fakeAuth{users: map[string]string{testUser: testToken, "bob": "bob-token"}},
		mounts:  &fakeMounter{base: t.TempDir()},
		serveCh: make(chan error, 1),
	}
	cfg := Config{
		HostKeys:     []ssh.Signer{testHostKey(t)},
		Auth:         ts.auth,
		Mounts:       ts.mounts,
		Logger:       slog.New(slog.NewTextHandler(ts.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		FailureDelay: 20 * time.Millisecond,
		GracePeriod:  time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.srv = srv
	ts.addr = l.Addr().String()
	go func() { ts.serveCh <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		select {
		case err := <-ts.serveCh:
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after Shutdown")
		}
	})
	return ts
}

func clientConfig(user string, auth ...ssh.AuthMethod) *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            user,
		Auth:            auth,
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         5 * time.Second,
	}
}

// dial opens an SSH connection as alice with her token.
func (ts *testServer) dial(t testing.TB) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", ts.addr, clientConfig(testUser, ssh.Password(testToken)))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sftp opens an SFTP session as alice.
func (ts *testServer) sftp(t testing.TB) *sftp.Client {
	t.Helper()
	c, err := sftp.NewClient(ts.dial(t))
	if err != nil {
		t.Fatalf("sftp client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// statusCode returns the SFTP status code of a client error, or 0 (the
// client turns "no such file" and "permission denied" into os errors).
func statusCode(err error) uint32 {
	var se *sftp.StatusError
	switch {
	case errors.As(err, &se):
		return se.Code
	case errors.Is(err, os.ErrNotExist):
		return 2
	case errors.Is(err, os.ErrPermission):
		return 3
	}
	return 0
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
