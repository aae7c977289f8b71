package auth

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseScope(t *testing.T) {
	tests := []struct {
		in      string
		want    Scope
		wantErr string // substring of the error; "" for success
	}{
		{in: "node:docs/reports:r", want: Scope{Workspace: "docs", Path: "reports", Read: true}},
		{in: "node:docs/a/b/:w", want: Scope{Workspace: "docs", Path: "a/b", Write: true}},
		{in: "node:docs/./a//b:rw", want: Scope{Workspace: "docs", Path: "a/b", Read: true, Write: true}},
		{in: "node:docs:r", want: Scope{Workspace: "docs", Read: true}},
		{in: "node:docs/:rw", want: Scope{Workspace: "docs", Read: true, Write: true}},
		{in: "node:docs/a:b/c:r", want: Scope{Workspace: "docs", Path: "a:b/c", Read: true}},
		{in: "docs/a:r", wantErr: "node:WORKSPACE/PATH:PERM"},
		{in: "node:docs/a", wantErr: "permission"},
		{in: "node:docs/a:x", wantErr: `permission "x"`},
		{in: "node:docs/a:", wantErr: "permission"},
		{in: "node:/a:r", wantErr: "no workspace"},
		{in: "node:docs/../etc:r", wantErr: `".."`},
		{in: "node:docs/a/..:r", wantErr: `".."`},
		{in: "node:..:r", wantErr: "not a workspace slug"},
		{in: "node:8c7a3e2e-0d5b-4f0e-9a1c-0f4b2c9d1e7a:r", want: Scope{Workspace: "8c7a3e2e-0d5b-4f0e-9a1c-0f4b2c9d1e7a", Read: true}},
		{in: "node:docs/a\nb:r", wantErr: "control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseScope(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("ParseScope(%q) = %+v, %v; want an ErrInvalid saying %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseScope(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if back, err := ParseScope(got.String()); err != nil || back != got {
				t.Fatalf("ParseScope(%q) = %+v, %v; want %+v", got.String(), back, err, got)
			}
		})
	}
}

func TestScopesLookup(t *testing.T) {
	ss := Scopes{
		{Workspace: "docs", Path: "reports", Read: true},
		{Workspace: "docs", Path: "reports/drafts", Write: true},
		{Workspace: "pub", Write: true},
	}
	tests := []struct {
		p           string
		a           ScopeAccess
		read, write bool
	}{
		{"/", ScopeParent, false, false},
		{"/docs", ScopeParent, false, false},
		{"/docs/reports", ScopeInside, true, false},
		{"/docs/reports/q1.pdf", ScopeInside, true, false},
		{"/docs/reports/drafts", ScopeInside, true, true},
		{"/docs/reports/drafts/x", ScopeInside, true, true},
		{"/docs/reports-old", ScopeHidden, false, false},
		{"/docs/other", ScopeHidden, false, false},
		{"/doc", ScopeHidden, false, false},
		{"/pub", ScopeInside, false, true},
		{"/pub/a/b", ScopeInside, false, true},
		{"/private", ScopeHidden, false, false},
	}
	for _, tt := range tests {
		a, r, w := ss.Lookup(tt.p)
		if a != tt.a || r != tt.read || w != tt.write {
			t.Errorf("Lookup(%q) = %v, %v, %v; want %v, %v, %v", tt.p, a, r, w, tt.a, tt.read, tt.write)
		}
	}
	if a, r, w := Scopes(nil).Lookup("/anything"); a != ScopeInside || !r || !w {
		t.Errorf("unscoped Lookup = %v, %v, %v; want inside, true, true", a, r, w)
	}
	renames := []struct {
		from, to string
		want     bool
	}{
		{"/pub/a", "/pub/b", true},
		{"/pub/a", "/pub/d/a", true},
		{"/docs/reports/drafts/a", "/docs/reports/drafts/b", true},
		{"/docs/reports/drafts/a", "/docs/reports/a", false}, // out of the writable scope
		{"/docs/reports/drafts/a", "/pub/a", false},          // across two scopes
		{"/pub", "/pub2", false},                             // the scope's root itself
		{"/docs/reports/a", "/docs/reports/b", false},        // read-only scope
	}
	for _, tt := range renames {
		if got := ss.SameWritable(tt.from, tt.to); got != tt.want {
			t.Errorf("SameWritable(%q, %q) = %v, want %v", tt.from, tt.to, got, tt.want)
		}
	}
}

func TestMintScopedToken(t *testing.T) { eachStore(t, testMintScopedToken) }

