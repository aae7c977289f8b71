package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/auth"
)

// tokenRE is the shape of a personal token.
var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}$`)

// cli runs the binary with --workdir dir.
type cli struct {
	t        *testing.T
	dir      string
	database string // the "database" key of dir/pydio.json; "" for SQLite (no file)
}

func newCLI(t *testing.T) cli {
	t.Helper()
	return cli{t: t, dir: filepath.Join(t.TempDir(), "work")}
}

// run runs `sftpgate --workdir dir args...`.
func (c cli) run(args ...string) cliResult {
	c.t.Helper()
	return runSftpgate(c.t, append([]string{"--workdir", c.dir}, args...)...)
}

// ok runs the command and fails the test unless it exits 0.
func (c cli) ok(args ...string) cliResult {
	c.t.Helper()
	r := c.run(args...)
	if r.code != 0 {
		c.t.Fatalf("sftpgate %s: got %s, want exit 0", strings.Join(args, " "), r)
	}
	return r
}

// fails runs the command and checks its exit code and that stderr contains
// every one of want.
func (c cli) fails(code int, want []string, args ...string) cliResult {
	c.t.Helper()
	r := c.run(args...)
	if r.code != code {
		c.t.Errorf("sftpgate %s: got %s, want exit %d", strings.Join(args, " "), r, code)
		return r
	}
	if !strings.HasPrefix(r.stderr, "sftpgate: ") {
		c.t.Errorf("sftpgate %s: got stderr %q, want it to start with \"sftpgate: \"", strings.Join(args, " "), r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			c.t.Errorf("sftpgate %s: got stderr %q, want it to contain %q", strings.Join(args, " "), r.stderr, w)
		}
	}
	return r
}

// newCLIOn is newCLI on store (storeSQLite or storePostgres): for
// PostgreSQL, dir/pydio.json names a new database.
func newCLIOn(t *testing.T, store string) cli {
	t.Helper()
	c := newCLI(t)
	c.database = databaseKey(t, store)
	if c.database == "" {
		return c
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(map[string]any{"services": map[string]any{"pydio.gateway.sftp": map[string]any{"database": c.database}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "pydio.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// openStore opens the CLI's identity store from the test process.
func (c cli) openStore() *auth.Store {
	c.t.Helper()
	open := func() (*auth.Store, error) { return auth.Open(filepath.Join(c.dir, "sftpgate.db")) }
	if c.database != "" {
		open = func() (*auth.Store, error) { return auth.OpenPostgres(c.database) }
	}
	st, err := open()
	if err != nil {
		c.t.Fatalf("auth.Open: %v", err)
	}
	c.t.Cleanup(func() { st.Close() })
	return st
}

// tableRows splits a table into its header and rows of fields.
func tableRows(t *testing.T, out string) (header string, rows [][]string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	for _, l := range lines[1:] {
		rows = append(rows, strings.Fields(l))
	}
	return lines[0], rows
}

func TestCLIUsers(t *testing.T) {
	t.Parallel()
	eachStore(t, testCLIUsers)
}

func testCLIUsers(t *testing.T, store string) {
	t.Parallel()
	c := newCLIOn(t, store)

	r := c.ok("admin", "user", "list")
	if got, want := r.stdout, "LOGIN  CREATED  WORKSPACES  AUTH\n"; got != want {
		t.Errorf("empty list: got %q, want just the header %q", got, want)
	}
	if fi, err := os.Stat(c.dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("workdir: got %v, %v, want a 0700 directory", fi, err)
	}

	c.ok("admin", "user", "create", "-u", "alice")
	c.ok("admin", "user", "create", "--username", "bob")
	c.fails(1, []string{`user "alice"`, "already exists"}, "admin", "user", "create", "-u", "alice")
	c.fails(1, []string{`login "bad/login"`, "invalid"}, "admin", "user", "create", "-u", "bad/login")
	c.fails(2, []string{`"user"`}, "admin", "user", "create")
	c.fails(2, []string{"takes no arguments"}, "admin", "user", "create", "-u", "carol", "extra")

	header, rows := tableRows(t, c.ok("admin", "user", "list").stdout)
	if !strings.HasPrefix(header, "LOGIN") || !strings.Contains(header, "CREATED") {
		t.Errorf("got header %q, want LOGIN, CREATED", header)
	}
	if len(rows) != 2 || rows[0][0] != "alice" || rows[1][0] != "bob" {
		t.Errorf("got rows %q, want alice and bob", rows)
	}

	// Deleting a user revokes its tokens.
	secret := strings.TrimSpace(c.ok("admin", "user", "token", "-u", "bob", "-e", "1h", "-q").stdout)
	st := c.openStore()
	ctx := context.Background()
	if err := st.Check(ctx, "bob", secret, "127.0.0.1:40001"); err != nil {
		t.Fatalf("Check before delete: got %v, want nil", err)
	}
	c.ok("admin", "user", "delete", "-u", "bob")
	if err := st.Check(ctx, "bob", secret, "127.0.0.1:40001"); !errors.Is(err, auth.ErrRefused) {
		t.Errorf("Check after delete: got %v, want refused", err)
	}
	c.fails(1, []string{`user "bob"`, "not found"}, "admin", "user", "delete", "-u", "bob")

	_, rows = tableRows(t, c.ok("admin", "user", "list").stdout)
	if len(rows) != 1 || rows[0][0] != "alice" {
		t.Errorf("after delete: got rows %q, want only alice", rows)
	}
}

func TestCLIToken(t *testing.T) {
	t.Parallel()
	eachStore(t, testCLIToken)
}

func testCLIToken(t *testing.T, store string) {
	t.Parallel()
	c := newCLIOn(t, store)
	c.ok("admin", "user", "create", "-u", "admin")

	r := c.ok("admin", "user", "token", "-u", "admin", "-e", "24h")
	lines := strings.Split(r.stdout, "\n")
	if len(lines) != 4 || lines[3] != "" {
		t.Fatalf("got %q, want three lines", r.stdout)
	}
	first := regexp.MustCompile(`^✔ This token for admin will expire on (.+)\.$`).FindStringSubmatch(lines[0])
	if first == nil {
		t.Fatalf("got first line %q, want \"✔ This token for admin will expire on <date>.\"", lines[0])
	}
	checkExpiry(t, first[1], 24*time.Hour)
	secret, ok := strings.CutPrefix(lines[1], "✔ ")
	if !ok || !tokenRE.MatchString(secret) {
		t.Errorf("got second line %q, want \"✔ <token>\" matching %s", lines[1], tokenRE)
	}
	if got, want := lines[2], "⚠ Make sure to secure it as it grants access to the user resources!"; got != want {
		t.Errorf("got third line %q, want %q", got, want)
	}

	r = c.ok("admin", "user", "token", "-u", "admin", "-e", "28d", "-a", "1d", "-l", "laptop")
	lines = strings.Split(r.stdout, "\n")
	auto := regexp.MustCompile(`^✔ This token for admin will expire on (.+) unless it is automatically refreshed\.$`).FindStringSubmatch(lines[0])
	if auto == nil {
		t.Fatalf("-a: got first line %q, want the auto-refresh wording", lines[0])
	}
	checkExpiry(t, auto[1], 24*time.Hour)
	autoSecret := strings.TrimPrefix(lines[1], "✔ ")

	r = c.ok("admin", "user", "token", "-u", "admin", "-e", "30m", "-q")
	quiet := strings.TrimSuffix(r.stdout, "\n")
	if !tokenRE.MatchString(quiet) || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("-q: got %q, want only the token and a newline", r.stdout)
	}

	c.fails(1, []string{`user "nobody"`, "not found"}, "admin", "user", "token", "-u", "nobody", "-e", "1h")
	c.fails(2, []string{`"expire"`}, "admin", "user", "token", "-u", "admin")
	c.fails(2, []string{"--expire", `"soon"`}, "admin", "user", "token", "-u", "admin", "-e", "soon")
	c.fails(2, []string{"--auto"}, "admin", "user", "token", "-u", "admin", "-e", "1h", "-a", "-5m")

	// Lists never show a secret nor its hash.
	list := c.ok("admin", "token", "list").stdout
	header, rows := tableRows(t, list)
	for _, col := range []string{"ID", "OWNER", "LABEL", "CREATED", "EXPIRES", "LAST USED", "STATE"} {
		if !strings.Contains(header, col) {
			t.Errorf("got header %q, want column %s", header, col)
		}
	}
	if len(rows) != 3 {
		t.Errorf("got %d tokens listed, want 3:\n%s", len(rows), list)
	}
	if !strings.Contains(list, "laptop") || !strings.Contains(list, "active") {
		t.Errorf("got list %q, want the label and the state", list)
	}
	for _, s := range []string{secret, autoSecret, quiet} {
		sum := sha256.Sum256([]byte(s))
		for _, leak := range []string{s, s[:43], s[44:], hex.EncodeToString(sum[:])} {
			if strings.Contains(list, leak) {
				t.Errorf("token list %q contains a secret or its hash", list)
			}
		}
	}
	if r := c.ok("admin", "token", "list", "-u", "nobody"); strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("list of a user without tokens: got %q, want the header only", r.stdout)
	}
	c.fails(1, []string{`token "nope"`, "not found"}, "admin", "token", "revoke", "nope")
	c.fails(2, []string{"one token ID"}, "admin", "token", "revoke")
}

// checkExpiry parses a date printed like time.Time.String (no monotonic
// part) and checks it is about d from now.
func checkExpiry(t *testing.T, s string, d time.Duration) {
	t.Helper()
	if strings.Contains(s, "m=") {
		t.Errorf("got date %q, want no monotonic clock reading", s)
	}
	when, err := time.Parse("2006-01-02 15:04:05.999999999 -0700 MST", s)
	if err != nil {
		t.Errorf("got date %q: %v", s, err)
		return
	}
	if off := time.Until(when) - d; off > time.Minute || off < -time.Minute {
		t.Errorf("got expiry %v, want about %v from now", when, d)
	}
}

func TestCLITokenRevokedWhileChecking(t *testing.T) {
	t.Parallel()
	eachStore(t, testCLITokenRevokedWhileChecking)
}

func testCLITokenRevokedWhileChecking(t *testing.T, store string) {
	t.Parallel()
	c := newCLIOn(t, store)
	c.ok("admin", "user", "create", "-u", "alice")
	secret := strings.TrimSpace(c.ok("admin", "user", "token", "-u", "alice", "-e", "1h", "-q").stdout)
	_, rows := tableRows(t, c.ok("admin", "token", "list", "-u", "alice").stdout)
	if len(rows) != 1 {
		t.Fatalf("got %d tokens, want 1", len(rows))
	}
	id := rows[0][0]
	st := c.openStore()

	type result struct {
		afterRevoke bool // the CLI had returned before the call started
		err         error
	}
	var (
		revoked  atomic.Bool
		mu       sync.Mutex
		results  []result // guarded by mu
		firstOK  = make(chan struct{})
		done     = make(chan struct{})
		okOnce   sync.Once
		postWant = 20
	)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for post := 0; post < postWant && ctx.Err() == nil; {
			after := revoked.Load()
			err := st.Check(ctx, "alice", secret, "127.0.0.1:40002")
			mu.Lock()
			results = append(results, result{after, err})
			mu.Unlock()
			if err == nil {
				okOnce.Do(func() { close(firstOK) })
			}
			if after {
				post++
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()

	select {
	case <-firstOK:
	case <-done:
		t.Fatalf("the verify loop stopped before a successful check: %v", results)
	case <-time.After(20 * time.Second):
		t.Fatal("no successful check within 20s")
	}
	c.ok("admin", "token", "revoke", id)
	revoked.Store(true)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the verify loop did not make its checks after the revoke within 20s")
	}

	mu.Lock()
	defer mu.Unlock()
	var before, after []result
	for _, r := range results {
		if r.afterRevoke {
			after = append(after, r)
		} else {
			before = append(before, r)
		}
	}
	if len(after) != postWant {
		t.Fatalf("got %d checks after the revoke, want %d", len(after), postWant)
	}
	var refused *auth.RefusedError
	if !errors.As(after[0].err, &refused) || refused.Reason != auth.ReasonRevoked {
		t.Errorf("first check after the revoke: got %v, want refused: revoked", after[0].err)
	}
	for i, r := range after {
		if !errors.Is(r.err, auth.ErrRefused) {
			t.Errorf("check %d after the revoke: got %v, want refused", i, r.err)
		}
	}
	if before[0].err != nil {
		t.Errorf("first check: got %v, want success", before[0].err)
	}
	t.Logf("%d checks before the CLI returned, %d after", len(before), len(after))

	states := c.ok("admin", "token", "list", "-u", "alice").stdout
	if !strings.Contains(states, "revoked") {
		t.Errorf("got token list %q, want the token revoked", states)
	}
}

func TestCLIWorkspaces(t *testing.T) {
	t.Parallel()
	eachStore(t, testCLIWorkspaces)
}

func testCLIWorkspaces(t *testing.T, store string) {
	t.Parallel()
	c := newCLIOn(t, store)
	if r := c.ok("admin", "workspace", "list"); r.stdout != "SLUG  BUCKET  PREFIX  CREATED  GRANTS\n" {
		t.Errorf("empty list: got %q, want just the header", r.stdout)
	}
	c.ok("admin", "user", "create", "-u", "alice")
	c.ok("admin", "user", "create", "-u", "bob")
	c.ok("admin", "workspace", "create", "--slug", "common", "--bucket", "common")
	c.ok("admin", "workspace", "create", "--slug", "home", "--bucket", "personal", "--prefix", "{user}/")
	c.fails(1, []string{`workspace "common"`, "already exists"}, "admin", "workspace", "create", "--slug", "common", "--bucket", "x1y")

	for _, bucket := range []string{"Upper", "ab", "under_score", "-lead", "192.168.1.1", strings.Repeat("a", 64)} {
		c.fails(1, []string{`bucket "` + bucket + `"`, "invalid"}, "admin", "workspace", "create", "--slug", "w", "--bucket", bucket)
	}
	c.fails(2, []string{"bucket"}, "admin", "workspace", "create", "--slug", "w")

	c.ok("admin", "workspace", "grant", "--slug", "common", "-u", "alice")
	c.ok("admin", "workspace", "grant", "--slug", "common", "-u", "bob", "--read-only")
	c.ok("admin", "workspace", "grant", "--slug", "home", "-u", "bob")
	c.fails(1, []string{`user "carol"`, "not found"}, "admin", "workspace", "grant", "--slug", "common", "-u", "carol")
	c.fails(1, []string{`workspace "nope"`, "not found"}, "admin", "workspace", "grant", "--slug", "nope", "-u", "alice")

	want := map[string][]string{
		"common": {"common", "-", "alice:rw,bob:ro"},
		"home":   {"personal", "{user}/", "bob:rw"},
	}
	checkWorkspaces(t, c.ok("admin", "workspace", "list").stdout, want)
	if r := c.ok("admin", "user", "list"); !strings.Contains(r.stdout, "common:ro,home:rw") {
		t.Errorf("user list: got %q, want bob's workspaces common:ro,home:rw", r.stdout)
	}

	c.ok("admin", "workspace", "revoke", "--slug", "common", "-u", "bob")
	c.fails(1, []string{"not found"}, "admin", "workspace", "revoke", "--slug", "common", "-u", "bob")
	want["common"] = []string{"common", "-", "alice:rw"}
	checkWorkspaces(t, c.ok("admin", "workspace", "list").stdout, want)

	c.ok("admin", "workspace", "delete", "--slug", "home")
	delete(want, "home")
	checkWorkspaces(t, c.ok("admin", "workspace", "list").stdout, want)
	c.fails(1, []string{`workspace "home"`, "not found"}, "admin", "workspace", "delete", "--slug", "home")
	c.fails(2, []string{"slug"}, "admin", "workspace", "delete")
}

// checkWorkspaces compares a workspace table with slug → bucket, prefix,
// grants.
func checkWorkspaces(t *testing.T, out string, want map[string][]string) {
	t.Helper()
	_, rows := tableRows(t, out)
	if len(rows) != len(want) {
		t.Errorf("got %d workspaces, want %d:\n%s", len(rows), len(want), out)
	}
	for _, r := range rows {
		// SLUG BUCKET PREFIX CREATED(date time) GRANTS
		if len(r) != 6 {
			t.Errorf("got row %q, want 6 fields", r)
			continue
		}
		got := []string{r[1], r[2], r[5]}
		if w, ok := want[r[0]]; !ok || strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("workspace %s: got %q, want %q", r[0], got, w)
		}
	}
}

func TestCLIConfigCheck(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(c.dir, "id_rsa")
	if err := os.WriteFile(key, []byte("key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name, section string) string {
		t.Helper()
		p := filepath.Join(c.dir, name)
		data := `{"version": "4.0", "services": {"pydio.grpc.mailer": {}, "pydio.gateway.sftp": {` + section + `}}}`
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const s = `services."pydio.gateway.sftp".`

	write("pydio.json", `"enabled": true, "hostKeyFile": "id_rsa", "port": 2200, "tmpFilesLifespan": "30m",
		"minio": {"endpoint": "127.0.0.1:9000", "accessKey": "minioadmin", "secretKey": "s3cr3t-value"}`)
	r := c.ok("config", "check")
	for _, w := range []string{"configuration OK", "hostKeyFile", key, "port", "2200", "tmpFilesLifespan", "30m0s",
		"mountRoot", filepath.Join(c.dir, "mounts"), "uploadPartSize", "16MiB", "tmpMinFree", "512MiB", "minio.secretKey", "****"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("config check: got %q, want it to contain %q", r.stdout, w)
		}
	}
	if strings.Contains(r.stdout+r.stderr, "s3cr3t-value") {
		t.Errorf("config check printed the secret key:\n%s", r)
	}

	r = c.ok("config", "check", "--json")
	var doc struct {
		Services map[string]map[string]any `json:"services"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("config check --json: got %q: %v", r.stdout, err)
	}
	sec := doc.Services["pydio.gateway.sftp"]
	if sec["port"] != float64(2200) || sec["enabled"] != true || sec["idleTimeout"] != "15m0s" || sec["maxSessionsPerUser"] != float64(64) || sec["maxHandlesPerSession"] != float64(256) || sec["maxFileSize"] != "5TiB" {
		t.Errorf("config check --json: got %v", sec)
	}
	if m, _ := sec["minio"].(map[string]any); m["secretKey"] != "****" || m["endpoint"] != "127.0.0.1:9000" {
		t.Errorf("config check --json: got minio %v, want the endpoint and a masked secret", sec["minio"])
	}
	if !strings.Contains(r.stderr, "configuration OK") || strings.Contains(r.stdout+r.stderr, "s3cr3t-value") {
		t.Errorf("config check --json: got %s", r)
	}

	// Unknown keys: one warning, still OK.
	other := write("other.json", `"port": 2201, "colour": "blue", "bogus": 1`)
	r = c.ok("--config", other, "config", "check")
	if strings.Count(r.stderr, "warning") != 1 || !strings.Contains(r.stderr, "bogus, colour") {
		t.Errorf("unknown keys: got stderr %q, want one warning listing bogus, colour", r.stderr)
	}

	for _, tt := range []struct {
		name, section string
		want          []string
	}{
		{"malformed", `"port": 2022,`, []string{"malformed JSON at line 1, column"}},
		{"wrong type", `"port": "2022"`, []string{s + "port: expected int, got string"}},
		{"bad duration", `"tmpFilesLifespan": "15 minutes"`, []string{s + "tmpFilesLifespan", `"15 minutes"`}},
		{"port range", `"port": 70000`, []string{s + "port: must be between 1 and 65535"}},
		{"missing hostKeyFile", `"enabled": true`, []string{s + "hostKeyFile: mandatory"}},
		{"absent hostKeyFile", `"enabled": true, "hostKeyFile": "nope"`, []string{s + "hostKeyFile", filepath.Join(c.dir, "nope")}},
		{"directory hostKeyFile", `"enabled": true, "hostKeyFile": "."`, []string{s + "hostKeyFile", "not a regular file"}},
		{"part size", `"uploadPartSize": "1MiB"`, []string{s + "uploadPartSize", "5MiB"}},
		{"minio", `"minio": {"endpoint": "https://minio:9000"}`, []string{s + "minio.endpoint", s + "minio.accessKey", s + "minio.secretKey"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := write("bad-"+strings.ReplaceAll(tt.name, " ", "-")+".json", tt.section)
			c := cli{t: t, dir: c.dir}
			r := c.fails(1, append(tt.want, p), "--config", p, "config", "check")
			if strings.Contains(r.stdout, "configuration OK") {
				t.Errorf("got stdout %q, want no \"configuration OK\"", r.stdout)
			}
		})
	}
	missing := filepath.Join(c.dir, "absent.json")
	c.fails(1, []string{missing, "no such file"}, "--config", missing, "config", "check")
}

