package auth

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// The PostgreSQL server of this test binary, started at the first test
// that needs it and stopped by TestMain; each test gets its own database.
var testPG struct {
	once sync.Once
	p    *testenv.Postgres
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if testPG.p != nil {
		testPG.p.Close()
	}
	os.Exit(code)
}

// sharedPostgres returns the test binary's PostgreSQL server, skipping t
// if PostgreSQL is not installed (and not required).
func sharedPostgres(t testing.TB) *testenv.Postgres {
	t.Helper()
	testPG.once.Do(func() { testPG.p, testPG.err = testenv.StartPostgres() })
	if testPG.err != nil {
		testenv.SkipNoPostgres(t, testPG.err)
		t.Fatal(testPG.err)
	}
	return testPG.p
}

// opener opens a fresh, empty store for a test (closed at cleanup) and
// returns it with its location: a file path or a postgres:// URL, which
// reopen opens again.
type opener func(t testing.TB, opts ...Option) (*Store, string)

// openPostgresTestStore opens a store in a new database of the shared
// PostgreSQL server.
func openPostgresTestStore(t testing.TB, opts ...Option) (*Store, string) {
	t.Helper()
	u := sharedPostgres(t).NewDatabase(t)
	s, err := OpenPostgres(u, opts...)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, u
}

// reopen opens the store at loc (a path or a postgres:// URL) again.
func reopen(loc string, opts ...Option) (*Store, error) {
	if IsPostgresURL(loc) {
		return OpenPostgres(loc, opts...)
	}
	return Open(loc, opts...)
}

// eachStore runs f against SQLite and against PostgreSQL, as subtests
// "sqlite" and "postgres": one suite, two stores.
func eachStore(t *testing.T, f func(t *testing.T, open opener)) {
	t.Run("sqlite", func(t *testing.T) { f(t, openTestStore) })
	t.Run("postgres", func(t *testing.T) { f(t, openPostgresTestStore) })
}

// testLimiter is what the limiter rule tests drive: the in-memory Limiter
// or the shared one of a PostgreSQL store.
type testLimiter interface {
	Allow(login, remote string) bool
	Failure(login, remote string)
	Success(login, remote string)
	size() int
}

// sharedTestLimiter drives a dbLimiter as a testLimiter.
type sharedTestLimiter struct {
	t testing.TB
	l *dbLimiter
}

func (s sharedTestLimiter) Allow(login, remote string) bool {
	ok, err := s.l.allow(context.Background(), login, remote)
	if err != nil {
		s.t.Errorf("allow: %v", err)
	}
	return ok
}
func (s sharedTestLimiter) Failure(login, remote string) {
	s.l.failure(context.Background(), login, remote)
}
func (s sharedTestLimiter) Success(login, remote string) {
	s.l.success(context.Background(), login, remote)
}
func (s sharedTestLimiter) size() int {
	n, err := s.l.size(context.Background())
	if err != nil {
		s.t.Errorf("size: %v", err)
	}
	return n
}

// eachLimiter runs f against the in-memory limiter and the limiter of a
// PostgreSQL store, both with cfg and a fake clock.
func eachLimiter(t *testing.T, cfg LimiterConfig, f func(t *testing.T, l testLimiter, clk *fakeClock)) {
	t.Run("memory", func(t *testing.T) {
		l, clk := newTestLimiter(cfg)
		f(t, l, clk)
	})
	t.Run("postgres", func(t *testing.T) {
		clk := newFakeClock()
		s, _ := openPostgresTestStore(t, WithClock(clk.Now), WithLimiter(cfg))
		f(t, sharedTestLimiter{t, s.lim.(*dbLimiter)}, clk)
	})
}
