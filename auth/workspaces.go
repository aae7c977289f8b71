package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Workspace maps a top-level directory of a session (its slug) to a bucket
// and a key prefix.
type Workspace struct {
	// Slug names the workspace and its directory.
	Slug string
	// Bucket is the S3 bucket holding its files.
	Bucket string
	// Prefix is prepended to every key; it may contain UserPlaceholder.
	// Empty means the whole bucket.
	Prefix string
	// Created is when the workspace was created (set by the Store).
	Created time.Time
}

// Access is a workspace granted to a user.
type Access struct {
	Workspace
	// ReadOnly is true if the user may only read.
	ReadOnly bool
	// Personal is true when the workspace's prefix contains
	// UserPlaceholder: the user's own space, counted by their quota.
	Personal bool
}

func workspaceWhat(slug string) string { return fmt.Sprintf("workspace %q", slug) }

// CreateWorkspace creates a workspace (w.Created is ignored and set to
// now). The error wraps ErrInvalid for a bad slug, bucket or prefix and
// ErrExists if the slug is taken.
func (s *Store) CreateWorkspace(ctx context.Context, w Workspace) error {
	if err := ValidateSlug(w.Slug); err != nil {
		return err
	}
	if err := ValidateBucket(w.Bucket); err != nil {
		return err
	}
	if err := ValidatePrefix(w.Prefix); err != nil {
		return err
	}
	err := s.write(ctx, func() error {
		_, err := s.db.ExecContext(ctx, `INSERT INTO workspaces(slug, bucket, prefix, created) VALUES (?, ?, ?, ?)`,
			w.Slug, w.Bucket, w.Prefix, nanos(s.now()))
		return err
	})
	if isConstraint(err) {
		return exists(workspaceWhat(w.Slug))
	}
	return opErr("create workspace", err)
}

// Workspaces returns all workspaces sorted by slug, prefixes unexpanded.
func (s *Store) Workspaces(ctx context.Context) ([]Workspace, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT slug, bucket, prefix, created FROM workspaces ORDER BY slug`)
	if err != nil {
		return nil, opErr("list workspaces", err)
	}
	defer rows.Close()
	var ws []Workspace
	for rows.Next() {
		var w Workspace
		var created int64
		if err := rows.Scan(&w.Slug, &w.Bucket, &w.Prefix, &created); err != nil {
			return nil, opErr("list workspaces", err)
		}
		w.Created = fromNanos(created)
		ws = append(ws, w)
	}
	if err := rows.Err(); err != nil {
		return nil, opErr("list workspaces", err)
	}
	return ws, nil
}

// DeleteWorkspace deletes a workspace and its grants (the objects are not
// touched). The error wraps ErrNotFound if there is no such workspace.
func (s *Store) DeleteWorkspace(ctx context.Context, slug string) error {
	err := s.write(ctx, func() error {
		res, err := s.db.ExecContext(ctx, `DELETE FROM workspaces WHERE slug = ?`, slug)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return notFound(workspaceWhat(slug))
		}
		return nil
	})
	return opErr("delete workspace", err)
}

// Grant gives login access to workspace slug, read-only or read-write,
// replacing any earlier grant. The error wraps ErrNotFound and names the
// user or the workspace that does not exist.
func (s *Store) Grant(ctx context.Context, slug, login string, readOnly bool) error {
	err := s.writeTx(ctx, func(tx *dbTx) error {
		for _, q := range []struct{ query, arg, what string }{
			{`SELECT 1 FROM workspaces WHERE slug = ?`, slug, workspaceWhat(slug)},
			{`SELECT 1 FROM users WHERE login = ?`, login, userWhat(login)},
		} {
			var one int
			err := tx.QueryRowContext(ctx, q.query, q.arg).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return notFound(q.what)
			}
			if err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO grants(slug, login, read_only, created) VALUES (?, ?, ?, ?)
			ON CONFLICT(slug, login) DO UPDATE SET read_only = excluded.read_only`,
			slug, login, readOnly, nanos(s.now()))
		return err
	})
	return opErr("grant", err)
}

// Revoke removes login's grant on workspace slug. The error wraps
// ErrNotFound if there is no such grant.
func (s *Store) Revoke(ctx context.Context, slug, login string) error {
	err := s.write(ctx, func() error {
		res, err := s.db.ExecContext(ctx, `DELETE FROM grants WHERE slug = ? AND login = ?`, slug, login)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return notFound(fmt.Sprintf("grant of workspace %q to user %q", slug, login))
		}
		return nil
	})
	return opErr("revoke grant", err)
}

// Access returns the workspaces granted to login, sorted by slug, with
// UserPlaceholder in their prefix replaced by login. An unknown user has
// none.
func (s *Store) Access(ctx context.Context, login string) ([]Access, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT w.slug, w.bucket, w.prefix, w.created, g.read_only
		FROM grants g JOIN workspaces w ON w.slug = g.slug
		WHERE g.login = ? ORDER BY w.slug`, login)
	if err != nil {
		return nil, opErr("list access", err)
	}
	defer rows.Close()
	var as []Access
	for rows.Next() {
		var a Access
		var created int64
		if err := rows.Scan(&a.Slug, &a.Bucket, &a.Prefix, &created, &a.ReadOnly); err != nil {
			return nil, opErr("list access", err)
		}
		a.Created = fromNanos(created)
		a.Personal = strings.Contains(a.Prefix, UserPlaceholder)
		a.Prefix = ExpandPrefix(a.Prefix, login)
		as = append(as, a)
	}
	if err := rows.Err(); err != nil {
		return nil, opErr("list access", err)
	}
	return as, nil
}