func TestCLIUsage(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := c.ok("version")
	if !strings.HasPrefix(r.stdout, "sftpgate ") {
		t.Errorf("version: got %q, want \"sftpgate <version>\"", r.stdout)
	}
	for _, args := range [][]string{
		{"bogus"},
		{"admin", "bogus"},
		{"admin", "user", "list", "--bogus"},
		{"admin", "user", "list", "extra"},
		{"version", "extra"},
		{"config", "check", "--json=maybe"},
	} {
		r := c.fails(2, nil, args...)
		if !strings.Contains(r.stderr, "--help") {
			t.Errorf("sftpgate %s: got stderr %q, want a hint to use --help", strings.Join(args, " "), r.stderr)
		}
	}
}

func TestCLIHelpHasExample(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	seen := 0
	var walk func(path []string)
	walk = func(path []string) {
		r := c.ok(append(append([]string{}, path...), "--help")...)
		seen++
		if !strings.Contains(r.stdout, "Example") {
			t.Errorf("sftpgate %s --help: got %q, want an Example section", strings.Join(path, " "), r.stdout)
		}
		for _, sub := range subcommands(r.stdout) {
			walk(append(append([]string{}, path...), sub))
		}
	}
	walk(nil)
	if seen < 20 {
		t.Errorf("got %d commands, want at least 20", seen)
	}
}

// subcommands lists the names in the "Available Commands:" section of a help
// text.
func subcommands(help string) []string {
	_, rest, ok := strings.Cut(help, "Available Commands:\n")
	if !ok {
		return nil
	}
	var names []string
	for _, l := range strings.Split(rest, "\n") {
		if strings.TrimSpace(l) == "" {
			break
		}
		names = append(names, strings.Fields(l)[0])
	}
	return names
}