func testMintScopedToken(t *testing.T, open opener) {
	ctx := context.Background()
	s, _ := open(t)
	mustUser(t, s, "alice")
	if err := s.CreateWorkspace(ctx, Workspace{Slug: "docs", Bucket: "docs"}); err != nil {
		t.Fatal(err)
	}
	scopes := []Scope{
		{Workspace: "docs", Path: "b", Write: true},
		{Workspace: "docs", Path: "a", Read: true},
		{Workspace: "docs", Path: "b", Read: true},
	}
	secret, tok, err := s.MintToken(ctx, "alice", MintOptions{Expires: 3600e9, Scopes: scopes})
	if err != nil {
		t.Fatalf("MintToken: %v", err)
	}
	want := Scopes{{Workspace: "docs", Path: "a", Read: true}, {Workspace: "docs", Path: "b", Read: true, Write: true}}
	if !reflect.DeepEqual(tok.Scopes, want) {
		t.Errorf("minted scopes %v, want %v", tok.Scopes, want)
	}
	got, err := s.Login(ctx, "alice", secret, "127.0.0.1:1")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Login = %v, %v; want %v", got, err, want)
	}
	list, err := s.Tokens(ctx, "alice")
	if err != nil || len(list) != 1 || !reflect.DeepEqual(list[0].Scopes, want) {
		t.Errorf("Tokens = %+v, %v; want one token with %v", list, err, want)
	}

	plain, _ := mustMint(t, s, "alice", MintOptions{Expires: 3600e9})
	if got, err := s.Login(ctx, "alice", plain, "127.0.0.1:1"); err != nil || got != nil {
		t.Errorf("Login(unscoped) = %v, %v; want nil, nil", got, err)
	}

	bad := []struct {
		name   string
		scopes []Scope
		want   string
	}{
		{"unknown workspace", []Scope{{Workspace: "nope", Read: true}}, `unknown workspace "nope"`},
		{"dot-dot", []Scope{{Workspace: "docs", Path: "a/../b", Read: true}}, `".."`},
		{"unclean", []Scope{{Workspace: "docs", Path: "a//b", Read: true}}, "not clean"},
		{"no permission", []Scope{{Workspace: "docs", Path: "a"}}, "no permission"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := s.MintToken(ctx, "alice", MintOptions{Expires: 3600e9, Scopes: tt.scopes})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("MintToken = %v, want an ErrInvalid saying %q", err, tt.want)
			}
		})
	}
	if list, _ := s.Tokens(ctx, "alice"); len(list) != 2 {
		t.Errorf("%d tokens stored, want 2 (refused ones store nothing)", len(list))
	}
}

func TestScopedTokenWithoutScopesRefused(t *testing.T) {
	eachStore(t, testScopedTokenWithoutScopesRefused)
}

func testScopedTokenWithoutScopesRefused(t *testing.T, open opener) {
	ctx := context.Background()
	s, _ := open(t)
	mustUser(t, s, "alice")
	if err := s.CreateWorkspace(ctx, Workspace{Slug: "docs", Bucket: "docs"}); err != nil {
		t.Fatal(err)
	}
	secret, tok := mustMint(t, s, "alice", MintOptions{Expires: 3600e9, Scopes: []Scope{{Workspace: "docs", Read: true}}})
	if _, err := s.db.ExecContext(ctx, `DELETE FROM token_scopes WHERE token_id = ?`, tok.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Login(ctx, "alice", secret, "127.0.0.1:1"); err == nil {
		t.Fatalf("Login = %v, nil; want an error (never an unscoped login)", got)
	}
}

// TestScopesMigration opens a store whose schema predates scopes (version
// 2, as an older sftpgate left it): the migration runs, and a token minted
// before it still logs in, unscoped.
func TestScopesMigration(t *testing.T) {
	ctx := context.Background()
	s, path := openTestStore(t)
	mustUser(t, s, "alice")
	secret, _ := mustMint(t, s, "alice", MintOptions{Expires: 3600e9})
	for _, q := range []string{`DROP TABLE staged_uploads`, `DROP TABLE node_commands`, `DROP TABLE nodes`, `DROP TABLE login_failures`, `DROP TABLE user_quotas`, `DROP TABLE token_scopes`, `ALTER TABLE tokens DROP COLUMN scoped`, `PRAGMA user_version = 2`} {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s.Close()
	s2, err := Open(path)
	if err != nil {
		t.Fatalf("Open after the downgrade: %v", err)
	}
	defer s2.Close()
	if got, err := s2.Login(ctx, "alice", secret, "127.0.0.1:1"); err != nil || got != nil {
		t.Errorf("Login with an old token = %v, %v; want nil, nil (unscoped)", got, err)
	}
	if err := s2.CreateWorkspace(ctx, Workspace{Slug: "docs", Bucket: "docs"}); err != nil {
		t.Fatal(err)
	}
	scoped, _ := mustMint(t, s2, "alice", MintOptions{Expires: 3600e9, Scopes: []Scope{{Workspace: "docs", Read: true}}})
	if got, err := s2.Login(ctx, "alice", scoped, "127.0.0.1:1"); err != nil || len(got) != 1 {
		t.Errorf("Login with a scoped token after the migration = %v, %v; want its scope", got, err)
	}
}

// BenchmarkScopesLookup measures the per-request scope check with the
// most scopes a token may carry.
func BenchmarkScopesLookup(b *testing.B) {
	var ss Scopes
	for i := range MaxScopes {
		ss = append(ss, Scope{Workspace: "docs", Path: "team/" + strings.Repeat("x", i%7) + "/dir" + string(rune('a'+i%26)), Read: true})
	}
	for b.Loop() {
		ss.Lookup("/docs/team/xxx/dirq/sub/file.txt")
	}
}
