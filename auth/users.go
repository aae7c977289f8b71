package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// User is a person who may log in.
type User struct {
	// Login is the SSH user name.
	Login string
	// Created is when the user was created.
	Created time.Time
	// AuthMethods are the login methods the user may use (a subset of
	// AllMethods, in its order).
	AuthMethods []string
}

func userWhat(login string) string { return fmt.Sprintf("user %q", login) }

// CreateUser creates a user. The error wraps ErrInvalid for a bad login
// and ErrExists if it is taken.
func (s *Store) CreateUser(ctx context.Context, login string) (User, error) {
	if err := ValidateLogin(login); err != nil {
		return User{}, err
	}
	u := User{Login: login, Created: s.now(), AuthMethods: slices.Clone(AllMethods)}
	err := s.write(ctx, func() error {
		_, err := s.db.ExecContext(ctx, `INSERT INTO users(login, created) VALUES (?, ?)`, login, nanos(u.Created))
		return err
	})
	if isConstraint(err) {
		return User{}, exists(userWhat(login))
	}
	if err != nil {
		return User{}, opErr("create user", err)
	}
	return u, nil
}

// User returns one user, or an error wrapping ErrNotFound.
func (s *Store) User(ctx context.Context, login string) (User, error) {
	var created int64
	var methods string
	err := s.db.QueryRowContext(ctx, `SELECT created, auth_methods FROM users WHERE login = ?`, login).Scan(&created, &methods)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, notFound(userWhat(login))
	}
	if err != nil {
		return User{}, opErr("get user", err)
	}
	return User{Login: login, Created: fromNanos(created), AuthMethods: strings.Split(methods, ",")}, nil
}

// Users returns all users sorted by login.
func (s *Store) Users(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT login, created, auth_methods FROM users ORDER BY login`)
	if err != nil {
		return nil, opErr("list users", err)
	}
	defer rows.Close()
	var us []User
	for rows.Next() {
		var u User
		var created int64
		var methods string
		if err := rows.Scan(&u.Login, &created, &methods); err != nil {
			return nil, opErr("list users", err)
		}
		u.Created = fromNanos(created)
		u.AuthMethods = strings.Split(methods, ",")
		us = append(us, u)
	}
	if err := rows.Err(); err != nil {
		return nil, opErr("list users", err)
	}
	return us, nil
}

// DeleteUser deletes a user, its grants and its SSH keys, and revokes all its tokens, in
// one transaction. The error wraps ErrNotFound if there is no such user.
func (s *Store) DeleteUser(ctx context.Context, login string) error {
	err := s.writeTx(ctx, func(tx *dbTx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM users WHERE login = ?`, login)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return notFound(userWhat(login))
		}
		// Grants go with the user (ON DELETE CASCADE); tokens stay, revoked.
		_, err = tx.ExecContext(ctx, `UPDATE tokens SET revoked = 1 WHERE owner = ?`, login)
		return err
	})
	return opErr("delete user", err)
}
