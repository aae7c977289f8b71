package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sftpgate/sftpgate/auth"
)

// newAdminWorkspaceCmd is "sftpgate admin workspace".
func newAdminWorkspaceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "workspace",
		Short: "Create, list and delete workspaces; grant them to users",
		Long: `A workspace is a top-level directory of every session it is granted to,
mapped to a bucket and an optional key prefix. The prefix may contain
{user}, replaced by the login: one workspace then gives every user a
private folder.`,
		Example: `  sftpgate admin workspace create --slug common --bucket common
  sftpgate admin workspace create --slug home --bucket personal --prefix '{user}/'
  sftpgate admin workspace grant --slug common -u alice --read-only
  sftpgate admin workspace list`,
		Args: groupArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(newWorkspaceCreateCmd(), newWorkspaceListCmd(), newWorkspaceDeleteCmd(),
		newWorkspaceGrantCmd(), newWorkspaceRevokeCmd())
	return cmd
}

// addSlugFlag adds the mandatory --slug flag.
func addSlugFlag(cmd *cobra.Command, slug *string) {
	cmd.Flags().StringVar(slug, "slug", "", "workspace slug (its directory name)")
	_ = cmd.MarkFlagRequired("slug")
}

func newWorkspaceCreateCmd() *cobra.Command {
	var w auth.Workspace
	cmd := &cobra.Command{
		Use:   "create --slug SLUG --bucket BUCKET [--prefix PREFIX]",
		Short: "Create a workspace",
		Example: `  sftpgate admin workspace create --slug common --bucket common
  sftpgate admin workspace create --slug home --bucket personal --prefix '{user}/'`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(ctx context.Context, st *auth.Store) error {
				if err := st.CreateWorkspace(ctx, w); err != nil {
					return fmt.Errorf("create workspace: %w", err)
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "workspace %s created (bucket %s, prefix %q)\n", w.Slug, w.Bucket, w.Prefix)
				return err
			})
		}),
	}
	addSlugFlag(cmd, &w.Slug)
	cmd.Flags().StringVar(&w.Bucket, "bucket", "", "S3 bucket holding the files")
	_ = cmd.MarkFlagRequired("bucket")
	cmd.Flags().StringVar(&w.Prefix, "prefix", "", "key prefix inside the bucket; {user} is replaced by the login")
	return cmd
}

func newWorkspaceListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List workspaces and their grants (login:rw or login:ro)",
		Example: "  sftpgate admin workspace list",
		Args:    noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(ctx context.Context, st *auth.Store) error {
				ws, err := st.Workspaces(ctx)
				if err != nil {
					return fmt.Errorf("list workspaces: %w", err)
				}
				grants, err := grantsBySlug(ctx, st)
				if err != nil {
					return fmt.Errorf("list workspaces: %w", err)
				}
				tw := newTable(cmd.OutOrStdout(), "SLUG", "BUCKET", "PREFIX", "CREATED", "GRANTS")
				for _, w := range ws {
					row(tw, w.Slug, w.Bucket, orDash(w.Prefix), formatTime(w.Created), orDash(strings.Join(grants[w.Slug], ",")))
				}
				return tw.Flush()
			})
		}),
	}
}

// grantsBySlug returns "login:rw"/"login:ro" for every grant, by workspace,
// from the access of every user (sorted by login, as Users returns them).
func grantsBySlug(ctx context.Context, st *auth.Store) (map[string][]string, error) {
	users, err := st.Users(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, u := range users {
		access, err := st.Access(ctx, u.Login)
		if err != nil {
			return nil, err
		}
		for _, a := range access {
			out[a.Slug] = append(out[a.Slug], u.Login+":"+mode(a.ReadOnly))
		}
	}
	return out, nil
}

func newWorkspaceDeleteCmd() *cobra.Command {
	var slug string
	cmd := &cobra.Command{
		Use:     "delete --slug SLUG",
		Short:   "Delete a workspace and its grants (the objects stay in the bucket)",
		Example: "  sftpgate admin workspace delete --slug common",
		Args:    noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(ctx context.Context, st *auth.Store) error {
				if err := st.DeleteWorkspace(ctx, slug); err != nil {
					return fmt.Errorf("delete workspace: %w", err)
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "workspace %s deleted\n", slug)
				return err
			})
		}),
	}
	addSlugFlag(cmd, &slug)
	return cmd
}

func newWorkspaceGrantCmd() *cobra.Command {
	var slug, login string
	var readOnly bool
	cmd := &cobra.Command{
		Use:   "grant --slug SLUG -u LOGIN [--read-only]",
		Short: "Give a user a workspace, read-write or read-only (replaces an earlier grant)",
		Example: `  sftpgate admin workspace grant --slug common -u alice
  sftpgate admin workspace grant --slug archive -u bob --read-only`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(ctx context.Context, st *auth.Store) error {
				if err := st.Grant(ctx, slug, login, readOnly); err != nil {
					return fmt.Errorf("grant: %w", err)
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "workspace %s granted %s to %s\n", slug, modeWords(readOnly), login)
				return err
			})
		}),
	}
	addSlugFlag(cmd, &slug)
	addLoginFlag(cmd, &login, "login of the user")
	cmd.Flags().BoolVar(&readOnly, "read-only", false, "grant read access only")
	return cmd
}

func newWorkspaceRevokeCmd() *cobra.Command {
	var slug, login string
	cmd := &cobra.Command{
		Use:     "revoke --slug SLUG -u LOGIN",
		Short:   "Take a workspace away from a user",
		Example: "  sftpgate admin workspace revoke --slug common -u alice",
		Args:    noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(ctx context.Context, st *auth.Store) error {
				if err := st.Revoke(ctx, slug, login); err != nil {
					return fmt.Errorf("revoke: %w", err)
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "workspace %s revoked from %s\n", slug, login)
				return err
			})
		}),
	}
	addSlugFlag(cmd, &slug)
	addLoginFlag(cmd, &login, "login of the user")
	return cmd
}
