package auth

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// failureCounter is what a Store needs from a failed-login limiter: the
// in-memory Limiter (SQLite) or the limiter shared through the database
// (PostgreSQL). failure and success are best effort: a count that cannot
// be written (the database is away) is lost, the login's answer stands.
type failureCounter interface {
	allow(ctx context.Context, login, remote string) (bool, error)
	failure(ctx context.Context, login, remote string)
	success(ctx context.Context, login, remote string)
}

// memLimiter is the in-memory Limiter as a failureCounter.
type memLimiter struct{ l *Limiter }

var _ failureCounter = memLimiter{}

func (m memLimiter) allow(_ context.Context, login, remote string) (bool, error) {
	return m.l.Allow(login, remote), nil
}
func (m memLimiter) failure(_ context.Context, login, remote string) { m.l.Failure(login, remote) }
func (m memLimiter) success(_ context.Context, login, remote string) { m.l.Success(login, remote) }

// capEvery is how many failures a node records between two checks of the
// row bound (LimiterConfig.MaxEntries) of the shared limiter's table.
const capEvery = 256

// sharedLockClass is the first key of the advisory locks that serialise
// the failures of one address (or IPv6 /48) across nodes ("lim").
const sharedLockClass int32 = 0x006c696d

// dbLimiter is the failed-login limiter of a PostgreSQL store: the same
// rules as Limiter (it uses Limiter's arithmetic), the counts kept in the
// table login_failures so that every node sees every node's failures.
//
// Rows are bounded: keys quiet for a window are deleted (at most once per
// window per node), and every capEvery failures a node trims the table to
// MaxEntries rows, the keys whose last failure is oldest going first.
type dbLimiter struct {
	db    *db
	now   func() time.Time
	dbc   *dbClock // dates failures and lockouts on the database's clock
	rules *Limiter // its cfg and failLocked only; its table stays empty

	// mu guards the fields below.
	mu        sync.Mutex
	lastSweep time.Time
	sinceCap  int
}

var _ failureCounter = (*dbLimiter)(nil)

func newDBLimiter(d *db, cfg LimiterConfig, now func() time.Time, dbc *dbClock) *dbLimiter {
	return &dbLimiter{db: d, now: now, dbc: dbc, rules: NewLimiter(cfg, now)}
}

func (l *dbLimiter) allow(ctx context.Context, login, remote string) (bool, error) {
	if l.rules.cfg.Disabled {
		return true, nil
	}
	pk, ak, nk := keysOf(login, remote)
	var locked bool
	err := l.db.QueryRowContext(ctx, `SELECT EXISTS(SELECT 1 FROM login_failures WHERE locked_until > ?
		AND ((kind = ? AND login = ? AND addr = ?) OR (kind = ? AND login = '' AND addr = ?)
		OR (kind = ? AND login = '' AND addr = ?)))`,
		l.dbc.Now(ctx).UnixNano(), kindPair, pk.login, pk.addr, kindAddr, ak.addr, kindNet, nk.addr).Scan(&locked)
	if err != nil {
		return false, fmt.Errorf("failed-login limiter: %w", err)
	}
	return !locked, nil
}

func (l *dbLimiter) success(ctx context.Context, login, remote string) {
	if l.rules.cfg.Disabled {
		return
	}
	pk, _, _ := keysOf(login, remote)
	// Best effort (see failureCounter).
	l.db.ExecContext(ctx, `DELETE FROM login_failures WHERE kind = ? AND login = ? AND addr = ?`, //nolint:errcheck
		kindPair, pk.login, pk.addr)
}

func (l *dbLimiter) failure(ctx context.Context, login, remote string) {
	if l.rules.cfg.Disabled {
		return
	}
	t, now := l.now(), l.dbc.Now(ctx).UnixNano()
	l.record(ctx, login, remote, now) //nolint:errcheck // best effort (see failureCounter)
	l.mu.Lock()
	l.sinceCap++
	sweep := t.Sub(l.lastSweep) >= l.rules.cfg.Window
	if sweep {
		l.lastSweep = t
	}
	trim := l.sinceCap >= capEvery
	if trim {
		l.sinceCap = 0
	}
	l.mu.Unlock()
	if sweep {
		l.sweep(ctx, now) //nolint:errcheck // the next sweep tries again
	}
	if trim {
		l.trim(ctx) //nolint:errcheck // the next trim tries again
	}
}

