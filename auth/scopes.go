package auth

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
)

// MaxScopes is the most scopes one token may carry.
const MaxScopes = 64

// MaxScopePathLen is the longest path a scope may name, in bytes.
const MaxScopePathLen = 4096

// ParseScope parses "node:WORKSPACE/PATH:PERM" (PERM r, w or rw): the
// workspace slug ends at the first "/" after "node:", the permission
// starts after the last ":". "node:WORKSPACE:PERM" is the whole workspace.
// The path is cleaned of empty and "." components; ".." is refused. Cells
// names a node by UUID; here the node is a path. The error wraps
// ErrInvalid and names the problem.
func ParseScope(s string) (Scope, error) {
	what := fmt.Sprintf("scope %q", s)
	if err := checkText(what, s, MaxScopePathLen+MaxNameLen+16); err != nil {
		return Scope{}, err
	}
	rest, ok := strings.CutPrefix(s, "node:")
	if !ok {
		return Scope{}, invalid(what, `must have the form node:WORKSPACE/PATH:PERM`)
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return Scope{}, invalid(what, "no permission: end it with :r, :w or :rw")
	}
	target, perm := rest[:i], rest[i+1:]
	var sc Scope
	switch perm {
	case "r":
		sc.Read = true
	case "w":
		sc.Write = true
	case "rw":
		sc.Read, sc.Write = true, true
	default:
		return Scope{}, invalid(what, fmt.Sprintf("permission %q: want r, w or rw", perm))
	}
	ws, p, _ := strings.Cut(target, "/")
	if ws == "" {
		return Scope{}, invalid(what, "no workspace: the form is node:WORKSPACE/PATH:PERM")
	}
	if err := ValidateSlug(ws); err != nil {
		return Scope{}, invalid(what, fmt.Sprintf("workspace %q: not a workspace slug (Cells node UUIDs are not supported; the form is node:WORKSPACE/PATH:PERM)", ws))
	}
	sc.Workspace = ws
	var parts []string
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			return Scope{}, invalid(what, `path must not contain ".."`)
		}
		parts = append(parts, c)
	}
	sc.Path = strings.Join(parts, "/")
	if len(sc.Path) > MaxScopePathLen {
		return Scope{}, invalid(what, fmt.Sprintf("path longer than %d bytes", MaxScopePathLen))
	}
	return sc, nil
}

// mergeScopes returns scopes sorted by workspace and path, with the
// permissions of scopes on the same subtree joined.
func mergeScopes(scopes []Scope) []Scope {
	byRoot := make(map[string]int)
	var out []Scope
	for _, s := range scopes {
		if i, ok := byRoot[s.Root()]; ok {
			out[i].Read = out[i].Read || s.Read
			out[i].Write = out[i].Write || s.Write
			continue
		}
		byRoot[s.Root()] = len(out)
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Root() < out[j].Root() })
	return out
}

// checkScopes checks scopes built by code as ParseScope would (a slug, a
// clean path without ".." and at least one permission).
func checkScopes(scopes []Scope) error {
	if len(scopes) > MaxScopes {
		return invalid("scopes", fmt.Sprintf("more than %d", MaxScopes))
	}
	for _, s := range scopes {
		if !s.Read && !s.Write {
			return invalid(fmt.Sprintf("scope on %q", s.Root()), "no permission")
		}
		got, err := ParseScope(s.String())
		if err != nil {
			return err
		}
		if got != s {
			return invalid(fmt.Sprintf("scope %q", s.String()), "path is not clean")
		}
	}
	return nil
}

// validateScopes checks, in tx, that every scope names an existing
// workspace.
func validateScopes(ctx context.Context, tx *dbTx, scopes []Scope) error {
	for _, s := range scopes {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM workspaces WHERE slug = ?`, s.Workspace).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			detail := fmt.Sprintf("unknown workspace %q", s.Workspace)
			if isUUID(s.Workspace) {
				detail += " (Cells node UUIDs are not supported: name the node node:WORKSPACE/PATH:PERM)"
			}
			return invalid(fmt.Sprintf("scope %q", s.String()), detail)
		}
	}
	return nil
}

// isUUID reports whether s has the shape of a UUID (8-4-4-4-12 hex).
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case !strings.ContainsRune("0123456789abcdefABCDEF", c):
			return false
		}
	}
	return true
}

// tokenScopes reads the scopes of token id with q (a *sql.DB or *sql.Tx).
func tokenScopes(ctx context.Context, q interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}, id string) ([]Scope, error) {
	rows, err := q.QueryContext(ctx, `SELECT workspace, path, perm FROM token_scopes WHERE token_id = ? ORDER BY workspace, path`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Scope
	for rows.Next() {
		var s Scope
		var perm string
		if err := rows.Scan(&s.Workspace, &s.Path, &perm); err != nil {
			return nil, err
		}
		s.Read = strings.Contains(perm, "r")
		s.Write = strings.Contains(perm, "w")
		out = append(out, s)
	}
	return out, rows.Err()
}
