package auth

import (
	"context"
	"sync"
	"time"
)

// The database's clock. The nodes registry writes and judges heartbeats
// and node commands with the time of the database server rather than the
// time of the node that asks, so that nodes whose clocks disagree still
// see each other alive (and expire the same commands). Times are stored,
// like every time of the schema, as Unix nanoseconds.

// nowNanos returns the SQL expression of the database's current time in
// Unix nanoseconds: in PostgreSQL now() (the start of the transaction,
// microseconds), in SQLite unixepoch('now', 'subsec') (milliseconds; the
// database is then the node's own file, its clock the node's).
func (d dialect) nowNanos() string {
	if d == dialectPostgres {
		return "CAST(extract(epoch FROM now()) * 1000000000 AS BIGINT)"
	}
	return "(CAST(unixepoch('now', 'subsec') * 1000 AS INTEGER) * 1000000)"
}

// skewEvery is how often a dbClock measures again how far its clock is
// from the database's.
const skewEvery = time.Minute

// dbClock reads the database's time without a round trip per reading: a
// clock (time.Now, or a test's) moved by its offset from the database's
// clock, measured once per skewEvery (of real time, so that a test
// clock's jumps in between still count). The shared limiter and the
// staged uploads' leases date rows with it, so that every node of a
// cluster dates them alike even when the nodes' clocks disagree. When the
// database cannot be asked, the last offset (or none) is used.
type dbClock struct {
	db  *db
	now func() time.Time

	// mu guards the fields below.
	mu sync.Mutex
	// skew is the database clock minus now's, measured at skewAt (zero:
	// not yet).
	skew   time.Duration
	skewAt time.Time
}

func newDBClock(d *db, now func() time.Time) *dbClock {
	return &dbClock{db: d, now: now}
}

// Now returns the database's time as this clock reads it.
func (c *dbClock) Now(ctx context.Context) time.Time {
	c.mu.Lock()
	skew, fresh := c.skew, !c.skewAt.IsZero() && time.Since(c.skewAt) < skewEvery
	c.mu.Unlock()
	if !fresh {
		var db int64
		t0, n0 := time.Now(), c.now()
		if err := c.db.QueryRowContext(ctx, `SELECT `+c.db.dialect.nowNanos()).Scan(&db); err == nil {
			rtt := time.Since(t0)
			skew = time.Duration(db - n0.Add(rtt/2).UnixNano())
			c.mu.Lock()
			c.skew, c.skewAt = skew, time.Now()
			c.mu.Unlock()
		}
	}
	return c.now().Add(skew)
}

// sharedNow returns the time rows shared by the nodes are dated with: the
// database's clock (PostgreSQL), or this machine's (SQLite, whose database
// is a file of this machine).
func (s *Store) sharedNow(ctx context.Context) time.Time {
	if s.dbc == nil {
		return s.now()
	}
	return s.dbc.Now(ctx)
}
