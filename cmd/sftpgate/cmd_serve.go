package main

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/sftpgate/sftpgate/internal/config"
	"github.com/sftpgate/sftpgate/internal/daemon"
)

// logFlags are the flags of the commands that run the daemon.
type logFlags struct {
	format, level string
}

func (f *logFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.format, "log-format", "text", `log format: "text" or "json"`)
	cmd.Flags().StringVar(&f.level, "log-level", "info", `log level: "debug", "info", "warn" or "error"`)
}

// logger builds the daemon's logger on stderr.
func (f *logFlags) logger(cmd *cobra.Command) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.level)); err != nil {
		return nil, usagef("--log-level: %q is not one of debug, info, warn, error", f.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f.format {
	case "text":
		return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), opts)), nil
	}
	return nil, usagef("--log-format: %q is not one of text, json", f.format)
}

// apply records the flags in cfg (the FUSE watchdog logs the same way).
func (f *logFlags) apply(cfg *config.Config) {
	cfg.LogFormat, cfg.LogLevel = f.format, f.level
}

// newServeCmd is "sftpgate serve": the daemon.
func newServeCmd() *cobra.Command {
	var lf logFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the SFTP gateway",
		Long: `Run the SFTP gateway with the configuration in <workdir>/pydio.json (or
--config): the SSH listener on bind:port, a FUSE mount per logged-in user
under mountRoot, and, when no "minio" key is configured, the embedded object
store with its data in <workdir>/data.

SIGINT or SIGTERM stops accepting connections, lets open sessions finish
for a grace period, completes the uploads of the files their clients
closed, unmounts every view and exits 0. A transfer cut by the end of the
grace period is never published as a partial object: its data is kept for
a resume.`,
		Example: `  sftpgate --workdir /var/lib/sftpgate serve
  sftpgate --config /etc/cells/pydio.json serve --log-format json`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			log, err := lf.logger(cmd)
			if err != nil {
				return err
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			lf.apply(cfg)
			return daemon.Run(cmd.Context(), cfg, log, nil)
		}),
	}
	lf.add(cmd)
	return cmd
}
