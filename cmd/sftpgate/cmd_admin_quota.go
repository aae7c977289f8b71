package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/internal/config"
)

// newUserQuotaCmd is "sftpgate admin user quota".
func newUserQuotaCmd() *cobra.Command {
	var (
		login, bytes, files string
		recompute           bool
	)
	cmd := &cobra.Command{
		Use:   "quota -u LOGIN [--bytes SIZE] [--files N] [--recompute]",
		Short: "Show or set a user's quota over their personal ({user}) workspaces",
		Long: `Without --bytes or --files, print the user's limits and usage. A limit of 0
or "none" removes it. --recompute discards the usage kept in the store: the
gateway lists the user's personal workspaces again at its next use (without
-u, every user's).`,
		Example: `  sftpgate admin user quota -u alice --bytes 10GiB --files 100000
  sftpgate admin user quota -u alice
  sftpgate admin user quota -u alice --bytes none
  sftpgate admin user quota -u alice --recompute`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			if login == "" && !recompute {
				return usagef("%q needs -u LOGIN", cmd.CommandPath())
			}
			maxBytes, maxFiles := int64(-1), int64(-1)
			var err error
			if cmd.Flags().Changed("bytes") {
				if maxBytes, err = parseLimit(bytes, config.ParseSize); err != nil {
					return usagef("--bytes: %v", err)
				}
			}
			if cmd.Flags().Changed("files") {
				if maxFiles, err = parseLimit(files, func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }); err != nil || maxFiles < 0 {
					return usagef("--files: want a whole number or \"none\", got %q", files)
				}
			}
			return withStore(cmd, func(ctx context.Context, st *auth.Store) error {
				if maxBytes >= 0 || maxFiles >= 0 {
					if err := st.SetQuota(ctx, login, maxBytes, maxFiles); err != nil {
						return fmt.Errorf("set quota: %w", err)
					}
				}
				if recompute {
					if err := st.RecomputeUsage(ctx, login); err != nil {
						return fmt.Errorf("recompute usage: %w", err)
					}
				}
				if login == "" {
					_, err := fmt.Fprintln(cmd.OutOrStdout(), "usage of every user will be recomputed at the next use")
					return err
				}
				if _, err := st.User(ctx, login); err != nil {
					return fmt.Errorf("quota: %w", err)
				}
				q, err := st.Quota(ctx, login)
				if err != nil {
					return fmt.Errorf("quota: %w", err)
				}
				_, err = fmt.Fprint(cmd.OutOrStdout(), formatQuota(login, q))
				return err
			})
		}),
	}
	addUserFlag(cmd, &login, "login of the user")
	cmd.Flags().StringVar(&bytes, "bytes", "", `most bytes the user's personal workspaces may hold (e.g. 10GiB; 0 or "none": no limit)`)
	cmd.Flags().StringVar(&files, "files", "", `most files the user's personal workspaces may hold (0 or "none": no limit)`)
	cmd.Flags().BoolVar(&recompute, "recompute", false, "discard the kept usage: it is listed again at the gateway's next use")
	return cmd
}

// parseLimit parses a limit: "none" is 0 (no limit).
func parseLimit(s string, parse func(string) (int64, error)) (int64, error) {
	if strings.EqualFold(strings.TrimSpace(s), "none") {
		return 0, nil
	}
	return parse(strings.TrimSpace(s))
}

// formatQuota prints a user's quota, one line per limit:
// "bytes: used 2097152 of 3145728 (3MiB)".
func formatQuota(login string, q auth.Quota) string {
	var b strings.Builder
	fmt.Fprintf(&b, "user %s\n", login)
	line := func(what string, used, limit int64, size bool) {
		lim := "none"
		if limit > 0 {
			lim = strconv.FormatInt(limit, 10)
			if size {
				lim += " (" + config.FormatSize(limit) + ")"
			}
		}
		u := "not computed yet (listed at the gateway's next use)"
		if q.Computed {
			u = strconv.FormatInt(used, 10)
		}
		fmt.Fprintf(&b, "%s: used %s of %s\n", what, u, lim)
	}
	line("bytes", q.UsedBytes, q.MaxBytes, true)
	line("files", q.UsedFiles, q.MaxFiles, false)
	return b.String()
}
