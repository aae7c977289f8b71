package auth

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sftpgate/sftpgate/internal/authapi"
)

// Staged uploads: the multipart uploads of interrupted streamed uploads,
// recorded so that any node of a cluster may continue them (fusefs keeps
// the data in the object store; this table says where it is). A record is
// held by one node process (its owner) while that process sends parts or
// continues it; the owner refreshes its heartbeat (TouchStagedUploads),
// and a record whose owner has given no sign of life for a lease is free
// to be claimed by another. Progress and heartbeats are dated, and leases
// judged, on the database's clock (sharedNow), so that a node whose clock
// is off neither takes a live node's upload nor keeps one past its lease.
// The functions work on SQLite too (the unit tests run on both); the
// daemon only uses them when the store is shared.

// StagedPart is one part of a staged upload (see authapi.StagedPart).
type StagedPart = authapi.StagedPart

// StagedUpload is one staged upload (see authapi.StagedUpload).
type StagedUpload = authapi.StagedUpload

// errStagedNotHeld says that a staged upload's record is held by another
// owner (or gone).
var errStagedNotHeld = errors.New("auth: staged upload held by another node")

const stagedColumns = `upload_id, bucket, obj_key, base_etag, base_exists, mtime, mode, size, parts, owner, updated, heartbeat`

