-- The failed-login limiter's counts, shared by every node on one
-- PostgreSQL database (SQLite stores keep theirs in memory and leave this
-- table empty). One row per counted key: kind 0 = (login, address),
-- 1 = address (IPv4, IPv6 /64), 2 = IPv6 /48; login is '' for kinds 1
-- and 2. fails holds the failure times within the window, 8 bytes each
-- (big-endian Unix nanoseconds), oldest first.

CREATE TABLE login_failures (
	kind         INTEGER NOT NULL,
	login        TEXT NOT NULL,
	addr         TEXT NOT NULL,
	fails        BLOB NOT NULL,
	last         INTEGER NOT NULL,
	locked_until INTEGER NOT NULL,
	lockouts     INTEGER NOT NULL,
	PRIMARY KEY (kind, login, addr)
) STRICT;

CREATE INDEX login_failures_by_last ON login_failures(last);
