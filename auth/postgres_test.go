package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPostgresConcurrentMigrate opens one empty database from eight
// stores at once: every open succeeds, each migration is recorded once,
// and all share one signing key.
func TestPostgresConcurrentMigrate(t *testing.T) {
	u := sharedPostgres(t).NewDatabase(t)
	const n = 8
	stores := openAtOnce(t, n, func() (*Store, error) { return OpenPostgres(u) })
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var rows, maxV int
	if err := stores[0].db.QueryRowContext(ctx, `SELECT count(*), MAX(version) FROM schema_migrations`).Scan(&rows, &maxV); err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	if rows != len(ms) || maxV != len(ms) {
		t.Errorf("got %d migration rows up to version %d, want %d applied once each", rows, maxV, len(ms))
	}
	// One store's token logs in through another.
	mustUser(t, stores[0], "alice")
	secret, _ := mustMint(t, stores[0], "alice", MintOptions{Expires: time.Hour})
	if err := stores[n-1].Check(ctx, "alice", secret, "127.0.0.1:1"); err != nil {
		t.Errorf("token of store 0 through store %d: %v", n-1, err)
	}
}

// TestPostgresSharedLimiter: failures through one store lock the pair out
// on another store of the same database; a success through the second
// clears the pair for both, the address keeping its count.
func TestPostgresSharedLimiter(t *testing.T) {
	ctx := context.Background()
	cfg := LimiterConfig{MaxFailures: 3, MaxAddrFailures: 5}
	a, u := openPostgresTestStore(t, WithLimiter(cfg))
	b, err := OpenPostgres(u, WithLimiter(cfg))
	if err != nil {
		t.Fatalf("second store: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	mustUser(t, a, "alice")
	secret, _ := mustMint(t, a, "alice", MintOptions{Expires: time.Hour})
	wrong, wrongTok := mustMint(t, a, "alice", MintOptions{Expires: time.Hour})
	if err := a.RevokeToken(ctx, wrongTok.ID); err != nil {
		t.Fatal(err)
	}
	const remote = "10.1.2.3:4000"
	for i := range 3 {
		s := []*Store{a, b}[i%2]
		if got := reasonOf(s.Check(ctx, "alice", wrong, remote)); got != string(ReasonRevoked) {
			t.Fatalf("failure %d: got %q, want %s", i, got, ReasonRevoked)
		}
	}
	for name, s := range map[string]*Store{"a": a, "b": b} {
		if got := reasonOf(s.Check(ctx, "alice", secret, remote)); got != string(ReasonRateLimited) {
			t.Errorf("store %s after 3 failures over two stores: got %q, want %s", name, got, ReasonRateLimited)
		}
	}
	// Another address is not affected.
	if err := b.Check(ctx, "alice", secret, "10.9.9.9:1"); err != nil {
		t.Errorf("other address: got %v, want success", err)
	}
}

// TestPostgresLimiterSkewedClocks: two nodes whose clocks are two hours
// apart count failures in one window and see the same lockout, because
// the shared limiter dates them by the database's clock.
func TestPostgresLimiterSkewedClocks(t *testing.T) {
	ctx := context.Background()
	cfg := LimiterConfig{MaxFailures: 3, MaxAddrFailures: 5}
	b, u := openPostgresTestStore(t, WithLimiter(cfg))
	a, err := OpenPostgres(u, WithLimiter(cfg), WithClock(func() time.Time { return time.Now().Add(2 * time.Hour) }))
	if err != nil {
		t.Fatalf("second store: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	mustUser(t, b, "alice")
	secret, _ := mustMint(t, b, "alice", MintOptions{Expires: 24 * time.Hour})
	const remote = "10.1.2.4:4000"
	for i := range 3 {
		s := []*Store{b, a}[i%2]
		if got := reasonOf(s.Check(ctx, "alice", "not-a-token", remote)); got == "" {
			t.Fatalf("failure %d: a wrong token was accepted", i)
		}
	}
	for name, s := range map[string]*Store{"a (2 h ahead)": a, "b": b} {
		if got := reasonOf(s.Check(ctx, "alice", secret, remote)); got != string(ReasonRateLimited) {
			t.Errorf("store %s after 3 failures over two skewed stores: got %q, want %s", name, got, ReasonRateLimited)
		}
	}
}

// TestPostgresStagedSkewedClocks: a node whose clock is an hour behind
// holds a staged upload; a node on time neither claims it nor sees it
// free, because heartbeats are dated and leases judged on the database's
// clock.
func TestPostgresStagedSkewedClocks(t *testing.T) {
	ctx := context.Background()
	const lease = 5 * time.Second
	b, u := openPostgresTestStore(t)
	a, err := OpenPostgres(u, WithClock(func() time.Time { return time.Now().Add(-time.Hour) }))
	if err != nil {
		t.Fatalf("second store: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	up := StagedUpload{UploadID: "skew1", Bucket: "b", Key: "alice/k.bin", Owner: "nodeA",
		Size: 5 << 20, Parts: []StagedPart{{Number: 1, Size: 5 << 20, ETag: "p1"}}}
	if err := a.RecordStagedUpload(ctx, up); err != nil {
		t.Fatalf("RecordStagedUpload on the node behind: %v", err)
	}
	if err := a.TouchStagedUploads(ctx, "nodeA"); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := b.StagedUpload(ctx, "skew1", lease); err != nil || !ok || !got.Held {
		t.Errorf("record read by the node on time: got %+v, %v, %v; want it held", got, ok, err)
	}
	if _, ok, err := b.ClaimStagedUpload(ctx, "skew1", "nodeB", lease); ok || err != nil {
		t.Errorf("claim by the node on time of an upload a live node holds: got %v, %v; want refused", ok, err)
	}
	if e, err := b.ExpiredStagedUploads(ctx, time.Minute, lease); err != nil || len(e) != 0 {
		t.Errorf("expired staged uploads seen by the node on time: got %+v, %v; want none", e, err)
	}
}

// TestPostgresLimiterBoundedRows: the shared table is trimmed to
// MaxEntries rows (checked every capEvery failures).
func TestPostgresLimiterBoundedRows(t *testing.T) {
	s, _ := openPostgresTestStore(t, WithLimiter(LimiterConfig{MaxEntries: 100}))
	l := sharedTestLimiter{t, s.lim.(*dbLimiter)}
	for i := range capEvery {
		l.Failure(fmt.Sprint("u", i), fmt.Sprintf("10.3.%d.%d:1", i/200, i%200))
	}
	if got := l.size(); got != 100 {
		t.Errorf("after %d failures (%d keys): got %d rows, want 100", capEvery, 2*capEvery, got)
	}
	// The newest keys are kept.
	last := capEvery - 1
	for range DefaultMaxFailures - 1 {
		l.Failure(fmt.Sprint("u", last), fmt.Sprintf("10.3.%d.%d:1", last/200, last%200))
	}
	if l.Allow(fmt.Sprint("u", last), fmt.Sprintf("10.3.%d.%d:1", last/200, last%200)) {
		t.Errorf("newest pair forgotten by the trim: got allowed after %d failures", DefaultMaxFailures)
	}
}

// TestOpenPostgresErrors: each way of failing to reach the database gives
// one line naming the server and the cause, never the password.
func TestOpenPostgresErrors(t *testing.T) {
	p := sharedPostgres(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	good := fmt.Sprintf("%s:%d", p.Host, p.Port)
	tests := []struct {
		name, url, server, cause string
	}{
		{"refused", "postgres://postgres:s3cret-pw@" + closed + "/postgres?sslmode=disable", closed, "connection refused"},
		{"dns", "postgres://postgres:s3cret-pw@no-such-host.invalid:5432/postgres?sslmode=disable&connect_timeout=5", "no-such-host.invalid:5432", "DNS lookup failed"},
		{"authentication", "postgres://postgres:s3cret-pw@" + good + "/postgres?sslmode=disable", good, "authentication failed"},
		{"tls", "postgres://postgres:s3cret-pw@" + good + "/postgres?sslmode=require", good, "TLS failed"},
		{"missing database", p.URL("nosuchdb"), good, "database does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := OpenPostgres(tt.url)
			if err == nil {
				s.Close()
				t.Fatalf("got nil error, want %s", tt.cause)
			}
			msg := err.Error()
			t.Logf("%s", msg)
			if want := "auth: postgres " + tt.server + ": " + tt.cause; !strings.HasPrefix(msg, want) {
				t.Errorf("got %q, want it to start with %q", msg, want)
			}
			if strings.Contains(msg, "s3cret-pw") || strings.Contains(msg, p.Password) || strings.Contains(msg, "\n") {
				t.Errorf("got %q: holds a password or several lines", msg)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://u:pw@h:5432/db?sslmode=disable", "postgres://u:****@h:5432/db?sslmode=disable"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"postgresql://h/db?password=pw&sslmode=require", "postgresql://h/db?password=%2A%2A%2A%2A&sslmode=require"},
		{"postgres://u:p%40w@h/db", "postgres://u:****@h/db"},
		{"postgres://u:pw@h:bad port/db", "postgres://****"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestCopyStoreRoundTrip copies a SQLite store into PostgreSQL and back
// into a new SQLite file: every table comes back identical, tokens minted
// by the first store log in against the others, and a non-empty target
// is refused unless overwriting is asked.
func TestCopyStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	src, _ := openTestStore(t)
	mustUser(t, src, "alice")
	mustUser(t, src, "bob")
	if err := src.CreateWorkspace(ctx, Workspace{Slug: "home", Bucket: "personal", Prefix: "{user}/"}); err != nil {
		t.Fatal(err)
	}
	if err := src.Grant(ctx, "home", "alice", true); err != nil {
		t.Fatal(err)
	}
	if err := src.SetQuota(ctx, "alice", 1<<30, 10); err != nil {
		t.Fatal(err)
	}
	secret, _ := mustMint(t, src, "alice", MintOptions{Expires: time.Hour, Label: "copied"})
	mustMint(t, src, "bob", MintOptions{Expires: time.Hour, Scopes: []Scope{{Workspace: "home", Path: "x", Read: true}}})
	line, _ := authorizedLine(t, newEd25519(t), "", "alice@laptop")
	if _, err := src.AddKey(ctx, "alice", line, "laptop"); err != nil {
		t.Fatal(err)
	}

	pg, u := openPostgresTestStore(t)
	counts, err := CopyStore(ctx, src, pg, false)
	if err != nil {
		t.Fatalf("CopyStore to postgres: %v", err)
	}
	want := map[string]int{"meta": 1, "users": 2, "workspaces": 1, "grants": 1, "tokens": 2, "user_keys": 1, "token_scopes": 1, "user_quotas": 1}
	for _, c := range counts {
		if c.Rows != want[c.Table] {
			t.Errorf("%s: got %d rows copied, want %d", c.Table, c.Rows, want[c.Table])
		}
	}
	if _, err := CopyStore(ctx, src, pg, false); !errors.Is(err, ErrTargetNotEmpty) {
		t.Errorf("second copy: got %v, want ErrTargetNotEmpty", err)
	}
	if _, err := CopyStore(ctx, src, pg, true); err != nil {
		t.Errorf("second copy with overwrite: %v", err)
	}
	pg.Close()
	pg2, err := OpenPostgres(u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg2.Close() })
	if err := pg2.Check(ctx, "alice", secret, "127.0.0.1:1"); err != nil {
		t.Errorf("token minted on SQLite, checked on PostgreSQL: %v", err)
	}

	back, err := Open(filepath.Join(t.TempDir(), "back.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { back.Close() })
	if _, err := CopyStore(ctx, pg2, back, false); err != nil {
		t.Fatalf("CopyStore back to SQLite: %v", err)
	}
	for _, table := range copyTables() {
		// last_used changed with the Check on PostgreSQL: compare the
		// copies of the copy.
		if got, want := dumpTable(t, back, table), dumpTable(t, pg2, table); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: SQLite copy differs from PostgreSQL:\n got %v\nwant %v", table, got, want)
		}
		if table != "tokens" {
			if got, want := dumpTable(t, back, table), dumpTable(t, src, table); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: round trip differs:\n got %v\nwant %v", table, got, want)
			}
		}
	}
}

// dumpTable returns the rows of table, sorted, as strings.
func dumpTable(t *testing.T, s *Store, table string) []string {
	t.Helper()
	rows, err := s.db.QueryContext(context.Background(), `SELECT * FROM `+table)
	if err != nil {
		t.Fatalf("dump %s: %v", table, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%v", vals))
	}
	slices.Sort(out)
	return out
}

// TestOnlyHashStoredPostgres: on PostgreSQL too, no column of any table
// holds the token or its parts, only its sha256.
func TestOnlyHashStoredPostgres(t *testing.T) {
	ctx := context.Background()
	s, _ := openPostgresTestStore(t)
	mustUser(t, s, "alice")
	secret, _ := mustMint(t, s, "alice", MintOptions{Expires: time.Hour, Label: "scan"})
	if err := s.Check(ctx, "alice", secret, "127.0.0.1:1"); err != nil {
		t.Fatalf("Check: %v", err)
	}
	randPart, sigPart, _ := strings.Cut(secret, ".")
	var all strings.Builder
	for _, table := range append(copyTables(), "login_failures", "schema_migrations") {
		for _, row := range dumpTable(t, s, table) {
			all.WriteString(row)
			all.WriteByte('\n')
		}
	}
	dump := all.String()
	for name, n := range map[string]string{"token": secret, "random part": randPart, "signature": sigPart} {
		if strings.Contains(dump, n) {
			t.Errorf("the database holds the %s", name)
		}
	}
	if h := fmt.Sprint([]byte(tokenHash(secret))); !strings.Contains(dump, h) {
		t.Errorf("sha256 of the token not found: the scan is not looking at the data")
	}
}
