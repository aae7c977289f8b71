package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Token shape: base64url(32 random bytes) "." base64url(HMAC-SHA256(key,
// those bytes)), unpadded: two parts of 43 characters.
const (
	tokenRandLen = 32
	tokenPartLen = 43 // base64.RawURLEncoding.EncodedLen(32)
)

// TokenLen is the length of a personal token in characters.
const TokenLen = 2*tokenPartLen + 1

// MaxTokenLifetime is the longest expiry a token may be minted with.
const MaxTokenLifetime = 100 * 365 * 24 * time.Hour

// Token states returned by Token.State.
const (
	StateActive  = "active"
	StateExpired = "expired"
	StateRevoked = "revoked"
)

// Token describes a personal access token. The secret itself is shown once
// by MintToken and never stored: the store keeps only its SHA-256.
type Token struct {
	// ID is a short random identifier, shown in lists and used to revoke.
	ID string
	// Owner is the login of the user the token belongs to.
	Owner string
	// Label is a free-form note.
	Label string
	// Created is when the token was minted.
	Created time.Time
	// Expires is the current expiry: with a Refresh window it moves forward
	// at each successful login, never past HardExpires.
	Expires time.Time
	// LastUsed is the last successful login with it; zero if never.
	LastUsed time.Time
	// HardExpires is Created plus the expiry given at minting, a limit
	// that refreshing never passes.
	HardExpires time.Time
	// Refresh is the sliding window; zero if the token does not refresh.
	Refresh time.Duration
	// Revoked is true once the token has been revoked.
	Revoked bool
	// Scopes restrict the token to subtrees; nil means unrestricted.
	Scopes Scopes
}

// State returns StateRevoked, StateExpired or StateActive at time now.
func (t Token) State(now time.Time) string {
	switch {
	case t.Revoked:
		return StateRevoked
	case !now.Before(t.Expires):
		return StateExpired
	}
	return StateActive
}

// MintOptions are the parameters of a new token.
type MintOptions struct {
	// Expires is the token's lifetime from now, a hard limit; it must be
	// positive and at most MaxTokenLifetime.
	Expires time.Duration
	// Refresh, if positive, is a sliding window: the token expires after
	// Refresh without use (but never later than Expires after minting).
	Refresh time.Duration
	// Label is an optional note (at most MaxLabelLen bytes, printable).
	Label string
	// Scopes, if not empty, restrict the token to these subtrees (their
	// union); every scope must name an existing workspace (at most
	// MaxScopes). Scopes on the same subtree are joined.
	Scopes []Scope
}

// signToken builds a token from its random part.
func signToken(key, random []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(random)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(random) + "." + enc.EncodeToString(m.Sum(nil))
}

// verifyToken checks a token's shape and signature without any store
// access. It returns "" if the token is good, else ReasonMalformed or
// ReasonBadSignature.
func verifyToken(key []byte, secret string) Reason {
	if len(secret) != TokenLen || secret[tokenPartLen] != '.' {
		return ReasonMalformed
	}
	enc := base64.RawURLEncoding.Strict()
	random, err := enc.DecodeString(secret[:tokenPartLen])
	if err != nil || len(random) != tokenRandLen {
		return ReasonMalformed
	}
	sig, err := enc.DecodeString(secret[tokenPartLen+1:])
	if err != nil || len(sig) != sha256.Size {
		return ReasonMalformed
	}
	m := hmac.New(sha256.New, key)
	m.Write(random)
	if !hmac.Equal(sig, m.Sum(nil)) {
		return ReasonBadSignature
	}
	return ""
}

// tokenHash is what the store keeps of a token.
func tokenHash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// newTokenID returns 12 random hex characters.
func newTokenID() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// MintToken creates a token for login and returns its secret (shown once,
// never stored) and description. The error wraps ErrNotFound if the user
// does not exist and ErrInvalid for bad options.
func (s *Store) MintToken(ctx context.Context, login string, o MintOptions) (string, Token, error) {
	switch {
	case o.Expires <= 0:
		return "", Token{}, invalid("token expiry", "must be greater than zero")
	case o.Expires > MaxTokenLifetime:
		return "", Token{}, invalid("token expiry", "must be at most 100 years")
	case o.Refresh < 0:
		return "", Token{}, invalid("token refresh window", "must not be negative")
	case o.Refresh > MaxTokenLifetime:
		return "", Token{}, invalid("token refresh window", "must be at most 100 years")
	}
	if err := validateLabel(o.Label); err != nil {
		return "", Token{}, err
	}
	if err := checkScopes(o.Scopes); err != nil {
		return "", Token{}, err
	}
	random := make([]byte, tokenRandLen)
	if _, err := rand.Read(random); err != nil {
		return "", Token{}, fmt.Errorf("auth: mint token: %w", err)
	}
	secret := signToken(s.key, random)
	now := s.now()
	t := Token{
		Owner:       login,
		Label:       o.Label,
		Created:     now,
		HardExpires: now.Add(o.Expires),
		Refresh:     o.Refresh,
	}
	if len(o.Scopes) > 0 {
		t.Scopes = mergeScopes(o.Scopes)
	}
	t.Expires = t.HardExpires
	if o.Refresh > 0 && o.Refresh < o.Expires {
		t.Expires = now.Add(o.Refresh)
	}
	for attempt := 0; ; attempt++ {
		id, err := newTokenID()
		if err != nil {
			return "", Token{}, fmt.Errorf("auth: mint token: %w", err)
		}
		t.ID = id
		var n int64
		err = s.writeTx(ctx, func(tx *dbTx) error {
			if err := validateScopes(ctx, tx, t.Scopes); err != nil {
				return err
			}
			// Inserted only if the user exists, atomically with its scopes.
			res, err := tx.ExecContext(ctx, `INSERT INTO tokens(id, hash, owner, label, created, expires, hard_expires, refresh, scoped)
				SELECT ?, ?, login, ?, ?, ?, ?, ?, ? FROM users WHERE login = ?`,
				t.ID, tokenHash(secret), t.Label, nanos(t.Created), nanos(t.Expires), nanos(t.HardExpires), int64(t.Refresh), t.Scopes != nil, login)
			if err != nil {
				return err
			}
			if n, err = res.RowsAffected(); err != nil || n == 0 {
				return err
			}
			for _, sc := range t.Scopes {
				if _, err := tx.ExecContext(ctx, `INSERT INTO token_scopes(token_id, workspace, path, perm) VALUES (?, ?, ?, ?)`,
					t.ID, sc.Workspace, sc.Path, sc.Perm()); err != nil {
					return err
				}
			}
			return nil
		})
		if isConstraint(err) && attempt < 3 {
			continue // an ID collision: draw another
		}
		if err != nil {
			return "", Token{}, opErr("mint token", err)
		}
		if n == 0 {
			return "", Token{}, notFound(userWhat(login))
		}
		return secret, t, nil
	}
}

// Tokens returns the tokens of login, or of every user if login is "",
// oldest first. Tokens of a deleted user are still listed (revoked).
func (s *Store) Tokens(ctx context.Context, login string) ([]Token, error) {
	q := `SELECT id, owner, label, created, expires, hard_expires, refresh, COALESCE(last_used, 0), revoked FROM tokens`
	var args []any
	if login != "" {
		q += ` WHERE owner = ?`
		args = append(args, login)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY created, id`, args...)
	if err != nil {
		return nil, opErr("list tokens", err)
	}
	defer rows.Close()
	var ts []Token
	for rows.Next() {
		var t Token
		var created, expires, hard, refresh, lastUsed int64
		if err := rows.Scan(&t.ID, &t.Owner, &t.Label, &created, &expires, &hard, &refresh, &lastUsed, &t.Revoked); err != nil {
			return nil, opErr("list tokens", err)
		}
		t.Created, t.Expires, t.HardExpires, t.LastUsed = fromNanos(created), fromNanos(expires), fromNanos(hard), fromNanos(lastUsed)
		t.Refresh = time.Duration(refresh)
		ts = append(ts, t)
	}
	if err := rows.Err(); err != nil {
		return nil, opErr("list tokens", err)
	}
	rows.Close()
	for i := range ts {
		sc, err := tokenScopes(ctx, s.db, ts[i].ID)
		if err != nil {
			return nil, opErr("list tokens", err)
		}
		ts[i].Scopes = sc
	}
	return ts, nil
}

// RevokeToken revokes the token with that ID; the next Check with it is
// refused. Revoking a revoked token is not an error. The error wraps
// ErrNotFound if there is no such token.
func (s *Store) RevokeToken(ctx context.Context, id string) error {
	id = strings.TrimSpace(id)
	err := s.write(ctx, func() error {
		res, err := s.db.ExecContext(ctx, `UPDATE tokens SET revoked = 1 WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return notFound(fmt.Sprintf("token %q", id))
		}
		return nil
	})
	return opErr("revoke token", err)
}