// record counts one failure at now, in one transaction holding the
// advisory lock of the attempt's /48 (IPv6) or address, so that two nodes
// counting failures of one key do not lose one.
func (l *dbLimiter) record(ctx context.Context, login, remote string, now int64) error {
	pk, ak, nk := keysOf(login, remote)
	cfg := l.rules.cfg
	keys := []limitKey{pk, ak, nk}
	limits := []int{cfg.MaxFailures, cfg.MaxAddrFailures, cfg.MaxNetFailures}
	lockOn := nk.addr
	if nk.addr == "" {
		keys, limits, lockOn = keys[:2], limits[:2], ak.addr
	}
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(CAST(? AS INTEGER), hashtext(?))`, sharedLockClass, lockOn); err != nil {
		return err
	}
	entries := make([]*limitEntry, len(keys))
	for i, k := range keys {
		e := &limitEntry{key: k}
		var fails []byte
		err := tx.QueryRowContext(ctx, `SELECT fails, last, locked_until, lockouts FROM login_failures
			WHERE kind = ? AND login = ? AND addr = ?`, k.kind, k.login, k.addr).Scan(&fails, &e.last, &e.lockedUntil, &e.lockouts)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		default:
			e.fails = decodeFails(fails)
		}
		if now < e.lockedUntil {
			// An attempt made while locked out was not allowed to run; it
			// neither counts nor extends the lockout.
			return nil
		}
		entries[i] = e
	}
	for i, e := range entries {
		l.rules.failLocked(e, now, limits[i])
		if _, err := tx.ExecContext(ctx, `INSERT INTO login_failures(kind, login, addr, fails, last, locked_until, lockouts)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(kind, login, addr) DO UPDATE SET fails = excluded.fails, last = excluded.last,
				locked_until = excluded.locked_until, lockouts = excluded.lockouts`,
			e.key.kind, e.key.login, e.key.addr, encodeFails(e.fails), e.last, e.lockedUntil, e.lockouts); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// sweep deletes the keys quiet for a window (as Limiter's sweep does).
func (l *dbLimiter) sweep(ctx context.Context, now int64) error {
	window := int64(l.rules.cfg.Window)
	_, err := l.db.ExecContext(ctx, `DELETE FROM login_failures WHERE last <= ? AND locked_until <= ?`, now-window, now-window)
	return err
}

// trim deletes the keys whose last failure is oldest, down to MaxEntries.
func (l *dbLimiter) trim(ctx context.Context) error {
	_, err := l.db.ExecContext(ctx, `DELETE FROM login_failures WHERE (kind, login, addr) IN (
		SELECT kind, login, addr FROM login_failures ORDER BY last
		LIMIT GREATEST(0, (SELECT count(*) FROM login_failures) - ?))`, l.rules.cfg.MaxEntries)
	return err
}

// size returns the number of rows of the shared table; for tests.
func (l *dbLimiter) size(ctx context.Context) (int, error) {
	var n int
	err := l.db.QueryRowContext(ctx, `SELECT count(*) FROM login_failures`).Scan(&n)
	return n, err
}

// encodeFails packs failure times, 8 big-endian bytes each.
func encodeFails(fails []int64) []byte {
	b := make([]byte, 0, 8*len(fails))
	for _, f := range fails {
		b = binary.BigEndian.AppendUint64(b, uint64(f))
	}
	return b
}

// decodeFails is the inverse of encodeFails (a trailing partial value is
// dropped).
func decodeFails(b []byte) []int64 {
	fails := make([]int64, 0, len(b)/8)
	for ; len(b) >= 8; b = b[8:] {
		fails = append(fails, int64(binary.BigEndian.Uint64(b)))
	}
	return fails
}
