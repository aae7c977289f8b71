package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sftpgate/sftpgate/auth"
)

// newAdminCmd is "sftpgate admin": the identity store's administration.
func newAdminCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Manage users, their tokens and workspaces",
		Long: `Manage the identity store (<workdir>/sftpgate.db, or the PostgreSQL database
of the "database" key). A running gateway sees the
changes at the next login: no restart is needed.`,
		Example: `  sftpgate admin user create -u alice
  sftpgate admin workspace create --slug common --bucket common
  sftpgate admin workspace grant --slug common -u alice
  sftpgate admin user token -u alice -e 28d`,
		Args: groupArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(newAdminUserCmd(), newAdminTokenCmd(), newAdminWorkspaceCmd(), newAdminMigrateStoreCmd())
	return cmd
}

// newAdminUserCmd is "sftpgate admin user".
func newAdminUserCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Create, list and delete users; mint their personal tokens; manage their SSH keys and login methods",
		Example: `  sftpgate admin user create -u alice
  sftpgate admin user list
  sftpgate admin user token -u alice -e 24h
  sftpgate admin user key add -u alice --file id_ed25519.pub
  sftpgate admin user set -u alice --auth token,key
  sftpgate admin user quota -u alice --bytes 10GiB --files 100000
  sftpgate admin user delete -u alice`,
		Args: groupArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(newUserCreateCmd(), newUserListCmd(), newUserDeleteCmd(), newUserTokenCmd(), newUserKeyCmd(), newUserSetCmd(), newUserQuotaCmd())
	return cmd
}

// addLoginFlag adds the mandatory -u/--user flag (--username too).
func addLoginFlag(cmd *cobra.Command, login *string, usage string) {
	addUserFlag(cmd, login, usage)
	_ = cmd.MarkFlagRequired("user")
}

// addUserFlag adds the -u/--user flag, Cells' name for it, and accepts
// --username, sftpgate's earlier name, as an alias.
func addUserFlag(cmd *cobra.Command, login *string, usage string) {
	cmd.Flags().StringVarP(login, "user", "u", "", usage)
	cmd.Flags().SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "username" {
			name = "user"
		}
		return pflag.NormalizedName(name)
	})
}

func newUserCreateCmd() *cobra.Command {
	var login string
	cmd := &cobra.Command{
		Use:     "create -u LOGIN",
		Short:   "Create a user",
		Example: "  sftpgate admin user create -u alice",
		Args:    noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(ctx context.Context, st *auth.Store) error {
				if _, err := st.CreateUser(ctx, login); err != nil {
					return fmt.Errorf("create user: %w", err)
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "user %s created\n", login)
				return err
			})
		}),
	}
	addLoginFlag(cmd, &login, "login of the new user (also the SSH user name)")
	return cmd
}

func newUserListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List users, the workspaces granted to them and their login methods",
		Example: `  sftpgate admin user list
  sftpgate --workdir /var/lib/sftpgate admin user list`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(ctx context.Context, st *auth.Store) error {
				users, err := st.Users(ctx)
				if err != nil {
					return fmt.Errorf("list users: %w", err)
				}
				tw := newTable(cmd.OutOrStdout(), "LOGIN", "CREATED", "WORKSPACES", "AUTH")
				for _, u := range users {
					access, err := st.Access(ctx, u.Login)
					if err != nil {
						return fmt.Errorf("list users: %w", err)
					}
					grants := make([]string, 0, len(access))
					for _, a := range access {
						grants = append(grants, a.Slug+":"+mode(a.ReadOnly))
					}
					row(tw, u.Login, formatTime(u.Created), orDash(strings.Join(grants, ",")), strings.Join(u.AuthMethods, ","))
				}
				return tw.Flush()
			})
		}),
	}
}

func newUserDeleteCmd() *cobra.Command {
	var login string
	cmd := &cobra.Command{
		Use:     "delete -u LOGIN",
		Short:   "Delete a user, its grants and SSH keys, and revoke all its tokens",
		Example: "  sftpgate admin user delete -u alice",
		Args:    noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(ctx context.Context, st *auth.Store) error {
				if err := st.DeleteUser(ctx, login); err != nil {
					return fmt.Errorf("delete user: %w", err)
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "user %s deleted, its grants removed and its tokens revoked\n", login)
				return err
			})
		}),
	}
	addLoginFlag(cmd, &login, "login of the user to delete")
	return cmd
}
