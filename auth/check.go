package auth

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The SSH layer needs only Login from the Store (sftpd declares this
// interface on its side).
var _ interface {
	Login(ctx context.Context, login, secret, remote string) (Scopes, error)
} = (*Store)(nil)

// Check is Login without the scopes, for callers that only need to know
// whether a login is accepted. A session must use Login: dropping the
// scopes of a scoped token would give it all of its owner's grants.
func (s *Store) Check(ctx context.Context, login, secret, remote string) error {
	_, err := s.Login(ctx, login, secret, remote)
	return err
}

// Login decides whether login may log in with the personal token secret
// from remote ("host:port" or a bare host). On success it returns the
// token's scopes (nil for an unscoped token); otherwise a *RefusedError
// saying why not, or another error if the store failed.
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
func (s *Store) Login(ctx context.Context, login, secret, remote string) (Scopes, error) {
	// A limiter that cannot answer (a shared one whose database is away)
	// still lets garbage be refused without the store.
	allowed, limErr := s.lim.allow(ctx, login, remote)
	if limErr == nil && !allowed {
		return nil, refused(ReasonRateLimited)
	}
	if r := verifyToken(s.key, secret); r != "" {
		s.lim.failure(ctx, login, remote)
		return nil, refused(r)
	}
	if limErr != nil {
		return nil, s.storeErr("check", limErr)
	}
	if ok, err := s.tokenMethodAllowed(ctx, login); err != nil {
		return nil, s.storeErr("check", err)
	} else if !ok {
		s.lim.failure(ctx, login, remote)
		return nil, refused(ReasonMethodDisabled)
	}
	r, scopes, err := s.checkStored(ctx, login, tokenHash(secret))
	if err != nil {
		return nil, s.storeErr("check", err)
	}
	if r != "" {
		s.lim.failure(ctx, login, remote)
		return nil, refused(r)
	}
	s.lim.success(ctx, login, remote)
	return scopes, nil
}

// checkStored runs the store part of Login for a well-signed token. It
// returns "" and the token's scopes on success, the refusal reason, or a
// storage error.
func (s *Store) checkStored(ctx context.Context, login string, hash []byte) (Reason, Scopes, error) {
	// The read and the conditional update are two statements; if the token
	// changed in between (revoked by the CLI, its user deleted), the update
	// matches nothing and the read is done again to say why.
	for attempt := 0; attempt < 3; attempt++ {
		var (
			id                     string
			owner                  string
			expires, hard, refresh int64
			revoked, userExists    bool
			scoped                 bool
		)
		err := s.db.QueryRowContext(ctx, `SELECT id, owner, expires, hard_expires, refresh, revoked,
				EXISTS(SELECT 1 FROM users WHERE users.login = tokens.owner), scoped
			FROM tokens WHERE hash = ?`, hash).
			Scan(&id, &owner, &expires, &hard, &refresh, &revoked, &userExists, &scoped)
		if errors.Is(err, sql.ErrNoRows) {
			return ReasonUnknownToken, nil, nil
		}
		if err != nil {
			return "", nil, err
		}
		now := s.now()
		switch {
		case subtle.ConstantTimeCompare([]byte(owner), []byte(login)) != 1:
			return ReasonWrongOwner, nil, nil
		case !userExists:
			return ReasonUnknownUser, nil, nil
		case revoked:
			return ReasonRevoked, nil, nil
		case !now.Before(fromNanos(expires)):
			return ReasonExpired, nil, nil
		}
		var scopes Scopes
		if scoped {
			// Read before the update: a token that passes has its scopes.
			if scopes, err = tokenScopes(ctx, s.db, id); err != nil {
				return "", nil, err
			}
			if len(scopes) == 0 {
				// Never widen a scoped token to everything.
				return "", nil, fmt.Errorf("token %s is scoped but has no scopes stored", id)
			}
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
			return "", nil, err
		}
		if n == 1 {
			return "", scopes, nil
		}
	}
	return "", nil, errors.New("token changed during the check, three times")
}
