-- Staged uploads: the multipart uploads of interrupted streamed uploads
-- that any node of a cluster sharing one PostgreSQL database may continue
-- (a SQLite store is one node and leaves this table empty). One row per
-- upload: its object (bucket, obj_key), the object it replaces (base_etag,
-- base_exists), the metadata it was begun with (mtime, Unix nanoseconds;
-- mode), the contiguous prefix of it sent as whole parts (size, and parts:
-- JSON [{"n":1,"size":…,"etag":"…"}, …]), the node process holding it
-- (owner, '' when none) and the times of its last progress (updated) and
-- of its owner's last sign of life (heartbeat), Unix nanoseconds of the
-- store's clock.

CREATE TABLE staged_uploads (
	upload_id   TEXT PRIMARY KEY,
	bucket      TEXT NOT NULL,
	obj_key     TEXT NOT NULL,
	base_etag   TEXT NOT NULL,
	base_exists INTEGER NOT NULL,
	mtime       INTEGER NOT NULL,
	mode        INTEGER NOT NULL,
	size        INTEGER NOT NULL,
	parts       TEXT NOT NULL,
	owner       TEXT NOT NULL,
	updated     INTEGER NOT NULL,
	heartbeat   INTEGER NOT NULL
) STRICT;

CREATE INDEX staged_uploads_by_key ON staged_uploads(bucket, obj_key);
CREATE INDEX staged_uploads_by_owner ON staged_uploads(owner);
