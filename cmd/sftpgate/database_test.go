package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sftpgate/sftpgate/internal/config"
	"github.com/sftpgate/sftpgate/internal/testenv"
)

// sectionJSON is a configuration file whose gateway section holds body.
func sectionJSON(body string) []byte {
	return []byte(`{"services": {"pydio.gateway.sftp": {` + body + `}}}`)
}

func TestConfigDatabase(t *testing.T) {
	dir := t.TempDir()
	const pgURL = "postgres://gw:pa55-w0rd@db.example:5432/sftpgate?sslmode=verify-full"
	for _, tt := range []struct {
		name, body, want, wantErr string
	}{
		{"default", ``, "sqlite", ""},
		{"sqlite", `"database": "sqlite"`, "sqlite", ""},
		{"empty", `"database": ""`, "sqlite", ""},
		{"postgres", `"database": "` + pgURL + `"`, pgURL, ""},
		{"postgresql scheme", `"database": "postgresql://h/db"`, "postgresql://h/db", ""},
		{"other", `"database": "mysql://u:pa55-w0rd@h/db"`, "", `database: want "sqlite" or a postgres:// URL`},
		{"bad URL", `"database": "postgres://u:pa55-w0rd@h:port/db"`, "", `database: postgres://****: not a valid URL`},
		{"bad option", `"database": "postgres://u:pa55-w0rd@h/db?sslmode=sometimes"`, "", `database: postgres://u:****@h/db?sslmode=sometimes: not a valid PostgreSQL URL`},
		{"number", `"database": 1`, "", `database: expected string, got number`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := config.ParseConfig(sectionJSON(tt.body), filepath.Join(dir, "pydio.json"), dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "pa55-w0rd") {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if cfg.Database != tt.want {
				t.Errorf("got database %q, want %q", cfg.Database, tt.want)
			}
		})
	}
	// config check masks the password, in text and JSON.
	if err := os.WriteFile(filepath.Join(dir, "pydio.json"), sectionJSON(`"database": "`+pgURL+`"`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"config", "check"}, {"config", "check", "--json"}} {
		code, stdout, stderr := runCLI(t, append([]string{"--workdir", dir}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		if strings.Contains(stdout+stderr, "pa55-w0rd") || !strings.Contains(stdout, "postgres://gw:****@db.example:5432/sftpgate?sslmode=verify-full") {
			t.Errorf("%v: got %q, want the URL with its password masked", args, stdout)
		}
	}
}

// TestMigrateStoreCLI copies a SQLite store made with the admin commands
// into PostgreSQL, then runs the admin commands against PostgreSQL
// through the "database" key.
func TestMigrateStoreCLI(t *testing.T) {
	pg := testenv.StartPostgresT(t)
	u := pg.NewDatabase(t)
	dir := t.TempDir()
	cli := func(want int, args ...string) string {
		t.Helper()
		code, stdout, stderr := runCLI(t, append([]string{"--workdir", dir}, args...)...)
		if code != want {
			t.Fatalf("%s: got exit %d (stdout %q, stderr %q), want %d", strings.Join(args, " "), code, stdout, stderr, want)
		}
		if strings.Contains(stdout+stderr, pg.Password) {
			t.Errorf("%s: output shows the database password: %q", strings.Join(args, " "), stdout+stderr)
		}
		return stdout + stderr
	}
	cli(0, "admin", "user", "create", "-u", "alice")
	cli(0, "admin", "workspace", "create", "--slug", "home", "--bucket", "personal", "--prefix", "{user}/")
	cli(0, "admin", "workspace", "grant", "--slug", "home", "-u", "alice")
	cli(0, "admin", "user", "token", "-u", "alice", "-e", "1h")

	out := cli(0, "admin", "migrate-store", "--to", u)
	masked := strings.Replace(u, pg.Password, "****", 1)
	want := fmt.Sprintf("copied 1 users, 1 workspaces, 1 grants, 1 tokens, 0 user keys, 0 token scopes, 0 user quotas and the token-signing key from %s to %s\n",
		filepath.Join(dir, config.StoreFile), masked)
	if out != want {
		t.Errorf("got %q, want %q", out, want)
	}
	if out := cli(1, "admin", "migrate-store", "--to", u); !strings.Contains(out, "target store is not empty") || !strings.Contains(out, "--force") {
		t.Errorf("second migrate: got %q, want a refusal naming --force", out)
	}
	cli(0, "admin", "migrate-store", "--to", u, "--force")

	// The admin commands now work on PostgreSQL.
	if err := os.WriteFile(filepath.Join(dir, "pydio.json"), sectionJSON(`"database": "`+u+`"`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, config.StoreFile)); err != nil {
		t.Fatal(err)
	}
	cli(0, "admin", "user", "create", "-u", "bob")
	if out := cli(0, "admin", "user", "list"); !strings.Contains(out, "alice") || !strings.Contains(out, "bob") {
		t.Errorf("user list on PostgreSQL: got %q, want alice and bob", out)
	}
	if out := cli(0, "admin", "workspace", "list"); !strings.Contains(out, "home") {
		t.Errorf("workspace list on PostgreSQL: got %q, want home", out)
	}
	if _, err := os.Stat(filepath.Join(dir, config.StoreFile)); !os.IsNotExist(err) {
		t.Errorf("admin commands with a PostgreSQL database created %s (%v)", config.StoreFile, err)
	}
}

// TestAdminReadsOnlyTheDatabaseKey: the admin commands work with a
// configuration that serve would refuse, as long as its "database" key is
// good; a bad "database" or a file that is not JSON stops them.
func TestAdminReadsOnlyTheDatabaseKey(t *testing.T) {
	for _, tt := range []struct {
		name, file string
		code       int
		want       string
	}{
		{"other keys invalid", string(sectionJSON(`"port": "abc", "hostKeyFile": "/nonexistent"`)), 0, "LOGIN"},
		{"database sqlite", string(sectionJSON(`"port": 0, "database": "sqlite"`)), 0, "LOGIN"},
		{"no section", `{"services": {}}`, 0, "LOGIN"},
		{"bad database", string(sectionJSON(`"database": "mysql://u:pa55-w0rd@h/db"`)), 1, `database: want "sqlite" or a postgres:// URL`},
		{"not JSON", `{"services": `, 1, "cannot read the database key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "pydio.json"), []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runCLI(t, "--workdir", dir, "admin", "user", "list")
			if code != tt.code || !strings.Contains(stdout+stderr, tt.want) || strings.Contains(stderr, "pa55-w0rd") {
				t.Errorf("got exit %d, stdout %q, stderr %q; want exit %d and %q", code, stdout, stderr, tt.code, tt.want)
			}
		})
	}
}
