package auth

import (
	"context"
	"database/sql"
	"errors"
	"strings"
)

// Quota is a user's limits over their personal ({user}) workspaces and
// what they use there.
type Quota struct {
	// MaxBytes and MaxFiles are the limits; 0 means none.
	MaxBytes, MaxFiles int64
	// UsedBytes and UsedFiles are what the objects under the user's
	// personal workspaces add up to; meaningful only when Computed.
	UsedBytes, UsedFiles int64
	// Computed is false until the usage has been computed from a bucket
	// listing (and again after RecomputeUsage).
	Computed bool
}

// Limited reports whether q sets any limit.
func (q Quota) Limited() bool { return q.MaxBytes > 0 || q.MaxFiles > 0 }

// SetQuota sets login's limits: a negative value keeps the current one, 0
// removes it. The error wraps ErrNotFound for an unknown user and
// ErrInvalid for a limit too large.
func (s *Store) SetQuota(ctx context.Context, login string, maxBytes, maxFiles int64) error {
	err := s.writeTx(ctx, func(tx *dbTx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE login = ?`, login).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound(userWhat(login))
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO user_quotas(login) VALUES (?) ON CONFLICT(login) DO NOTHING`, login); err != nil {
			return err
		}
		if maxBytes >= 0 {
			if _, err := tx.ExecContext(ctx, `UPDATE user_quotas SET max_bytes = ? WHERE login = ?`, maxBytes, login); err != nil {
				return err
			}
		}
		if maxFiles >= 0 {
			if _, err := tx.ExecContext(ctx, `UPDATE user_quotas SET max_files = ? WHERE login = ?`, maxFiles, login); err != nil {
				return err
			}
		}
		return nil
	})
	return opErr("set quota", err)
}

// Quota returns login's limits and usage; a user with none set (or an
// unknown user) has the zero Quota.
func (s *Store) Quota(ctx context.Context, login string) (Quota, error) {
	var q Quota
	err := s.db.QueryRowContext(ctx, `SELECT max_bytes, max_files, used_bytes, used_files, computed
		FROM user_quotas WHERE login = ?`, login).Scan(&q.MaxBytes, &q.MaxFiles, &q.UsedBytes, &q.UsedFiles, &q.Computed)
	if errors.Is(err, sql.ErrNoRows) {
		return Quota{}, nil
	}
	if err != nil {
		return Quota{}, opErr("get quota", err)
	}
	return q, nil
}

// AddUsage adds dBytes and dFiles (either may be negative) to login's
// usage in one statement, so that several gateways adding at once all
// count. Usage that is not computed yet is left alone (the listing that
// computes it will see the change); it never goes below zero.
func (s *Store) AddUsage(ctx context.Context, login string, dBytes, dFiles int64) error {
	err := s.write(ctx, func() error {
		_, err := s.db.ExecContext(ctx, `UPDATE user_quotas
			SET used_bytes = CASE WHEN used_bytes + ? < 0 THEN 0 ELSE used_bytes + ? END,
				used_files = CASE WHEN used_files + ? < 0 THEN 0 ELSE used_files + ? END
			WHERE login = ? AND computed = 1`, dBytes, dBytes, dFiles, dFiles, login)
		return err
	})
	return opErr("add usage", err)
}

// SetUsage records login's usage as computed from a listing.
func (s *Store) SetUsage(ctx context.Context, login string, bytes, files int64) error {
	err := s.write(ctx, func() error {
		_, err := s.db.ExecContext(ctx, `INSERT INTO user_quotas(login, used_bytes, used_files, computed)
			SELECT login, CAST(? AS BIGINT), CAST(? AS BIGINT), 1 FROM users WHERE login = ?
			ON CONFLICT(login) DO UPDATE SET used_bytes = excluded.used_bytes,
				used_files = excluded.used_files, computed = 1`, bytes, files, login)
		return err
	})
	return opErr("set usage", err)
}

// RecomputeUsage marks login's usage (every user's when login is empty)
// as not computed: the next gateway that needs it lists the bucket again.
func (s *Store) RecomputeUsage(ctx context.Context, login string) error {
	err := s.write(ctx, func() error {
		_, err := s.db.ExecContext(ctx, `UPDATE user_quotas SET computed = 0 WHERE login = ? OR ? = ''`, login, login)
		return err
	})
	return opErr("recompute usage", err)
}

// PersonalOwner returns the user whose personal workspace (one whose
// prefix contains UserPlaceholder, granted to that user) holds the object
// bucket/key: the user whose quota counts it, whoever writes it. It
// returns "" when no personal workspace holds it.
func (s *Store) PersonalOwner(ctx context.Context, bucket, key string) (string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT slug, prefix FROM workspaces
		WHERE bucket = ? AND `+s.db.dialect.strpos("prefix", "?")+` > 0 ORDER BY slug`, bucket, UserPlaceholder)
	if err != nil {
		return "", opErr("personal owner", err)
	}
	type cand struct{ slug, login string }
	var cs []cand
	for rows.Next() {
		var slug, prefix string
		if err := rows.Scan(&slug, &prefix); err != nil {
			rows.Close()
			return "", opErr("personal owner", err)
		}
		if login := personalLogin(prefix, key); login != "" {
			cs = append(cs, cand{slug, login})
		}
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return "", opErr("personal owner", err)
	}
	for _, c := range cs {
		var one int
		err := s.db.QueryRowContext(ctx, `SELECT 1 FROM grants WHERE slug = ? AND login = ?`, c.slug, c.login).Scan(&one)
		if err == nil {
			return c.login, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return "", opErr("personal owner", err)
		}
	}
	return "", nil
}

// personalLogin returns the login that, put in place of UserPlaceholder in
// prefix (a workspace prefix, taken as a directory: "a/{user}" is
// "a/{user}/"), makes a prefix of key; "" when none does.
func personalLogin(prefix, key string) string {
	prefix = strings.Trim(prefix, "/") + "/"
	before, after, ok := strings.Cut(prefix, UserPlaceholder)
	if !ok || !strings.HasPrefix(key, before) {
		return ""
	}
	rest := key[len(before):]
	next, _, _ := strings.Cut(after, UserPlaceholder) // what follows the login
	i := strings.Index(rest, next)
	if i <= 0 {
		return ""
	}
	login := rest[:i]
	if ValidateLogin(login) != nil || !strings.HasPrefix(key, ExpandPrefix(prefix, login)) {
		return ""
	}
	return login
}
