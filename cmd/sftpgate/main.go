// Command sftpgate is an SFTP gateway to MinIO buckets: users log in over
// SSH with a personal token and see their workspaces, served through a
// per-user FUSE mount. This package holds the command line only: the cobra
// tree, its flags, the rendering of results (output.go) and the control
// client (client.go). The configuration is internal/config, the daemon
// internal/daemon, the control socket's protocol internal/control.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/internal/config"
)

// version is the program version, set at build time with
// -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the exit code: 0 on
// success, 1 when the command failed, 2 on a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var fail *failure
	if errors.As(err, &fail) {
		fmt.Fprintf(stderr, "sftpgate: %v\n", fail.err)
		return exitFailure
	}
	// Anything else comes from cobra (unknown command or flag, bad or
	// missing arguments, required flag not set) or is a usageError.
	fmt.Fprintf(stderr, "sftpgate: %v\n", err)
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	return exitUsage
}

// newRootCmd assembles the command tree.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "sftpgate",
		Short: "SFTP gateway to MinIO buckets, with a FUSE view of every user's tree",
		Long: `sftpgate serves the workspaces of its users (MinIO buckets and prefixes)
over SFTP. Users log in with their login and a personal token minted by
"sftpgate admin user token".

The working directory (--workdir, else $CELLS_WORKING_DIR, else
~/.config/sftpgate) holds the identity store (sftpgate.db) and, by default,
the configuration file pydio.json.`,
		Example: `  sftpgate --workdir /var/lib/sftpgate admin user create -u alice
  sftpgate admin user token -u alice -e 24h
  sftpgate config check`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          groupArgs,
		RunE:          groupRun,
	}
	root.PersistentFlags().String("workdir", "", "working directory (default $CELLS_WORKING_DIR, else ~/.config/sftpgate)")
	root.PersistentFlags().String("config", "", "configuration file (default <workdir>/pydio.json)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetHelpCommand(newHelpCmd())
	root.AddCommand(
		newServeCmd(),
		newDevCmd(),
		newAdminCmd(),
		newConfigCmd(),
		newMountsCmd(),
		newMountCmd(),
		newUnmountCmd(),
		newSessionsCmd(),
		newNodesCmd(),
		newVersionCmd(),
		newWatchdogCmd(),
	)
	return root
}

// usageError marks an error as the caller's mistake on the command line
// (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usageError with a formatted message.
func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// failure marks an error returned by a command's action (exit code 1).
type failure struct{ err error }

func (e *failure) Error() string { return e.err.Error() }
func (e *failure) Unwrap() error { return e.err }

// action adapts a command's action so that its errors are failures (exit
// 1), except usageErrors (exit 2). Errors cobra produces itself never pass
// through it, which is how run tells them apart.
func action(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd, args)
		if err == nil {
			return nil
		}
		var u usageError
		if errors.As(err, &u) {
			return u
		}
		return &failure{err}
	}
}

// groupArgs and groupRun make a command that only groups subcommands print
// its help when called alone and refuse an unknown subcommand (cobra would
// print the help and succeed).
func groupArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return nil
}

func groupRun(cmd *cobra.Command, _ []string) error { return cmd.Help() }

// noArgs refuses positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%q takes no arguments, got %q", cmd.CommandPath(), strings.Join(args, " "))
	}
	return nil
}

// exactArgs wants n positional arguments, named in the message.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%q wants %s, got %d arguments", cmd.CommandPath(), names, len(args))
		}
		return nil
	}
}

// newHelpCmd replaces cobra's help command (which has no example).
func newHelpCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "help [command]",
		Short:   "Help about any command",
		Example: "  sftpgate help admin user token",
		RunE: action(func(cmd *cobra.Command, args []string) error {
			target, rest, err := cmd.Root().Find(args)
			if err != nil || target == nil || len(rest) > 0 {
				return usagef("unknown help topic %q", strings.Join(args, " "))
			}
			return target.Help()
		}),
	}
}

// newVersionCmd is "sftpgate version".
func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version",
		Example: "  sftpgate version",
		Args:    noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "sftpgate %s\n", version)
			return err
		}),
	}
}

// workdir returns the working directory from --workdir, else
// $CELLS_WORKING_DIR, else ~/.config/sftpgate, as an absolute path.
func workdir(cmd *cobra.Command) (string, error) {
	dir, _ := cmd.Flags().GetString("workdir")
	if dir == "" {
		dir = os.Getenv("CELLS_WORKING_DIR")
	}
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no working directory: pass --workdir or set $CELLS_WORKING_DIR (%w)", err)
		}
		dir = filepath.Join(home, ".config", "sftpgate")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("working directory %s: %w", dir, err)
	}
	return abs, nil
}

// configPath returns --config, else <workdir>/pydio.json.
func configPath(cmd *cobra.Command, workdir string) string {
	if p, _ := cmd.Flags().GetString("config"); p != "" {
		return p
	}
	return filepath.Join(workdir, "pydio.json")
}

// loadConfig loads the configuration named by the global flags, printing
// its warnings on stderr.
func loadConfig(cmd *cobra.Command) (*config.Config, error) {
	dir, err := workdir(cmd)
	if err != nil {
		return nil, err
	}
	cfg, warnings, err := config.LoadConfig(configPath(cmd, dir), dir)
	for _, w := range warnings {
		fmt.Fprintf(cmd.ErrOrStderr(), "sftpgate: warning: %s\n", w)
	}
	return cfg, err
}

// openStore opens the identity store the configuration names (see
// openAdminStore), creating the working directory (0700) if needed for
// SQLite. The caller closes the store.
func openStore(cmd *cobra.Command) (*auth.Store, error) {
	dir, err := workdir(cmd)
	if err != nil {
		return nil, err
	}
	st, err := openAdminStore(cmd, dir)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return st, nil
}

// withStore runs fn with the store open, closing it afterwards.
func withStore(cmd *cobra.Command, fn func(ctx context.Context, st *auth.Store) error) error {
	st, err := openStore(cmd)
	if err != nil {
		return err
	}
	err = fn(cmd.Context(), st)
	if cerr := st.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close store: %w", cerr)
	}
	return err
}
