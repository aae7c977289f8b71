package auth

import (
	"context"
	"database/sql"
	"regexp"
	"strconv"
	"strings"
)

// dialect is the SQL flavour of a store's database.
type dialect uint8

const (
	dialectSQLite   dialect = iota // modernc.org/sqlite, one file
	dialectPostgres                // PostgreSQL through pgx's database/sql driver
)

// db is the store's *sql.DB with the statements of this package, written
// for SQLite with ? placeholders, rewritten for the dialect at each call.
// Every query of the package goes through it (or a tx), so there is one
// code path for both databases.
type db struct {
	*sql.DB
	dialect dialect
}

// dbTx is a transaction of a db; see db.
type dbTx struct {
	*sql.Tx
	dialect dialect
}

// ExecContext runs query (SQLite syntax) with args.
func (d *db) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return d.DB.ExecContext(ctx, d.dialect.rebind(query), d.dialect.args(args)...)
}

// QueryContext runs query (SQLite syntax) with args.
func (d *db) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return d.DB.QueryContext(ctx, d.dialect.rebind(query), d.dialect.args(args)...)
}

// QueryRowContext runs query (SQLite syntax) with args.
func (d *db) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return d.DB.QueryRowContext(ctx, d.dialect.rebind(query), d.dialect.args(args)...)
}

// BeginTx starts a transaction.
func (d *db) BeginTx(ctx context.Context, opts *sql.TxOptions) (*dbTx, error) {
	t, err := d.DB.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &dbTx{Tx: t, dialect: d.dialect}, nil
}

// ExecContext runs query (SQLite syntax) with args.
func (t *dbTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.Tx.ExecContext(ctx, t.dialect.rebind(query), t.dialect.args(args)...)
}

// QueryContext runs query (SQLite syntax) with args.
func (t *dbTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.Tx.QueryContext(ctx, t.dialect.rebind(query), t.dialect.args(args)...)
}

// QueryRowContext runs query (SQLite syntax) with args.
func (t *dbTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.Tx.QueryRowContext(ctx, t.dialect.rebind(query), t.dialect.args(args)...)
}

// rebind turns the ? placeholders of query into PostgreSQL's $1, $2, …
// (outside quoted literals); SQLite's query is returned as it is.
func (d dialect) rebind(query string) string {
	if d != dialectPostgres || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n, quoted := 0, false
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'':
			quoted = !quoted
		case c == '?' && !quoted:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// args adapts arguments: the schema stores booleans as integers (SQLite
// has no boolean type), which PostgreSQL does not convert by itself.
func (d dialect) args(args []any) []any {
	if d != dialectPostgres {
		return args
	}
	var out []any // a copy, made at the first boolean
	for i, a := range args {
		v, ok := a.(bool)
		if !ok {
			continue
		}
		if out == nil {
			out = append([]any(nil), args...)
		}
		out[i] = int64(0)
		if v {
			out[i] = int64(1)
		}
	}
	if out == nil {
		return args
	}
	return out
}

// strpos returns the SQL expression of the 1-based position of needle in
// haystack (0 if absent): instr in SQLite, strpos in PostgreSQL.
func (d dialect) strpos(haystack, needle string) string {
	if d == dialectPostgres {
		return "strpos(" + haystack + ", " + needle + ")"
	}
	return "instr(" + haystack + ", " + needle + ")"
}

// The SQLite migrations are the schema; translatePostgres rewrites their
// types for PostgreSQL: 64-bit integers, bytea, and text compared and
// sorted bytewise (COLLATE "C") as SQLite does, whatever the database's
// locale. STRICT (a SQLite table option) goes: PostgreSQL is strict.
var (
	pgInteger = regexp.MustCompile(`\bINTEGER\b`)
	pgBlob    = regexp.MustCompile(`\bBLOB\b`)
	pgText    = regexp.MustCompile(`\bTEXT\b`)
	pgStrict  = regexp.MustCompile(`\)\s*STRICT\s*;`)
)

// translatePostgres returns the PostgreSQL form of a migration.
func translatePostgres(sqlText string) string {
	s := pgStrict.ReplaceAllString(sqlText, ");")
	s = pgInteger.ReplaceAllString(s, "BIGINT")
	s = pgBlob.ReplaceAllString(s, "BYTEA")
	return pgText.ReplaceAllString(s, `TEXT COLLATE "C"`)
}
