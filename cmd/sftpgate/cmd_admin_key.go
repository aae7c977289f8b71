package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sftpgate/sftpgate/auth"
)

// maxKeyFileSize bounds a key file read by "key add" (an RSA 16384-bit
// authorized_keys line is under 3 KiB).
const maxKeyFileSize = 64 << 10

func newUserKeyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Add, list and remove a user's SSH public keys",
		Example: `  sftpgate admin user key add -u alice --file id_ed25519.pub -l laptop
  sftpgate admin user key list -u alice
  sftpgate admin user key remove 3f9a0c1b2d4e`,
		Args: groupArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(newKeyAddCmd(), newKeyListCmd(), newKeyRemoveCmd())
	return cmd
}

func newKeyAddCmd() *cobra.Command {
	var login, file, label string
	cmd := &cobra.Command{
		Use:   "add -u LOGIN --file KEY.pub [-l LABEL]",
		Short: "Let an SSH public key log in as a user",
		Long: `Add an SSH public key, given as one OpenSSH authorized_keys line (a .pub
file, "-" for standard input): RSA of 2048 bits or more, ECDSA or Ed25519.
Options are honoured or refused, never ignored: from="..." (addresses,
wildcards, CIDR blocks, "!" to exclude) is checked at every login;
restrict, no-pty, no-port-forwarding, no-agent-forwarding,
no-X11-forwarding and no-user-rc hold anyway (the gateway serves SFTP
only); any other option refuses the key. The label defaults to the key's
comment.`,
		Example: `  sftpgate admin user key add -u alice --file ~/.ssh/id_ed25519.pub
  sftpgate admin user key add -u backup --file backup.pub -l "nightly backup"
  echo 'from="10.0.0.0/8" ssh-ed25519 AAAA... ci' | sftpgate admin user key add -u ci --file -`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			line, err := readKeyFile(cmd.InOrStdin(), file)
			if err != nil {
				return err
			}
			return withStore(cmd, func(ctx context.Context, st *auth.Store) error {
				k, err := st.AddKey(ctx, login, line, label)
				if err != nil {
					return fmt.Errorf("add key: %w", err)
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "key %s added for user %s: %s %s\n", k.ID, login, k.Type, k.Fingerprint)
				return err
			})
		}),
	}
	addLoginFlag(cmd, &login, "login of the user the key logs in as")
	cmd.Flags().StringVarP(&file, "file", "f", "", `the public key file (one authorized_keys line; "-" for standard input)`)
	_ = cmd.MarkFlagRequired("file")
	cmd.Flags().StringVarP(&label, "label", "l", "", "a note shown in key lists (default: the key's comment)")
	return cmd
}

// readKeyFile returns the one key line of file ("-": in), blank lines and
// "#" comments skipped.
func readKeyFile(in io.Reader, file string) (string, error) {
	r := in
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("add key: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxKeyFileSize+1))
	if err != nil {
		return "", fmt.Errorf("add key: read %s: %w", file, err)
	}
	if len(b) > maxKeyFileSize {
		return "", fmt.Errorf("add key: %s: larger than %d KiB: not a public key file", file, maxKeyFileSize>>10)
	}
	if strings.Contains(string(b), "PRIVATE KEY") {
		return "", fmt.Errorf("add key: %s is a private key: give the public one (the .pub file)", file)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	switch len(lines) {
	case 0:
		return "", fmt.Errorf("add key: %s holds no key", file)
	case 1:
		return lines[0], nil
	}
	return "", fmt.Errorf("add key: %s holds %d lines: add one key at a time", file, len(lines))
}

func newKeyListCmd() *cobra.Command {
	var login string
	cmd := &cobra.Command{
		Use:   "list [-u LOGIN]",
		Short: "List SSH public keys: id, user, type, fingerprint, label, from, dates",
		Example: `  sftpgate admin user key list
  sftpgate admin user key list -u alice`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(ctx context.Context, st *auth.Store) error {
				keys, err := st.Keys(ctx, login)
				if err != nil {
					return fmt.Errorf("list keys: %w", err)
				}
				tw := newTable(cmd.OutOrStdout(), "ID", "USER", "TYPE", "FINGERPRINT", "LABEL", "FROM", "CREATED", "LAST USED")
				for _, k := range keys {
					row(tw, k.ID, k.Login, k.Type, k.Fingerprint, orDash(k.Label), orDash(k.From), formatTime(k.Created), formatTime(k.LastUsed))
				}
				return tw.Flush()
			})
		}),
	}
	addUserFlag(cmd, &login, "only the keys of this user")
	return cmd
}

func newKeyRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "remove ID",
		Short:   "Remove an SSH public key; it is refused from the next login on",
		Example: "  sftpgate admin user key remove 3f9a0c1b2d4e",
		Args:    exactArgs(1, "one key ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, func(ctx context.Context, st *auth.Store) error {
				if err := st.RemoveKey(ctx, args[0]); err != nil {
					return fmt.Errorf("remove key: %w", err)
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "key %s removed\n", args[0])
				return err
			})
		}),
	}
}

func newUserSetCmd() *cobra.Command {
	var login, methods string
	cmd := &cobra.Command{
		Use:   "set -u LOGIN --auth METHODS",
		Short: "Choose how a user may log in (token, key, cert)",
		Long: `Set the login methods a user may use, a comma-separated list of:
token (a personal token as the password), key (one of the user's SSH keys),
cert (an SSH certificate from a CA of trustedUserCAKeys). New users may use
all three. The change holds from the next login.`,
		Example: `  sftpgate admin user set -u backup --auth key
  sftpgate admin user set -u alice --auth token,key,cert`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			ms, err := auth.ParseAuthMethods(methods)
			if err != nil {
				return usagef("--auth: %v", err)
			}
			return withStore(cmd, func(ctx context.Context, st *auth.Store) error {
				if err := st.SetAuthMethods(ctx, login, ms); err != nil {
					return fmt.Errorf("set user: %w", err)
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "user %s may log in with: %s\n", login, strings.Join(ms, ","))
				return err
			})
		}),
	}
	addLoginFlag(cmd, &login, "login of the user")
	cmd.Flags().StringVar(&methods, "auth", "", "login methods: a comma-separated list of token, key, cert (mandatory)")
	_ = cmd.MarkFlagRequired("auth")
	return cmd
}
