package auth

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The SSH layer needs only Check from the Store (sftpd declares this
// interface on its side).
var _ interface {
	Check(ctx context.Context, login, secret, remote string) error
} = (*Store)(nil)

// Check decides whether login may log in with the personal token secret
// from remote ("host:port" or a bare host). It returns nil, a
// *RefusedError saying why not, or another error if the store failed.
//
// The order is: the failed-login limiter (rate-limited); the token's shape
// (malformed) and HMAC (bad-signature), both without touching the store;
// then the store, read afresh at every call: is the token known
// (unknown-token), owned by login (wrong-owner), is its owner still a user
// (unknown-user), is it revoked, expired; a user whose login methods
// (SetAuthMethods) leave out tokens is refused (method-disabled) before
// the token is looked up. On success the token's last use
// and, if it refreshes, its expiry are updated. Refusals other than
// rate-limited count as failures for the limiter; a success resets it.
func (s *Store) Check(ctx context.Context, login, secret, remote string) error {
	if !s.lim.Allow(login, remote) {
		return refused(ReasonRateLimited)
	}
	if r := verifyToken(s.key, secret); r != "" {
		s.lim.Failure(login, remote)
		return refused(r)
	}
	if ok, err := s.tokenMethodAllowed(ctx, login); err != nil {
		return fmt.Errorf("auth: check: %w", err)
	} else if !ok {
		s.lim.Failure(login, remote)
		return refused(ReasonMethodDisabled)
	}
	r, err := s.checkStored(ctx, login, tokenHash(secret))
	if err != nil {
		return fmt.Errorf("auth: check: %w", err)
	}
	if r != "" {
		s.lim.Failure(login, remote)
		return refused(r)
	}
	s.lim.Success(login, remote)
	return nil
}

// checkStored runs the store part of Check for a well-signed token. It
// returns "" on success, the refusal reason, or a storage error.
func (s *Store) checkStored(ctx context.Context, login string, hash []byte) (Reason, error) {
	// The read and the conditional update are two statements; if the token
	// changed in between (revoked by the CLI, its user deleted), the update
	// matches nothing and the read is done again to say why.
	for attempt := 0; attempt < 3; attempt++ {
		var (
			id                     string
			owner                  string
			expires, hard, refresh int64
			revoked, userExists    bool
		)
		err := s.db.QueryRowContext(ctx, `SELECT id, owner, expires, hard_expires, refresh, revoked,
				EXISTS(SELECT 1 FROM users WHERE users.login = tokens.owner)
			FROM tokens WHERE hash = ?`, hash).
			Scan(&id, &owner, &expires, &hard, &refresh, &revoked, &userExists)
		if errors.Is(err, sql.ErrNoRows) {
			return ReasonUnknownToken, nil
		}
		if err != nil {
			return "", err
		}
		now := s.now()
		switch {
		case subtle.ConstantTimeCompare([]byte(owner), []byte(login)) != 1:
			return ReasonWrongOwner, nil
		case !userExists:
			return ReasonUnknownUser, nil
		case revoked:
			return ReasonRevoked, nil
		case !now.Before(fromNanos(expires)):
			return ReasonExpired, nil
		}
		newExpires := expires
		if refresh > 0 {
			newExpires = min(nanos(now.Add(time.Duration(refresh))), hard)
		}
		var n int64
		err = s.write(ctx, func() error {
			res, err := s.db.ExecContext(ctx, `UPDATE tokens SET last_used = ?, expires = ?
				WHERE id = ? AND revoked = 0 AND expires > ?
				AND EXISTS(SELECT 1 FROM users WHERE users.login = tokens.owner)`,
				nanos(now), newExpires, id, nanos(now))
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return "", err
		}
		if n == 1 {
			return "", nil
		}
	}
	return "", errors.New("token changed during the check, three times")
}
