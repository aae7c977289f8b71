package auth

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeClock is an injectable clock that only moves when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// openAtOnce opens n stores with open, all at once (as nodes, or the CLI
// and the daemon, may), fails the test if any open fails or if they do
// not share one signing key, and closes them at cleanup.
func openAtOnce(t *testing.T, n int, open func() (*Store, error)) []*Store {
	t.Helper()
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			stores[i], errs[i] = open()
		}()
	}
	close(start)
	wg.Wait()
	for i, s := range stores {
		if s != nil {
			t.Cleanup(func() { s.Close() })
		}
		if errs[i] != nil {
			t.Fatalf("open %d of %d at once: %v", i, n, errs[i])
		}
	}
	for i, s := range stores[1:] {
		if !bytes.Equal(s.key, stores[0].key) {
			t.Fatalf("store %d of %d opened at once: signing key differs from store 0's", i+1, n)
		}
	}
	return stores
}

// openTestStore opens a store in a fresh temp dir, closed at cleanup.
func openTestStore(t testing.TB, opts ...Option) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", "sftpgate.db")
	s, err := Open(path, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// mustUser creates a user or fails the test.
func mustUser(t testing.TB, s *Store, login string) {
	t.Helper()
	if _, err := s.CreateUser(context.Background(), login); err != nil {
		t.Fatalf("CreateUser(%q): %v", login, err)
	}
}

// mustMint mints a token or fails the test.
func mustMint(t testing.TB, s *Store, login string, o MintOptions) (string, Token) {
	t.Helper()
	secret, tok, err := s.MintToken(context.Background(), login, o)
	if err != nil {
		t.Fatalf("MintToken(%q): %v", login, err)
	}
	return secret, tok
}

// reasonOf returns the refusal reason of err, "" for nil, or "error: …"
// for an error that is not a refusal.
func reasonOf(err error) string {
	if err == nil {
		return ""
	}
	var re *RefusedError
	if errors.As(err, &re) {
		return re.Why()
	}
	return "error: " + err.Error()
}
