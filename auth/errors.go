package auth

import (
	"errors"
	"strings"
)

// Sentinel errors returned (wrapped) by the Store and the validators. Test
// for them with errors.Is; the wrapping error's message names the thing.
var (
	// ErrNotFound reports that a user, workspace, grant or token does not exist.
	ErrNotFound = errors.New("auth: not found")
	// ErrExists reports that a user or workspace with that name already exists.
	ErrExists = errors.New("auth: already exists")
	// ErrInvalid reports a value that does not pass validation.
	ErrInvalid = errors.New("auth: invalid")
	// ErrRefused is wrapped by every *RefusedError, for callers that only
	// need to know that a login was refused.
	ErrRefused = errors.New("auth: login refused")
)

// thingError names the thing an error is about: `auth: user "bob": not found`,
// `auth: bucket "A": invalid: uppercase letters are not allowed`.
type thingError struct {
	what   string // e.g. `user "bob"`
	err    error  // a sentinel
	detail string // optional explanation
}

func (e *thingError) Error() string {
	var b strings.Builder
	b.WriteString("auth: ")
	b.WriteString(e.what)
	b.WriteString(": ")
	b.WriteString(strings.TrimPrefix(e.err.Error(), "auth: "))
	if e.detail != "" {
		b.WriteString(": ")
		b.WriteString(e.detail)
	}
	return b.String()
}

func (e *thingError) Unwrap() error { return e.err }

func notFound(what string) error { return &thingError{what: what, err: ErrNotFound} }

func exists(what string) error { return &thingError{what: what, err: ErrExists} }

func invalid(what, detail string) error {
	return &thingError{what: what, err: ErrInvalid, detail: detail}
}

// Reason says why a login was refused.
type Reason string

// The reasons a login can be refused, in the order Check tests them.
const (
	// ReasonRateLimited: too many recent failures from that address or for
	// that login from that address.
	ReasonRateLimited Reason = "rate-limited"
	// ReasonMalformed: the secret does not have the shape of a token.
	ReasonMalformed Reason = "malformed"
	// ReasonBadSignature: the token's HMAC does not verify (not minted here).
	ReasonBadSignature Reason = "bad-signature"
	// ReasonUnknownToken: a well-signed token that the store does not hold.
	ReasonUnknownToken Reason = "unknown-token"
	// ReasonWrongOwner: the token belongs to another user.
	ReasonWrongOwner Reason = "wrong-owner"
	// ReasonUnknownUser: the token's owner no longer exists.
	ReasonUnknownUser Reason = "unknown-user"
	// ReasonRevoked: the token was revoked.
	ReasonRevoked Reason = "revoked"
	// ReasonExpired: the token's expiry has passed.
	ReasonExpired Reason = "expired"
	// ReasonMethodDisabled: the user may not log in with that method (see
	// Store.SetAuthMethods).
	ReasonMethodDisabled Reason = "method-disabled"
	// ReasonUnknownKey: a public key that is not one of the user's keys.
	ReasonUnknownKey Reason = "unknown-key"
	// ReasonSourceAddress: the key's from="..." option does not allow the
	// client's address.
	ReasonSourceAddress Reason = "source-address"
)

// RefusedError is the error Check returns for a refused login. It never
// contains the secret.
type RefusedError struct {
	// Reason says why.
	Reason Reason
}

// Error returns e.g. "auth: login refused: expired".
func (e *RefusedError) Error() string { return "auth: login refused: " + string(e.Reason) }

// Why returns the reason as a string, for loggers that only know
// interface{ Why() string }.
func (e *RefusedError) Why() string { return string(e.Reason) }

// Unwrap returns ErrRefused.
func (e *RefusedError) Unwrap() error { return ErrRefused }

// The SSH layer logs the reason through this interface.
var _ interface{ Why() string } = (*RefusedError)(nil)

func refused(r Reason) error { return &RefusedError{Reason: r} }
