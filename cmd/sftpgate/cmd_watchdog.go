package main

import (
	"bufio"
	"context"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sftpgate/sftpgate/fusefs"
	"github.com/sftpgate/sftpgate/internal/daemon"
)

// newWatchdogCmd is "sftpgate internal-fuse-watchdog", started by serve
// only.
func newWatchdogCmd() *cobra.Command {
	var (
		lf        logFlags
		pid       int
		startTime uint64
		mountRoot string
	)
	cmd := &cobra.Command{
		Use:    daemon.WatchdogCommand,
		Short:  "Free the FUSE mounts of a killed daemon (started by serve)",
		Hidden: true,
		Args:   noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			// Stopping is the daemon's business: a SIGTERM to the whole
			// process group (systemd, ^C) must not take the watchdog away.
			signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
			// One look every 100 ms needs no parallelism: fewer threads
			// to wake up, less CPU.
			runtime.GOMAXPROCS(1)
			log, err := lf.logger(cmd)
			if err != nil {
				return err
			}
			log = log.With("component", "fuse-watchdog")
			if pid <= 0 || mountRoot == "" {
				return usagef("--pid and --mount-root are required")
			}
			// Best effort (root only): the OOM killer picks the daemon,
			// never the process that frees it.
			os.WriteFile("/proc/self/oom_score_adj", []byte("-1000"), 0)
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			go func() { // ends with the process
				sc := bufio.NewScanner(cmd.InOrStdin())
				for sc.Scan() {
					if sc.Text() == daemon.WatchdogStop {
						stop()
						return
					}
				}
			}()
			return fusefs.RunWatchdog(ctx, fusefs.WatchdogConfig{Pid: pid, StartTime: startTime, MountRoot: mountRoot, Logger: log})
		}),
	}
	cmd.Flags().IntVar(&pid, "pid", 0, "the daemon's pid")
	cmd.Flags().Uint64Var(&startTime, "start-time", 0, "the daemon's start time (field 22 of /proc/<pid>/stat)")
	cmd.Flags().StringVar(&mountRoot, "mount-root", "", "the daemon's mount root")
	lf.add(cmd)
	return cmd
}
