package config

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

	"github.com/sftpgate/sftpgate/auth"
)

// DatabaseSQLite is the value of the "database" key that selects the
// embedded SQLite store <workdir>/sftpgate.db (the default).
const DatabaseSQLite = "sqlite"

// database parses the "database" key: "sqlite" or a postgres:// URL.
func (p *parser) database(dst *string) {
	if !p.str("database", dst) {
		return
	}
	switch v := *dst; {
	case v == "" || v == DatabaseSQLite:
		*dst = DatabaseSQLite
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
	return DatabaseSQLite
}

// OpenStore opens the identity store that database (the "database" key)
// names: PostgreSQL for a postgres:// URL, else <workdir>/sftpgate.db.
func OpenStore(database, workdir string) (*auth.Store, error) {
	if auth.IsPostgresURL(database) {
		return auth.OpenPostgres(database)
	}
	return auth.Open(filepath.Join(workdir, StoreFile))
}

// AdminDatabase reads only the "database" key of the configuration file
// at path, for the admin commands, which need no otherwise valid file: "sqlite" when the file, the section or the key is missing. A file
// that is not JSON, or a bad value, is an error: guessing could edit the
// wrong store.
func AdminDatabase(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return DatabaseSQLite, nil
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
	database := DatabaseSQLite
	p.database(&database)
	if len(p.problems) > 0 {
		return "", &configError{file: path, problem: strings.Join(p.problems, "; ")}
	}
	return database, nil
}
