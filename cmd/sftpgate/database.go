package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/sftpgate/sftpgate/auth"
)

// databaseSQLite is the value of the "database" key that selects the
// embedded SQLite store <workdir>/sftpgate.db (the default).
const databaseSQLite = "sqlite"

// database parses the "database" key: "sqlite" or a postgres:// URL.
func (p *parser) database(dst *string) {
	if !p.str("database", dst) {
		return
	}
	switch v := *dst; {
	case v == "" || v == databaseSQLite:
		*dst = databaseSQLite
	case auth.IsPostgresURL(v):
		if _, err := url.Parse(v); err != nil {
			p.problem("database", fmt.Sprintf("%s: not a valid URL", auth.RedactURL(v)))
		} else if _, err := pgx.ParseConfig(v); err != nil {
			p.problem("database", fmt.Sprintf("%s: not a valid PostgreSQL URL", auth.RedactURL(v)))
		}
	default:
		p.problem("database", `want "sqlite" or a postgres:// URL`)
	}
}

// databaseShown is the "database" value as config check prints it, the
// password masked.
func databaseShown(database string) string {
	if auth.IsPostgresURL(database) {
		return auth.RedactURL(database)
	}
	return databaseSQLite
}

// openConfiguredStore opens the identity store cfg names: PostgreSQL for a
// postgres:// URL, else <workdir>/sftpgate.db.
func openConfiguredStore(database, workdir string) (*auth.Store, error) {
	if auth.IsPostgresURL(database) {
		return auth.OpenPostgres(database)
	}
	return auth.Open(filepath.Join(workdir, storeFile))
}

// openAdminStore opens the store the admin commands work on: the one the
// configuration file names ("database"), or <workdir>/sftpgate.db when
// there is no configuration file.
func openAdminStore(cmd *cobra.Command, dir string) (*auth.Store, error) {
	database := databaseSQLite
	cfg, _, err := LoadConfig(configPath(cmd, dir), dir)
	switch {
	case err == nil:
		database = cfg.Database
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, err
	}
	if database == databaseSQLite {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("working directory: %w", err)
		}
	}
	return openConfiguredStore(database, dir)
}
