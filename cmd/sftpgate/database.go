package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

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
// "database" key of the configuration file names, or <workdir>/sftpgate.db
// when there is no file or no key. Only that key is read: the admin
// commands do not need an otherwise valid configuration.
func openAdminStore(cmd *cobra.Command, dir string) (*auth.Store, error) {
	database, err := adminDatabase(configPath(cmd, dir))
	if err != nil {
		return nil, err
	}
	if database == databaseSQLite {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("working directory: %w", err)
		}
	}
	return openConfiguredStore(database, dir)
}

// adminDatabase reads the "database" key of the configuration file at
// path: "sqlite" when the file, the section or the key is missing. A file
// that is not JSON, or a bad value, is an error: guessing could edit the
// wrong store.
func adminDatabase(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return databaseSQLite, nil
	}
	if err != nil {
		return "", fmt.Errorf("config %s: %w", path, err)
	}
	var doc struct {
		Services map[string]json.RawMessage `json:"services"`
	}
	var section struct {
		Database *string `json:"database"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return "", fmt.Errorf("config %s: cannot read the database key: %v", path, err)
	}
	if raw, ok := doc.Services[sectionName]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &section); err != nil {
			return "", fmt.Errorf("config %s: cannot read the database key: %v", path, err)
		}
	}
	p := &parser{prefix: sectionKey + ".", values: map[string]json.RawMessage{}, seen: map[string]bool{}}
	if section.Database != nil {
		b, _ := json.Marshal(*section.Database) // a string always marshals
		p.values["database"] = b
	}
	database := databaseSQLite
	p.database(&database)
	if len(p.problems) > 0 {
		return "", &configError{file: path, problem: strings.Join(p.problems, "; ")}
	}
	return database, nil
}
