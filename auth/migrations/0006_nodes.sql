-- The nodes of a cluster sharing one PostgreSQL database (a SQLite store
-- is one node and leaves these tables empty). Each node upserts its row
-- every second (heartbeat, Unix nanoseconds of its clock) with what the
-- administration commands show of it: its sessions and mounts, as JSON
-- documents the store does not read. A node whose heartbeat is older than
-- a few seconds is gone: lists skip it and any node deletes its row.

CREATE TABLE nodes (
	id        TEXT PRIMARY KEY,
	host      TEXT NOT NULL,
	addr      TEXT NOT NULL,
	started   INTEGER NOT NULL,
	heartbeat INTEGER NOT NULL,
	sessions  BLOB NOT NULL,
	mounts    BLOB NOT NULL
) STRICT;

CREATE INDEX nodes_by_heartbeat ON nodes(heartbeat);

-- Commands sent from one node to another ("kill" a session): the target
-- polls its own, runs them once and writes the result; the sender reads
-- the result and deletes the row. Rows older than a minute are deleted by
-- any node.

CREATE TABLE node_commands (
	id      TEXT PRIMARY KEY,
	node    TEXT NOT NULL,
	op      TEXT NOT NULL,
	arg     TEXT NOT NULL,
	created INTEGER NOT NULL,
	done    INTEGER NOT NULL DEFAULT 0,
	result  TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX node_commands_by_node ON node_commands(node, done);
CREATE INDEX node_commands_by_created ON node_commands(created);
