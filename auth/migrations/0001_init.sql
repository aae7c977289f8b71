-- Initial schema. Times are Unix nanoseconds (UTC); 0 / NULL = never.

CREATE TABLE meta (
	name  TEXT PRIMARY KEY,
	value BLOB NOT NULL
) STRICT;

CREATE TABLE users (
	login   TEXT PRIMARY KEY,
	created INTEGER NOT NULL
) STRICT;

CREATE TABLE workspaces (
	slug    TEXT PRIMARY KEY,
	bucket  TEXT NOT NULL,
	prefix  TEXT NOT NULL DEFAULT '',
	created INTEGER NOT NULL
) STRICT;

CREATE TABLE grants (
	slug      TEXT NOT NULL REFERENCES workspaces(slug) ON DELETE CASCADE,
	login     TEXT NOT NULL REFERENCES users(login) ON DELETE CASCADE,
	read_only INTEGER NOT NULL DEFAULT 0,
	created   INTEGER NOT NULL,
	PRIMARY KEY (slug, login)
) STRICT;

CREATE INDEX grants_by_login ON grants(login);

-- Tokens outlive their owner (DeleteUser revokes them) so that a token of a
-- deleted user is refused as "unknown-user", and so that the list keeps a
-- trace. Only sha256(token) is stored.
CREATE TABLE tokens (
	id           TEXT PRIMARY KEY,
	hash         BLOB NOT NULL UNIQUE,
	owner        TEXT NOT NULL,
	label        TEXT NOT NULL DEFAULT '',
	created      INTEGER NOT NULL,
	expires      INTEGER NOT NULL,
	hard_expires INTEGER NOT NULL,
	refresh      INTEGER NOT NULL DEFAULT 0,
	last_used    INTEGER,
	revoked      INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX tokens_by_owner ON tokens(owner);
