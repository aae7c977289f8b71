package auth

import (
	"context"
	"errors"
	"sync"
	"testing"
)

func TestQuotaStore(t *testing.T) { eachStore(t, testQuotaStore) }

func testQuotaStore(t *testing.T, open opener) {
	ctx := context.Background()
	s, _ := open(t)
	mustUser(t, s, "alice")

	if q, err := s.Quota(ctx, "alice"); err != nil || q != (Quota{}) {
		t.Fatalf("Quota before any: got %+v, %v, want zero", q, err)
	}
	if err := s.SetQuota(ctx, "nobody", 1, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetQuota unknown user: got %v, want ErrNotFound", err)
	}
	if err := s.SetQuota(ctx, "alice", 3<<20, -1); err != nil {
		t.Fatal(err)
	}
	if err := s.SetQuota(ctx, "alice", -1, 10); err != nil {
		t.Fatal(err)
	}
	q, err := s.Quota(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Quota{MaxBytes: 3 << 20, MaxFiles: 10}); q != want {
		t.Fatalf("after SetQuota: got %+v, want %+v", q, want)
	}
	// Deltas before the usage is computed are dropped: the listing will see them.
	if err := s.AddUsage(ctx, "alice", 100, 1); err != nil {
		t.Fatal(err)
	}
	if q, _ := s.Quota(ctx, "alice"); q.UsedBytes != 0 || q.Computed {
		t.Fatalf("AddUsage before computed: got %+v, want unchanged", q)
	}
	if err := s.SetUsage(ctx, "alice", 1000, 2); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.AddUsage(ctx, "alice", 10, 1); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := s.AddUsage(ctx, "alice", -5000, -100); err != nil {
		t.Fatal(err)
	}
	q, _ = s.Quota(ctx, "alice")
	if q.UsedBytes != 0 || q.UsedFiles != 0 || !q.Computed {
		t.Fatalf("after a delta past zero: got %+v, want 0 bytes, 0 files, computed", q)
	}
	if err := s.AddUsage(ctx, "alice", 80, 8); err != nil {
		t.Fatal(err)
	}
	if q, _ = s.Quota(ctx, "alice"); q.UsedBytes != 80 || q.UsedFiles != 8 {
		t.Fatalf("after AddUsage: got %+v, want 80 bytes, 8 files", q)
	}
	if err := s.RecomputeUsage(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if q, _ = s.Quota(ctx, "alice"); q.Computed || q.MaxBytes != 3<<20 {
		t.Fatalf("after RecomputeUsage: got %+v, want not computed, limits kept", q)
	}
	if err := s.SetQuota(ctx, "alice", 0, 0); err != nil {
		t.Fatal(err)
	}
	if q, _ = s.Quota(ctx, "alice"); q.Limited() {
		t.Fatalf("after removing limits: got %+v, want none", q)
	}
	// SetUsage for a user with no row yet creates it.
	mustUser(t, s, "bob")
	if err := s.SetUsage(ctx, "bob", 7, 1); err != nil {
		t.Fatal(err)
	}
	if q, _ = s.Quota(ctx, "bob"); q.UsedBytes != 7 || !q.Computed {
		t.Fatalf("SetUsage new row: got %+v", q)
	}
	if err := s.DeleteUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if q, _ = s.Quota(ctx, "bob"); q != (Quota{}) {
		t.Fatalf("after DeleteUser: got %+v, want zero", q)
	}
}

func TestAccessPersonal(t *testing.T) { eachStore(t, testAccessPersonal) }

func testAccessPersonal(t *testing.T, open opener) {
	ctx := context.Background()
	s, _ := open(t)
	mustUser(t, s, "alice")
	for _, w := range []Workspace{{Slug: "home", Bucket: "personal", Prefix: "{user}/"}, {Slug: "common", Bucket: "common"}} {
		if err := s.CreateWorkspace(ctx, w); err != nil {
			t.Fatal(err)
		}
		if err := s.Grant(ctx, w.Slug, "alice", false); err != nil {
			t.Fatal(err)
		}
	}
	as, err := s.Access(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, a := range as {
		got[a.Slug] = a.Personal
	}
	if !got["home"] || got["common"] {
		t.Fatalf("Personal: got %v, want home only", got)
	}
}

// TestQuotasMigration opens a store left at schema version 3 (before
// quotas): the migration adds the table and existing users have no quota.
func TestQuotasMigration(t *testing.T) {
	ctx := context.Background()
	s, path := openTestStore(t)
	mustUser(t, s, "alice")
	for _, q := range []string{`DROP TABLE staged_uploads`, `DROP TABLE node_commands`, `DROP TABLE nodes`, `DROP TABLE login_failures`, `DROP TABLE user_quotas`, `PRAGMA user_version = 3`} {
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
	if q, err := s2.Quota(ctx, "alice"); err != nil || q != (Quota{}) {
		t.Fatalf("Quota after the migration: got %+v, %v, want zero", q, err)
	}
	if err := s2.SetQuota(ctx, "alice", 1<<30, 0); err != nil {
		t.Fatal(err)
	}
}

func TestPersonalOwner(t *testing.T) { eachStore(t, testPersonalOwner) }

func testPersonalOwner(t *testing.T, open opener) {
	ctx := context.Background()
	s, _ := open(t)
	mustUser(t, s, "alice")
	mustUser(t, s, "bob")
	for _, w := range []Workspace{
		{Slug: "home", Bucket: "personal", Prefix: "{user}/"},
		{Slug: "deep", Bucket: "data", Prefix: "homes/{user}/files"},
		{Slug: "all", Bucket: "personal"},
	} {
		if err := s.CreateWorkspace(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range [][2]string{{"home", "alice"}, {"deep", "alice"}, {"all", "bob"}, {"home", "bob"}} {
		if err := s.Grant(ctx, g[0], g[1], false); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct{ bucket, key, want string }{
		{"personal", "alice/a.txt", "alice"},
		{"personal", "alice/dir/a.txt", "alice"},
		{"personal", "bob/a.txt", "bob"},
		{"personal", "carol/a.txt", ""}, // no such user
		{"personal", "a.txt", ""},
		{"personal", "alice", ""},
		{"data", "homes/alice/files/x", "alice"},
		{"data", "homes/alice/other/x", ""},
		{"data", "homes/bob/files/x", ""}, // bob has no grant on deep
		{"common", "alice/a.txt", ""},
	} {
		got, err := s.PersonalOwner(ctx, tt.bucket, tt.key)
		if err != nil || got != tt.want {
			t.Errorf("PersonalOwner(%s, %s): got %q, %v, want %q", tt.bucket, tt.key, got, err, tt.want)
		}
	}
}
