-- SSH public keys per user, and the login methods each user may use.

-- auth_methods: a comma-separated subset of token,key,cert.
ALTER TABLE users ADD COLUMN auth_methods TEXT NOT NULL DEFAULT 'token,key,cert';

-- One row per authorized key. line is the authorized_keys line as it was
-- checked (options, key, comment); from_patterns is its from="..." option
-- ('' = any address). Keys go with their user.
CREATE TABLE user_keys (
	id            TEXT PRIMARY KEY,
	login         TEXT NOT NULL REFERENCES users(login) ON DELETE CASCADE,
	fingerprint   TEXT NOT NULL,
	type          TEXT NOT NULL,
	line          TEXT NOT NULL,
	label         TEXT NOT NULL DEFAULT '',
	from_patterns TEXT NOT NULL DEFAULT '',
	created       INTEGER NOT NULL,
	last_used     INTEGER,
	UNIQUE (login, fingerprint)
) STRICT;
