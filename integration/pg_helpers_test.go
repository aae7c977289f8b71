package integration

import (
	"strings"
	"sync"
	"testing"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// sharedPostgres is one PostgreSQL server for the tests of the run that
// use one, started on first use and stopped, its directory removed, by
// TestMain; each test gets its own database. Tests that stop the server
// start their own (testenv.StartPostgresT).
var sharedPostgres struct {
	once sync.Once
	p    *testenv.Postgres
	err  error
}

// stopSharedPostgres stops the shared PostgreSQL server, if one was
// started; TestMain calls it after the tests.
func stopSharedPostgres() {
	if sharedPostgres.p != nil {
		sharedPostgres.p.Close()
	}
}

// postgresServer returns the shared PostgreSQL server, starting it on
// first use; the test is skipped if PostgreSQL is not installed and
// SFTPGATE_REQUIRE_POSTGRES is unset.
func postgresServer(t testing.TB) *testenv.Postgres {
	t.Helper()
	sharedPostgres.once.Do(func() { sharedPostgres.p, sharedPostgres.err = testenv.StartPostgres() })
	if sharedPostgres.err != nil {
		testenv.SkipNoPostgres(t, sharedPostgres.err)
		t.Fatalf("start PostgreSQL: %v", sharedPostgres.err)
	}
	return sharedPostgres.p
}

// Identity stores a test can run against (gwOptions.database, newCLIOn).
const (
	storeSQLite   = ""         // <workdir>/sftpgate.db, the default
	storePostgres = "postgres" // a new database on the shared PostgreSQL server
)

// eachStore runs f against each identity store, as subtests "sqlite" and
// "postgres": one suite, two stores.
func eachStore(t *testing.T, f func(t *testing.T, store string)) {
	t.Run("sqlite", func(t *testing.T) { f(t, storeSQLite) })
	t.Run("postgres", func(t *testing.T) { f(t, storePostgres) })
}

// databaseKey returns the value of the "database" key for store: "" (no
// key) for SQLite, the URL of a new database for storePostgres, store
// itself for a postgres:// URL.
func databaseKey(t testing.TB, store string) string {
	t.Helper()
	switch {
	case store == storeSQLite:
		return ""
	case store == storePostgres:
		return postgresServer(t).NewDatabase(t)
	case strings.HasPrefix(store, "postgres://"):
		return store
	}
	t.Fatalf("unknown store %q", store)
	return ""
}
