package auth

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