// RecordStagedUpload creates the record of u, owned by u.Owner, or
// advances it (size, parts, mtime, mode) when u.Owner still holds it. It
// fails when another owner holds it.
func (s *Store) RecordStagedUpload(ctx context.Context, u StagedUpload) error {
	parts, err := json.Marshal(u.Parts)
	if err != nil {
		return opErr("record staged upload", err)
	}
	if u.Parts == nil {
		parts = []byte("[]")
	}
	now := s.sharedNow(ctx).UnixNano()
	var n int64
	err = s.write(ctx, func() error {
		res, err := s.db.ExecContext(ctx, `INSERT INTO staged_uploads(`+stagedColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(upload_id) DO UPDATE SET size = excluded.size, parts = excluded.parts,
				mtime = excluded.mtime, mode = excluded.mode, updated = excluded.updated, heartbeat = excluded.heartbeat
			WHERE staged_uploads.owner = excluded.owner`,
			u.UploadID, u.Bucket, u.Key, u.BaseETag, boolInt(u.BaseExists), nanos(u.Mtime), int64(u.Mode), u.Size,
			string(parts), u.Owner, now, now)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err == nil && n == 0 {
		err = errStagedNotHeld
	}
	return opErr("record staged upload", err)
}

// boolInt is b as the 0/1 an INTEGER column holds.
func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// scanStaged reads one row of stagedColumns; a heartbeat within lease
// of now makes it Held.
func scanStaged(row interface{ Scan(...any) error }, now time.Time, lease time.Duration) (StagedUpload, error) {
	var (
		u                      StagedUpload
		exists                 int64
		mtime, mode, upd, beat int64
		parts                  string
	)
	if err := row.Scan(&u.UploadID, &u.Bucket, &u.Key, &u.BaseETag, &exists, &mtime, &mode, &u.Size, &parts, &u.Owner, &upd, &beat); err != nil {
		return u, err
	}
	if err := json.Unmarshal([]byte(parts), &u.Parts); err != nil {
		return u, fmt.Errorf("staged upload %s: parts: %w", u.UploadID, err)
	}
	u.BaseExists, u.Mtime, u.Mode, u.Updated = exists != 0, fromNanos(mtime), uint32(mode), fromNanos(upd)
	u.Held = u.Owner != "" && beat >= now.Add(-lease).UnixNano()
	return u, nil
}

// StagedUploads returns every staged upload, Held telling which ones an
// owner holds (a sign of life within lease).
func (s *Store) StagedUploads(ctx context.Context, lease time.Duration) ([]StagedUpload, error) {
	return s.queryStaged(ctx, "list staged uploads", s.sharedNow(ctx), lease,
		`SELECT `+stagedColumns+` FROM staged_uploads ORDER BY bucket, obj_key, updated`)
}

// queryStaged runs query (over stagedColumns) and reads its rows, now and
// lease deciding Held; op names the call in errors.
func (s *Store) queryStaged(ctx context.Context, op string, now time.Time, lease time.Duration, query string, args ...any) ([]StagedUpload, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, opErr(op, err)
	}
	defer rows.Close()
	var out []StagedUpload
	for rows.Next() {
		u, err := scanStaged(rows, now, lease)
		if err != nil {
			return nil, opErr(op, err)
		}
		out = append(out, u)
	}
	return out, opErr(op, rows.Err())
}

// StagedUpload returns the staged upload id; ok is false when there is
// none.
func (s *Store) StagedUpload(ctx context.Context, id string, lease time.Duration) (_ StagedUpload, ok bool, _ error) {
	u, err := scanStaged(s.db.QueryRowContext(ctx, `SELECT `+stagedColumns+` FROM staged_uploads WHERE upload_id = ?`, id), s.sharedNow(ctx), lease)
	if errors.Is(err, sql.ErrNoRows) {
		return u, false, nil
	}
	if err != nil {
		return u, false, opErr("read staged upload", err)
	}
	return u, true, nil
}

// ClaimStagedUpload makes owner the holder of the staged upload id, if
// nobody holds it, owner already does, or its owner gave no sign of life
// within lease; it returns the record, ok false when it is held by
// another or gone.
func (s *Store) ClaimStagedUpload(ctx context.Context, id, owner string, lease time.Duration) (_ StagedUpload, ok bool, _ error) {
	if owner == "" {
		return StagedUpload{}, false, invalid("staged upload owner", "empty")
	}
	now := s.sharedNow(ctx)
	var n int64
	err := s.write(ctx, func() error {
		res, err := s.db.ExecContext(ctx, `UPDATE staged_uploads SET owner = ?, heartbeat = ?
			WHERE upload_id = ? AND (owner = '' OR owner = ? OR heartbeat < ?)`,
			owner, now.UnixNano(), id, owner, now.Add(-lease).UnixNano())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return StagedUpload{}, false, opErr("claim staged upload", err)
	}
	if n == 0 {
		return StagedUpload{}, false, nil
	}
	u, ok, err := s.StagedUpload(ctx, id, lease)
	if err != nil || !ok || u.Owner != owner {
		return u, false, err
	}
	return u, true, nil
}

// ReleaseStagedUpload lets go of the staged upload id if owner holds it:
// any node may claim it then. Its progress time is not changed.
func (s *Store) ReleaseStagedUpload(ctx context.Context, id, owner string) error {
	err := s.write(ctx, func() error {
		_, err := s.db.ExecContext(ctx, `UPDATE staged_uploads SET owner = '' WHERE upload_id = ? AND owner = ?`, id, owner)
		return err
	})
	return opErr("release staged upload", err)
}

// DeleteStagedUpload deletes the record of the staged upload id (once it
// is completed or aborted); no error if there is none.
func (s *Store) DeleteStagedUpload(ctx context.Context, id string) error {
	err := s.write(ctx, func() error {
		_, err := s.db.ExecContext(ctx, `DELETE FROM staged_uploads WHERE upload_id = ?`, id)
		return err
	})
	return opErr("delete staged upload", err)
}

// TouchStagedUploads refreshes the heartbeat of the staged uploads owner
// holds (their progress time is not changed).
func (s *Store) TouchStagedUploads(ctx context.Context, owner string) error {
	if owner == "" {
		return nil
	}
	err := s.write(ctx, func() error {
		_, err := s.db.ExecContext(ctx, `UPDATE staged_uploads SET heartbeat = ? WHERE owner = ?`, s.sharedNow(ctx).UnixNano(), owner)
		return err
	})
	return opErr("touch staged uploads", err)
}

// ExpiredStagedUploads returns the staged uploads with no progress for
// idle that no owner holds (no sign of life within lease).
func (s *Store) ExpiredStagedUploads(ctx context.Context, idle, lease time.Duration) ([]StagedUpload, error) {
	now := s.sharedNow(ctx)
	return s.queryStaged(ctx, "list expired staged uploads", now, lease, `SELECT `+stagedColumns+` FROM staged_uploads
		WHERE updated < ? AND (owner = '' OR heartbeat < ?) ORDER BY updated`,
		now.Add(-idle).UnixNano(), now.Add(-lease).UnixNano())
}
