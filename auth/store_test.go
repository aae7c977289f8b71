package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestUsers(t *testing.T) { eachStore(t, testUsers) }

func testUsers(t *testing.T, open opener) {
	ctx := context.Background()
	clk := newFakeClock()
	s, _ := open(t, WithClock(clk.Now))
	u, err := s.CreateUser(ctx, "bob")
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if u.Login != "bob" || !u.Created.Equal(clk.Now()) {
		t.Errorf("got %+v, want bob created %v", u, clk.Now())
	}
	mustUser(t, s, "alice")
	_, err = s.CreateUser(ctx, "bob")
	if !errors.Is(err, ErrExists) {
		t.Errorf("duplicate: got %v, want ErrExists", err)
	}
	if got, want := fmt.Sprint(err), `auth: user "bob": already exists`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := s.CreateUser(ctx, "a/b"); !errors.Is(err, ErrInvalid) {
		t.Errorf("invalid login: got %v, want ErrInvalid", err)
	}
	got, err := s.User(ctx, "bob")
	if err != nil || got.Login != "bob" || !got.Created.Equal(clk.Now()) {
		t.Errorf("User: got %+v, %v", got, err)
	}
	_, err = s.User(ctx, "nobody")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("User(nobody): got %v, want ErrNotFound", err)
	}
	if got, want := fmt.Sprint(err), `auth: user "nobody": not found`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	us, err := s.Users(ctx)
	if err != nil {
		t.Fatalf("Users: %v", err)
	}
	if got := logins(us); !reflect.DeepEqual(got, []string{"alice", "bob"}) {
		t.Errorf("got %v, want [alice bob]", got)
	}
	if err := s.DeleteUser(ctx, "bob"); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if err := s.DeleteUser(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteUser twice: got %v, want ErrNotFound", err)
	}
	us, _ = s.Users(ctx)
	if got := logins(us); !reflect.DeepEqual(got, []string{"alice"}) {
		t.Errorf("got %v, want [alice]", got)
	}
}

func logins(us []User) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.Login)
	}
	return out
}

func TestWorkspacesAndGrants(t *testing.T) { eachStore(t, testWorkspacesAndGrants) }

