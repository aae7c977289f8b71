-- Per-user quotas over the user's personal ({user}) workspaces. A limit of
-- 0 means none. used_* are only meaningful while computed is 1: they are
-- computed from the bucket listing at first use, then kept up to date by
-- the gateways (deltas on upload, delete, rename); computed = 0 asks for a
-- new listing.

CREATE TABLE user_quotas (
	login      TEXT PRIMARY KEY REFERENCES users(login) ON DELETE CASCADE,
	max_bytes  INTEGER NOT NULL DEFAULT 0 CHECK (max_bytes >= 0),
	max_files  INTEGER NOT NULL DEFAULT 0 CHECK (max_files >= 0),
	used_bytes INTEGER NOT NULL DEFAULT 0,
	used_files INTEGER NOT NULL DEFAULT 0,
	computed   INTEGER NOT NULL DEFAULT 0
) STRICT;
