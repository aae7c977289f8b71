package auth

import "github.com/sftpgate/sftpgate/internal/authapi"

// The scope vocabulary is shared with sftpd through internal/authapi;
// these names keep it part of auth's API.

// Scope restricts a token to a subtree of one workspace and a permission
// (see authapi.Scope).
type Scope = authapi.Scope

// Scopes is the set of scopes of a login; nil means unscoped (see
// authapi.Scopes).
type Scopes = authapi.Scopes

// ScopeAccess says what Scopes make of a session path.
type ScopeAccess = authapi.ScopeAccess

// What a session path is to a scoped login (see authapi.ScopeHidden).
const (
	ScopeHidden = authapi.ScopeHidden
	ScopeParent = authapi.ScopeParent
	ScopeInside = authapi.ScopeInside
)