func testWorkspacesAndGrants(t *testing.T, open opener) {
	ctx := context.Background()
	s, _ := open(t)
	mustUser(t, s, "alice")
	mustUser(t, s, "bob")
	for _, w := range []Workspace{
		{Slug: "personal-files", Bucket: "personal", Prefix: "{user}/"},
		{Slug: "common-files", Bucket: "common"},
		{Slug: "archive", Bucket: "archive", Prefix: "old/"},
	} {
		if err := s.CreateWorkspace(ctx, w); err != nil {
			t.Fatalf("CreateWorkspace(%+v): %v", w, err)
		}
	}
	badWs := []struct {
		name string
		w    Workspace
		want error
		msg  string
	}{
		{"duplicate", Workspace{Slug: "archive", Bucket: "other"}, ErrExists, `auth: workspace "archive": already exists`},
		{"bad slug", Workspace{Slug: "a/b", Bucket: "abc"}, ErrInvalid, "workspace slug"},
		{"bad bucket", Workspace{Slug: "x", Bucket: "Bad_Bucket"}, ErrInvalid, `bucket "Bad_Bucket"`},
		{"bad prefix", Workspace{Slug: "x", Bucket: "abc", Prefix: "../x"}, ErrInvalid, `prefix "../x"`},
	}
	for _, tt := range badWs {
		t.Run(tt.name, func(t *testing.T) {
			err := s.CreateWorkspace(ctx, tt.w)
			if !errors.Is(err, tt.want) || !strings.Contains(fmt.Sprint(err), tt.msg) {
				t.Errorf("got %v, want %v with %q", err, tt.want, tt.msg)
			}
		})
	}
	ws, err := s.Workspaces(ctx)
	if err != nil {
		t.Fatalf("Workspaces: %v", err)
	}
	var slugs []string
	for _, w := range ws {
		slugs = append(slugs, w.Slug)
		if w.Created.IsZero() {
			t.Errorf("%s: Created not set", w.Slug)
		}
	}
	if want := []string{"archive", "common-files", "personal-files"}; !reflect.DeepEqual(slugs, want) {
		t.Errorf("got %v, want %v", slugs, want)
	}
	if ws[2].Prefix != "{user}/" {
		t.Errorf("Workspaces: got prefix %q, want it unexpanded", ws[2].Prefix)
	}

	for _, g := range []struct {
		slug, login string
		ro          bool
	}{
		{"personal-files", "alice", false},
		{"common-files", "alice", false},
		{"common-files", "alice", true}, // upsert to read-only
		{"personal-files", "bob", false},
		{"archive", "bob", true},
	} {
		if err := s.Grant(ctx, g.slug, g.login, g.ro); err != nil {
			t.Fatalf("Grant(%s, %s): %v", g.slug, g.login, err)
		}
	}
	err = s.Grant(ctx, "nope", "alice", false)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `workspace "nope"`) {
		t.Errorf("grant unknown workspace: got %v, want ErrNotFound naming the workspace", err)
	}
	err = s.Grant(ctx, "archive", "carol", false)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `user "carol"`) {
		t.Errorf("grant to unknown user: got %v, want ErrNotFound naming the user", err)
	}

	access := func(login string) []Access {
		t.Helper()
		as, err := s.Access(ctx, login)
		if err != nil {
			t.Fatalf("Access(%s): %v", login, err)
		}
		for i := range as {
			as[i].Created = time.Time{}
		}
		return as
	}
	wantAlice := []Access{
		{Workspace{Slug: "common-files", Bucket: "common"}, true, false},
		{Workspace{Slug: "personal-files", Bucket: "personal", Prefix: "alice/"}, false, true},
	}
	if got := access("alice"); !reflect.DeepEqual(got, wantAlice) {
		t.Errorf("alice: got %+v, want %+v", got, wantAlice)
	}
	wantBob := []Access{
		{Workspace{Slug: "archive", Bucket: "archive", Prefix: "old/"}, true, false},
		{Workspace{Slug: "personal-files", Bucket: "personal", Prefix: "bob/"}, false, true},
	}
	if got := access("bob"); !reflect.DeepEqual(got, wantBob) {
		t.Errorf("bob: got %+v, want %+v", got, wantBob)
	}
	if got := access("nobody"); len(got) != 0 {
		t.Errorf("nobody: got %+v, want none", got)
	}

	if err := s.Revoke(ctx, "common-files", "alice"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if err := s.Revoke(ctx, "common-files", "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revoke twice: got %v, want ErrNotFound", err)
	}
	if got := access("alice"); len(got) != 1 || got[0].Slug != "personal-files" {
		t.Errorf("after revoke: got %+v, want personal-files only", got)
	}

	// Deleting a workspace deletes its grants.
	if err := s.DeleteWorkspace(ctx, "personal-files"); err != nil {
		t.Fatalf("DeleteWorkspace: %v", err)
	}
	if err := s.DeleteWorkspace(ctx, "personal-files"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteWorkspace twice: got %v, want ErrNotFound", err)
	}
	if got := access("alice"); len(got) != 0 {
		t.Errorf("after workspace delete: got %+v, want none", got)
	}
	// Deleting a user deletes its grants; re-creating the user gets none.
	if err := s.DeleteUser(ctx, "bob"); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	mustUser(t, s, "bob")
	if got := access("bob"); len(got) != 0 {
		t.Errorf("re-created bob: got %+v, want no grants", got)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM grants`).Scan(&n); err != nil || n != 0 {
		t.Errorf("grants left: %d, %v; want 0", n, err)
	}
}

// TestConcurrentOpen opens the same new file from several Stores at once
// (as the CLI and the daemon may): all succeed, migrations run once, and
// they share one signing key.
func TestConcurrentOpen(t *testing.T) {
	for round := range 3 {
		path := filepath.Join(t.TempDir(), fmt.Sprintf("race%d", round), "sftpgate.db")
		stores := openAtOnce(t, 4, func() (*Store, error) { return Open(path) })
		ms, err := loadMigrations()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		if err := stores[0].db.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil || v != len(ms) {
			t.Errorf("got user_version %d, %v; want %d (the number of migrations)", v, err, len(ms))
		}
		var mode string
		if err := stores[0].db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
			t.Errorf("got journal_mode %q, %v; want wal", mode, err)
		}
		// A token minted through one store is good in all the others.
		mustUser(t, stores[1], "alice")
		secret, _ := mustMint(t, stores[2], "alice", MintOptions{Expires: time.Hour})
		for i, s := range stores {
			if err := s.Check(context.Background(), "alice", secret, "127.0.0.1"); err != nil {
				t.Errorf("round %d: store %d: Check: %v", round, i, err)
			}
		}
	}
}

// TestConcurrentWrites writes through two stores on one file at once.
func TestConcurrentWrites(t *testing.T) { eachStore(t, testConcurrentWrites) }

func testConcurrentWrites(t *testing.T, open opener) {
	ctx := context.Background()
	a, path := open(t)
	b, err := reopen(path)
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i, s := range []*Store{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				if _, err := s.CreateUser(ctx, fmt.Sprintf("u%d-%d", i, j)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("CreateUser: %v", err)
	}
	us, err := b.Users(ctx)
	if err != nil || len(us) != 80 {
		t.Errorf("got %d users, %v; want 80", len(us), err)
	}
}

func TestReopenKeepsKeyAndData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sftpgate.db")
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	mustUser(t, s, "alice")
	secret, _ := mustMint(t, s, "alice", MintOptions{Expires: time.Hour})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { s2.Close() })
	if err := s2.Check(ctx, "alice", secret, "127.0.0.1"); err != nil {
		t.Errorf("token after reopen: got %v, want nil", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	t.Run("empty path", func(t *testing.T) {
		if _, err := Open(""); !errors.Is(err, ErrInvalid) {
			t.Errorf("got %v, want ErrInvalid", err)
		}
	})
	t.Run("parent is a file", func(t *testing.T) {
		f := filepath.Join(dir, "file")
		os.WriteFile(f, nil, 0o600)
		if _, err := Open(filepath.Join(f, "db")); err == nil {
			t.Errorf("got nil, want an error")
		}
	})
	t.Run("not a database", func(t *testing.T) {
		f := filepath.Join(dir, "junk.db")
		os.WriteFile(f, bytes.Repeat([]byte("not sqlite "), 1000), 0o600)
		_, err := Open(f)
		if err == nil || !strings.Contains(err.Error(), "junk.db") {
			t.Errorf("got %v, want an error naming the file", err)
		}
	})
	t.Run("newer schema", func(t *testing.T) {
		f := filepath.Join(dir, "newer.db")
		s, err := Open(f)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if _, err := s.db.Exec(`PRAGMA user_version = 99`); err != nil {
			t.Fatalf("set version: %v", err)
		}
		s.Close()
		_, err = Open(f)
		if err == nil || !strings.Contains(err.Error(), "newer") {
			t.Errorf("got %v, want a 'newer schema' error", err)
		}
	})
	t.Run("odd characters in path", func(t *testing.T) {
		f := filepath.Join(dir, "we?ird#na%20me", "x.db")
		s, err := Open(f)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		s.Close()
		if _, err := os.Stat(f); err != nil {
			t.Errorf("database not at the path given: %v", err)
		}
		fi, err := os.Stat(filepath.Dir(f))
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("got dir mode %v, %v; want 0700", fi.Mode().Perm(), err)
		}
	})
}

func TestMigrationsLoad(t *testing.T) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatalf("loadMigrations: %v", err)
	}
	if len(ms) == 0 || ms[0].version != 1 {
		t.Fatalf("got %d migrations, want versions from 1", len(ms))
	}
}

func TestContextCancelled(t *testing.T) { eachStore(t, testContextCancelled) }

func testContextCancelled(t *testing.T, open opener) {
	s, _ := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.CreateUser(ctx, "alice"); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if _, err := s.User(context.Background(), "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("user created despite cancelled context: %v", err)
	}
}
