package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/internal/config"
)

// newAdminMigrateStoreCmd is "sftpgate admin migrate-store".
func newAdminMigrateStoreCmd() *cobra.Command {
	var (
		to, from string
		force    bool
	)
	cmd := &cobra.Command{
		Use:   "migrate-store --to postgres://… [--from FILE] [--force]",
		Short: "Copy the SQLite identity store into PostgreSQL",
		Long: `Copy every user, workspace, grant, token (with its scopes), SSH key, quota and
the token-signing key from the SQLite store (<workdir>/sftpgate.db, or
--from) into the PostgreSQL database --to, in one transaction: the tokens
already handed out keep working. The schema is created in the target if
needed. A target that already holds users, workspaces, tokens or keys is
refused unless --force, which replaces what it held. Then set "database"
to the URL in the configuration and restart the gateways.`,
		Example: `  sftpgate admin migrate-store --to 'postgres://sftpgate:PASSWORD@db.example:5432/sftpgate?sslmode=verify-full'`,
		Args:    noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			if !auth.IsPostgresURL(to) {
				return usagef("--to: want a postgres:// URL")
			}
			if from == "" {
				dir, err := workdir(cmd)
				if err != nil {
					return err
				}
				from = filepath.Join(dir, config.StoreFile)
			}
			// Never create an empty source by opening it.
			if _, err := os.Stat(from); err != nil {
				return fmt.Errorf("migrate store: source: %w", err)
			}
			src, err := auth.Open(from)
			if err != nil {
				return fmt.Errorf("migrate store: source: %w", err)
			}
			defer src.Close()
			dst, err := auth.OpenPostgres(to)
			if err != nil {
				return fmt.Errorf("migrate store: target: %w", err)
			}
			defer dst.Close()
			counts, err := auth.CopyStore(cmd.Context(), src, dst, force)
			if errors.Is(err, auth.ErrTargetNotEmpty) {
				return fmt.Errorf("migrate store: %s: %w; use --force to replace its content", auth.RedactURL(to), err)
			}
			if err != nil {
				return fmt.Errorf("migrate store: %w", err)
			}
			var parts []string
			for _, c := range counts {
				if c.Table == "meta" {
					continue // the signing key, said below
				}
				parts = append(parts, fmt.Sprintf("%d %s", c.Rows, strings.ReplaceAll(c.Table, "_", " ")))
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "copied %s and the token-signing key from %s to %s\n",
				strings.Join(parts, ", "), from, auth.RedactURL(to))
			return err
		}),
	}
	cmd.Flags().StringVar(&to, "to", "", "PostgreSQL URL of the target database")
	_ = cmd.MarkFlagRequired("to")
	cmd.Flags().StringVar(&from, "from", "", "SQLite store to copy (default <workdir>/sftpgate.db)")
	cmd.Flags().BoolVar(&force, "force", false, "replace the content of a non-empty target")
	return cmd
}
