package auth

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one embedded schema step; version n is file "000n_*.sql".
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations returns the embedded migrations in order, checking that
// their versions are 1, 2, 3, … without gaps.
func loadMigrations() ([]migration, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	ms := make([]migration, 0, len(names))
	for i, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v != i+1 {
			return nil, fmt.Errorf("auth: migration %q: want version %d", base, i+1)
		}
		b, err := migrationFS.ReadFile(name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	return ms, nil
}

// migrateSQLite brings the schema to the latest version. It runs in one
// BEGIN IMMEDIATE transaction, so when two processes open a fresh file at
// once, one applies the migrations and the other, once it gets the lock,
// finds PRAGMA user_version already up to date and does nothing.
func migrateSQLite(ctx context.Context, db *db) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE (_txlock in the DSN)
	if err != nil {
		return fmt.Errorf("auth: migrate: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	var cur int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&cur); err != nil {
		return fmt.Errorf("auth: migrate: read schema version: %w", err)
	}
	if cur > len(ms) {
		return fmt.Errorf("auth: migrate: database schema version %d is newer than this program's (%d)", cur, len(ms))
	}
	for _, m := range ms[cur:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("auth: migrate: %s: %w", m.name, err)
		}
	}
	if cur < len(ms) {
		// PRAGMA does not take parameters; the value is our own integer.
		if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(len(ms))); err != nil {
			return fmt.Errorf("auth: migrate: set schema version: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("auth: migrate: %w", err)
	}
	return nil
}

// migrationLock is the PostgreSQL advisory lock key ("sftpgate") held by
// the node that migrates.
const migrationLock int64 = 0x7366747067617465

// migratePostgres brings a PostgreSQL schema to the latest version, the
// same migrations as SQLite's translated by translatePostgres. It runs in
// one transaction that first takes an advisory lock: when several nodes
// start together on an empty database, one applies the migrations and the
// others, once they get the lock, find schema_migrations up to date. Each
// applied version is one row of schema_migrations (its primary key makes
// applying one twice impossible).
func migratePostgres(ctx context.Context, db *db) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("auth: migrate: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, migrationLock); err != nil {
		return fmt.Errorf("auth: migrate: lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version BIGINT PRIMARY KEY,
		name    TEXT NOT NULL,
		applied BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("auth: migrate: %w", err)
	}
	var cur int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
		return fmt.Errorf("auth: migrate: read schema version: %w", err)
	}
	if cur > len(ms) {
		return fmt.Errorf("auth: migrate: database schema version %d is newer than this program's (%d)", cur, len(ms))
	}
	for _, m := range ms[cur:] {
		if _, err := tx.ExecContext(ctx, translatePostgres(m.sql)); err != nil {
			return fmt.Errorf("auth: migrate: %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, name, applied) VALUES (?, ?, ?)`,
			m.version, m.name, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("auth: migrate: %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("auth: migrate: %w", err)
	}
	return nil
}
