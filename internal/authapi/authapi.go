// Package authapi holds what the SSH side (sftpd) and the identity store
// (auth) agree on beyond the login call: the scopes a login carries and
// how a client's address is read. Both import it; neither imports the
// other. auth re-exports these names (auth.Scopes is authapi.Scopes).
package authapi

import (
	"net"
	"net/netip"
	"strings"
)

// Scope restricts a token to a subtree of one workspace and a permission.
// A token with no scopes reaches everything its owner is granted; a token
// with scopes reaches only their union, and never more than the grants.
type Scope struct {
	// Workspace is the slug of the workspace.
	Workspace string
	// Path is the subtree inside the workspace: slash-separated, cleaned,
	// no leading or trailing "/"; "" is the whole workspace.
	Path string
	// Read allows stat, list and read in the subtree.
	Read bool
	// Write allows stat, list, create, write, mkdir, delete and rename
	// within the subtree (not read).
	Write bool
}

// Perm returns "r", "w" or "rw".
func (s Scope) Perm() string {
	switch {
	case s.Read && s.Write:
		return "rw"
	case s.Write:
		return "w"
	}
	return "r"
}

// Root returns the session path of the scope's subtree, "/WORKSPACE/PATH"
// ("/WORKSPACE" for the whole workspace).
func (s Scope) Root() string {
	if s.Path == "" {
		return "/" + s.Workspace
	}
	return "/" + s.Workspace + "/" + s.Path
}

// String returns the scope in the form auth.ParseScope reads,
// "node:WORKSPACE/PATH:PERM".
func (s Scope) String() string {
	return "node:" + strings.TrimPrefix(s.Root(), "/") + ":" + s.Perm()
}

// Scopes is the set of scopes of a login. The zero value (nil) means an
// unscoped login: everything the grants allow.
type Scopes []Scope

// ScopeAccess says what Scopes make of a session path.
type ScopeAccess int

// What a session path is to a scoped login.
const (
	// ScopeHidden: outside every scope and on no scope's way; it does not
	// exist for the session.
	ScopeHidden ScopeAccess = iota
	// ScopeParent: a directory on the way to a scope ("/", a workspace, …):
	// visible, read-only, its listing shows only the way to the scopes.
	ScopeParent
	// ScopeInside: in a scope's subtree (its root included); Read and Write
	// say what the union of the scopes that hold it allows.
	ScopeInside
)

// Scoped reports whether the scopes restrict anything.
func (ss Scopes) Scoped() bool { return ss != nil }

// Lookup classifies the cleaned absolute session path p ("/ws/a/b") and
// returns, for ScopeInside, whether the scopes that hold p allow reading and
// writing. For unscoped Scopes it returns ScopeInside, true, true.
func (ss Scopes) Lookup(p string) (a ScopeAccess, read, write bool) {
	if ss == nil {
		return ScopeInside, true, true
	}
	a = ScopeHidden
	for _, s := range ss {
		switch {
		case s.holds(p):
			a = ScopeInside
			read = read || s.Read
			write = write || s.Write
		case a == ScopeHidden && s.below(p):
			a = ScopeParent
		}
	}
	return a, read, write
}

// holds reports whether the cleaned absolute path p is the scope's root
// or below it, comparing whole components ("/ws/docs" does not hold
// "/ws/docs-old"). It is within(p, s.Root()) without building the root.
func (s Scope) holds(p string) bool {
	rest, ok := strings.CutPrefix(p, "/")
	if !ok {
		return false
	}
	if rest, ok = strings.CutPrefix(rest, s.Workspace); !ok {
		return false
	}
	if s.Path != "" {
		if rest, ok = strings.CutPrefix(rest, "/"); !ok {
			return false
		}
		if rest, ok = strings.CutPrefix(rest, s.Path); !ok {
			return false
		}
	}
	return rest == "" || rest[0] == '/'
}

// below reports whether the scope's root is the cleaned absolute path p
// or below it: within(s.Root(), p) without building the root.
func (s Scope) below(p string) bool {
	if p == "/" {
		return true
	}
	rest, ok := strings.CutPrefix(p, "/")
	if !ok {
		return false
	}
	ws, sub, hasSub := strings.Cut(rest, "/")
	if ws != s.Workspace {
		return false
	}
	if !hasSub {
		return true
	}
	return sub == s.Path || strings.HasPrefix(s.Path, sub+"/")
}

// SameWritable reports whether one scope with write permission holds
// both from and to strictly inside its root: a rename that would cross a
// scope's edge (or move a scope's root) is refused. Unscoped Scopes allow
// every rename.
func (ss Scopes) SameWritable(from, to string) bool {
	if ss == nil {
		return true
	}
	for _, s := range ss {
		root := s.Root()
		if s.Write && from != root && to != root && within(from, root) && within(to, root) {
			return true
		}
	}
	return false
}

// within reports whether the cleaned absolute path p is root or below it,
// comparing whole components ("/ws/docs" does not hold "/ws/docs-old").
func within(p, root string) bool {
	if root == "/" {
		return true
	}
	return p == root || strings.HasPrefix(p, root+"/")
}

// RemoteAddr returns the address of remote ("host:port" or a bare
// address), IPv4-mapped IPv6 unmapped; ok is false when it is not an IP.
func RemoteAddr(remote string) (netip.Addr, bool) {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return addr.Unmap(), true
}
