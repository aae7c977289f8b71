package auth

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// BusyTimeout is how long a statement waits for another connection or
// process (the CLI and the daemon share the file) to release a lock before
// it fails with SQLITE_BUSY.
const BusyTimeout = 10 * time.Second

// hmacKeyLen is the size of the token-signing key, generated on first open.
const hmacKeyLen = 32

// Store is the identity store: users, workspaces, grants, personal tokens
// and the token-signing key, in one SQLite file (Open) or a PostgreSQL
// database (OpenPostgres). It is safe for concurrent use, and several
// processes may open the same file or database at once.
type Store struct {
	db  *db
	key []byte // HMAC-SHA256 key for tokens, read once at Open
	now func() time.Time
	// dbc reads the database's clock (PostgreSQL); nil with SQLite, whose
	// clock is this machine's (see sharedNow).
	dbc *dbClock
	lim failureCounter
	// where names the store in errors: "sqlite <path>" or
	// "postgres <host:port>" (never a password).
	where string

	// wsem (capacity 1) serialises this process's writes to SQLite, so
	// that they queue here, in order and cancellable, rather than in
	// SQLite's sleeping busy handler; other processes are handled by
	// BusyTimeout. Nil for PostgreSQL, which has row locks.
	wsem chan struct{}
}

// Option configures Open.
type Option func(*options)

type options struct {
	now     func() time.Time
	limiter LimiterConfig
}

// WithClock makes the Store (and its limiter) read the time from now
// instead of time.Now (nil means time.Now); for tests.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithLimiter overrides the failed-login limiter's defaults.
func WithLimiter(c LimiterConfig) Option {
	return func(o *options) { o.limiter = c }
}

// Open opens the store at path, creating the file (mode 0600) and its
// directory (mode 0700) if needed, applying the schema migrations and
// generating the token-signing key on first use.
func Open(path string, opts ...Option) (*Store, error) {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if o.now == nil {
		o.now = time.Now
	}
	if path == "" {
		return nil, invalid("store path", "must not be empty")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("auth: open %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("auth: open %s: %w", path, err)
	}
	// Create the file ourselves so that it is private: it holds the
	// signing key. SQLite gives the -wal and -shm files the same mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("auth: open %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("auth: open %s: %w", path, err)
	}

	sdb, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return nil, fmt.Errorf("auth: open %s: %w", path, err)
	}
	sdb.SetMaxOpenConns(8)
	sdb.SetMaxIdleConns(4)
	sdb.SetConnMaxIdleTime(5 * time.Minute)

	s := &Store{
		db:    &db{DB: sdb, dialect: dialectSQLite},
		now:   o.now,
		lim:   memLimiter{NewLimiter(o.limiter, o.now)},
		wsem:  make(chan struct{}, 1),
		where: "sqlite " + abs,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*BusyTimeout)
	defer cancel()
	// While another process is creating the file (switching it to WAL,
	// migrating), SQLite may answer SQLITE_BUSY at once instead of waiting
	// in its busy handler: retry until the deadline.
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		err = s.init(ctx)
		if err == nil {
			return s, nil
		}
		if !isBusy(err) || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	sdb.Close()
	return nil, fmt.Errorf("auth: open %s: %w", path, err)
}

// dsn builds the driver's URI for an absolute path: WAL so that readers and
// one writer from several processes run at once, synchronous=NORMAL (safe
// with WAL), foreign keys on, and BEGIN IMMEDIATE for transactions so that
// two writers never deadlock on a lock upgrade.
func dsn(abs string) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(filepath.ToSlash(abs))
	return "file:" + esc +
		"?_pragma=busy_timeout(" + fmt.Sprint(BusyTimeout.Milliseconds()) + ")" +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(NORMAL)" +
		"&_pragma=foreign_keys(1)" +
		"&_txlock=immediate"
}

// init applies the migrations and loads (or creates) the signing key.
func (s *Store) init(ctx context.Context) error {
	migrate := migrateSQLite
	if s.db.dialect == dialectPostgres {
		migrate = migratePostgres
	}
	if err := migrate(ctx, s.db); err != nil {
		return err
	}
	key := make([]byte, hmacKeyLen)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	// Two processes opening a new file at once both try; the first wins.
	err := s.write(ctx, func() error {
		_, err := s.db.ExecContext(ctx, `INSERT INTO meta(name, value) VALUES ('hmac_key', ?) ON CONFLICT(name) DO NOTHING`, key)
		return err
	})
	if err != nil {
		return fmt.Errorf("auth: create signing key: %w", err)
	}
	var got []byte
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'hmac_key'`).Scan(&got); err != nil {
		return fmt.Errorf("auth: read signing key: %w", err)
	}
	if len(got) != hmacKeyLen {
		return fmt.Errorf("auth: signing key has %d bytes, want %d", len(got), hmacKeyLen)
	}
	s.key = got
	return nil
}

// Close closes the database. Check still refuses malformed and badly
// signed tokens afterwards (that needs no store); everything else fails.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("auth: close: %w", err)
	}
	return nil
}

// write runs f holding the process-wide write semaphore, or returns the
// context's error if ctx ends first.
func (s *Store) write(ctx context.Context, f func() error) error {
	if s.wsem == nil {
		return f()
	}
	select {
	case s.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.wsem }()
	return f()
}

// writeTx runs f in a transaction (BEGIN IMMEDIATE with SQLite),
// committing if it returns nil.
func (s *Store) writeTx(ctx context.Context, f func(tx *dbTx) error) error {
	return s.write(ctx, func() error {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := f(tx); err != nil {
			tx.Rollback() //nolint:errcheck // the error from f matters more
			return err
		}
		return tx.Commit()
	})
}

// nanos stores a time; the zero time is 0.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromNanos is the inverse of nanos.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// isBusy reports whether err is SQLITE_BUSY or SQLITE_LOCKED.
func isBusy(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	c := se.Code() & 0xff
	return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
}

// isConstraint reports whether err is a constraint violation (UNIQUE,
// PRIMARY KEY, FOREIGN KEY, CHECK) of SQLite or PostgreSQL (class 23).
func isConstraint(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && strings.HasPrefix(pe.Code, "23")
}

// storeErr wraps an error of the store met while checking a login: it
// names the store and, when known, the cause (connection refused, …), so
// that the log line of the refused login says why.
func (s *Store) storeErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if cause := describeDBError(err); cause != "error" {
		return fmt.Errorf("auth: %s: identity store %s: %s: %w", op, s.where, cause, err)
	}
	return fmt.Errorf("auth: %s: identity store %s: %w", op, s.where, err)
}

// opErr wraps a storage error with the operation's name, leaving errors
// that already carry one of our sentinels untouched.
func opErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var te *thingError
	if errors.As(err, &te) {
		return err
	}
	return fmt.Errorf("auth: %s: %w", op, err)
}
