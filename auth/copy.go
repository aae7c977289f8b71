package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrTargetNotEmpty is returned by CopyStore when the target store already
// holds users, workspaces, tokens or keys and overwriting was not asked.
var ErrTargetNotEmpty = errors.New("auth: target store is not empty")

// copyTables returns the tables CopyStore copies, parents before
// children. The failed-login counts are not copied: they are short-lived.
func copyTables() []string {
	return []string{"meta", "users", "workspaces", "grants", "tokens", "user_keys", "token_scopes", "user_quotas"}
}

// CopyCount is how many rows of one table CopyStore copied.
type CopyCount struct {
	Table string
	Rows  int
}

// CopyStore copies every user, workspace, grant, token (with its scopes),
// key, quota and the token-signing key from src into dst, in one
// transaction of dst: tokens minted by src log in against dst. dst must be
// empty (ErrTargetNotEmpty) unless overwrite is set, in which case what
// it held is deleted first. It returns the rows copied per table. dst's
// signing key changes: close dst and open it again before using it.
func CopyStore(ctx context.Context, src, dst *Store, overwrite bool) ([]CopyCount, error) {
	stx, err := src.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("auth: copy: read source: %w", err)
	}
	defer stx.Rollback() //nolint:errcheck // read only
	var counts []CopyCount
	err = dst.writeTx(ctx, func(dtx *dbTx) error {
		n, err := countIdentities(ctx, dtx)
		if err != nil {
			return err
		}
		if n > 0 && !overwrite {
			return fmt.Errorf("%w (%d users, workspaces, tokens and keys)", ErrTargetNotEmpty, n)
		}
		tables := copyTables()
		for i := len(tables) - 1; i >= 0; i-- {
			if _, err := dtx.ExecContext(ctx, `DELETE FROM `+tables[i]); err != nil {
				return fmt.Errorf("clear %s: %w", tables[i], err)
			}
		}
		for _, table := range tables {
			n, err := copyTable(ctx, stx, dtx, table)
			if err != nil {
				return fmt.Errorf("%s: %w", table, err)
			}
			counts = append(counts, CopyCount{Table: table, Rows: n})
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrTargetNotEmpty) {
			return nil, err
		}
		return nil, fmt.Errorf("auth: copy: %w", err)
	}
	return counts, nil
}

// countIdentities counts the rows that make a store not empty.
func countIdentities(ctx context.Context, t *dbTx) (int, error) {
	var n int
	err := t.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM workspaces)
		+ (SELECT count(*) FROM tokens) + (SELECT count(*) FROM user_keys)`).Scan(&n)
	return n, err
}

// copyTable copies every row of table from src to dst, row by row (memory
// does not grow with the table), and returns how many.
func copyTable(ctx context.Context, src, dst *dbTx, table string) (int, error) {
	rows, err := src.QueryContext(ctx, `SELECT * FROM `+table)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	insert := `INSERT INTO ` + table + `(` + strings.Join(cols, ", ") + `) VALUES (` +
		strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + `)`
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, err
		}
		if _, err := dst.ExecContext(ctx, insert, vals...); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}
