package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sftpgate/sftpgate/auth"
)

// newUserTokenCmd is "sftpgate admin user token", the command of Cells
// Enterprise with the same flags and output.
func newUserTokenCmd() *cobra.Command {
	var login, expire, refresh, label string
	var scopes []string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "token -u LOGIN -e DURATION [-a SECONDS|DURATION] [-s node:WORKSPACE/PATH:PERM]... [-l LABEL] [-q]",
		Short: "Mint a personal access token for a user",
		Long: `Mint a personal access token: the password of the user's SFTP logins.
The token is printed once; only its hash is stored.

Durations are Go durations with the extra units d (day) and w (week):
"30m", "24h", "28d", "1w2d" (Cells' "20u" forms, u one of s, m, h, d).
With -a the token expires after that long without a login (each login
pushes the expiry forward), and never later than -e after now. As in Cells,
-a takes a number of seconds ("3600"); a duration ("1h") works too, and 0
means no sliding window.

With -s the token reaches only a subtree, with a permission:
-s node:WORKSPACE/PATH:PERM, PERM one of r (stat, list, read), w (stat,
list, create, write, mkdir, delete, rename; no reads) or rw. The
workspace slug ends at the first "/", the permission starts after the
last ":"; the path matches whole components and its subtree ("docs" is
not "docs-old"), and "node:WORKSPACE:PERM" is the whole workspace. -s is
repeatable: the token reaches the union of its scopes, never more than
the user's grants. A scoped session sees only those subtrees (the
directories on the way to them appear read-only); a rename out of a
scope is refused. Cells names the node by its UUID: node UUIDs mean
nothing here and are refused as unknown workspaces; name the node by
WORKSPACE/PATH.`,
		Example: `  sftpgate admin user token -u admin -e 24h
  sftpgate admin user token --user zed --expire 2d --auto 3600
  sftpgate admin user token -u alice -e 90d -a 7d -l "laptop backups"
  sftpgate admin user token -u alice -e 30d -s node:common-files/reports:r
  sftpgate admin user token -u ci -e 7d -s node:common-files/builds:rw -s node:personal-files/drop:w
  TOKEN=$(sftpgate admin user token -u ci -e 1h -q)`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			var opts auth.MintOptions
			var err error
			if opts.Expires, err = auth.ParseDuration(expire); err != nil {
				return usagef("--expire: %v", err)
			}
			if refresh != "" {
				if opts.Refresh, err = parseAuto(refresh); err != nil {
					return usagef("--auto: %v", err)
				}
			}
			opts.Label = label
			for _, s := range scopes {
				sc, err := auth.ParseScope(s)
				if err != nil {
					return usagef("--scope: %v", err)
				}
				opts.Scopes = append(opts.Scopes, sc)
			}
			return withStore(cmd, func(ctx context.Context, st *auth.Store) error {
				secret, tok, err := st.MintToken(ctx, login, opts)
				if err != nil {
					return fmt.Errorf("mint token: %w", err)
				}
				out := cmd.OutOrStdout()
				if quiet {
					_, err = fmt.Fprintln(out, secret)
					return err
				}
				return printToken(out, login, tok, secret, opts.Refresh > 0)
			})
		}),
	}
	addLoginFlag(cmd, &login, "login of the user the token is for")
	cmd.Flags().StringVarP(&expire, "expire", "e", "", `lifetime of the token, e.g. "24h", "28d" (mandatory)`)
	_ = cmd.MarkFlagRequired("expire")
	cmd.Flags().StringVarP(&refresh, "auto", "a", "", `sliding window: expire after this long without a login, in seconds ("3600") or a duration ("1d")`)
	cmd.Flags().StringVarP(&label, "label", "l", "", "a note shown in token lists")
	cmd.Flags().StringArrayVarP(&scopes, "scope", "s", nil, `restrict the token to node:WORKSPACE/PATH:PERM, PERM r, w or rw (repeatable; WORKSPACE/PATH, not a Cells node UUID)`)
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the token")
	return cmd
}

// parseAuto parses the value of -a: a bare number of seconds, as in Cells
// ("3600"; "0" is no sliding window, Cells' default), or a duration that
// auth.ParseDuration accepts ("1h", "7d").
func parseAuto(s string) (time.Duration, error) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return auth.ParseDuration(s)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > int64(math.MaxInt64/time.Second) {
		return 0, fmt.Errorf("%q: more seconds than a duration can hold", s)
	}
	return time.Duration(n) * time.Second, nil
}

// formatScopes is the SCOPES cell of a token list: its scopes as given to
// -s, comma-separated, or "-" for an unscoped token.
func formatScopes(ss auth.Scopes) string {
	if len(ss) == 0 {
		return "-"
	}
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = s.String()
	}
	return strings.Join(parts, ",")
}

// newAdminTokenCmd is "sftpgate admin token".
func newAdminTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "List and revoke personal access tokens",
		Example: `  sftpgate admin token list -u alice
  sftpgate admin token revoke 3f9a0c1b2d4e`,
		Args: groupArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(newTokenListCmd(), newTokenRevokeCmd())
	return cmd
}

func newTokenListCmd() *cobra.Command {
	var login string
	cmd := &cobra.Command{
		Use:   "list [-u LOGIN]",
		Short: "List tokens (never the secrets): id, owner, label, dates, scopes, state",
		Example: `  sftpgate admin token list
  sftpgate admin token list -u alice`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(ctx context.Context, st *auth.Store) error {
				tokens, err := st.Tokens(ctx, login)
				if err != nil {
					return fmt.Errorf("list tokens: %w", err)
				}
				now := time.Now()
				tw := newTable(cmd.OutOrStdout(), "ID", "OWNER", "LABEL", "CREATED", "EXPIRES", "LAST USED", "SCOPES", "STATE")
				for _, t := range tokens {
					row(tw, t.ID, t.Owner, orDash(t.Label), formatTime(t.Created), formatTime(t.Expires), formatTime(t.LastUsed), formatScopes(t.Scopes), t.State(now))
				}
				return tw.Flush()
			})
		}),
	}
	addUserFlag(cmd, &login, "only the tokens of this user")
	return cmd
}

func newTokenRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token: the next login with it is refused",
		Example: `  sftpgate admin token list -u alice
  sftpgate admin token revoke 3f9a0c1b2d4e`,
		Args: exactArgs(1, "one token ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, func(ctx context.Context, st *auth.Store) error {
				if err := st.RevokeToken(ctx, args[0]); err != nil {
					return fmt.Errorf("revoke token: %w", err)
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "token %s revoked\n", args[0])
				return err
			})
		}),
	}
}
