package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sftpgate/sftpgate/internal/control"
	"github.com/sftpgate/sftpgate/internal/daemon"
)

// newMountsCmd is "sftpgate mounts".
func newMountsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "mounts",
		Short: "List the mounted views of the running daemon",
		Long: `List the FUSE views the running daemon has mounted: user, mode (rw: the
user's own view, shared by their SFTP sessions; ro: a read-only admin view),
path, mounted since, open SFTP sessions, open files, bytes written and
waiting for upload (DIRTY), uploads in flight, cached clean bytes, and the
end of an admin mount ("sftpgate mount").

In a cluster (nodes sharing a PostgreSQL identity store) the list holds the
views of every live node, with a NODE column first (a "node" field in
JSON).`,
		Example: `  sftpgate mounts
  sftpgate --workdir /var/lib/sftpgate mounts --json`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			resp, err := ctlCall(cmd, control.Request{Op: control.OpMounts})
			if err != nil {
				return err
			}
			return printMounts(cmd.OutOrStdout(), cmd.ErrOrStderr(), resp, asJSON)
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array (sizes in bytes, times in RFC 3339)")
	return cmd
}

// newMountCmd is "sftpgate mount".
func newMountCmd() *cobra.Command {
	var (
		login string
		dur   time.Duration
		rw    bool
	)
	cmd := &cobra.Command{
		Use:   "mount -u LOGIN [--for 1h] [--rw]",
		Short: "Mount a user's view without a session, for inspection",
		Long: `Ask the running daemon to mount the view of a user and keep it mounted
for a while (--for, 1h by default), or until "sftpgate unmount -u LOGIN".
It prints the path.

The view is read-only unless --rw. A read-only view is a separate mount at
<mountRoot>/.readonly/LOGIN, beside the user's own view: it can be asked for
while the user has sessions, and changes nothing for them. With --rw the
path is the user's own view <mountRoot>/LOGIN, the very mount their SFTP
sessions use (shared if it is mounted already); changes made there are
uploaded like theirs.

A user has at most one admin mount: asking again in the same mode extends
it, asking in the other mode is refused until it is unmounted.`,
		Example: `  sftpgate mount -u alice
  ls -l "$(sftpgate mount -u alice --for 10m)"
  sftpgate mount -u alice --rw --for 2h`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			if dur <= 0 || dur > daemon.MaxAdminMountFor {
				return usagef("--for: want a duration between 1s and %v, got %v", daemon.MaxAdminMountFor, dur)
			}
			resp, err := ctlCall(cmd, control.Request{Op: control.OpMount, User: login, For: dur.String(), RW: rw})
			if err != nil {
				return err
			}
			if resp.Mount == nil || resp.Mount.HeldUntil == nil || resp.Mounted == nil {
				return errors.New("the daemon sent no mount in its answer")
			}
			fmt.Fprintln(cmd.ErrOrStderr(), mountedMessage(resp.Mount, resp.Mounted))
			_, err = fmt.Fprintln(cmd.OutOrStdout(), resp.Mount.Path)
			return err
		}),
	}
	addLoginFlag(cmd, &login, "login of the user whose view to mount")
	cmd.Flags().DurationVar(&dur, "for", daemon.DefaultAdminMountFor, "how long the daemon keeps the view mounted")
	cmd.Flags().BoolVar(&rw, "rw", false, "mount the user's own read-write view instead of a read-only one")
	return cmd
}

// newUnmountCmd is "sftpgate unmount".
func newUnmountCmd() *cobra.Command {
	var login string
	cmd := &cobra.Command{
		Use:   "unmount -u LOGIN",
		Short: `End an admin mount made with "sftpgate mount"`,
		Long: `End the admin mount of a user before its time and unmount its view: the
view is gone when the command returns. It is refused while SFTP sessions of
the user use the view (a --rw admin mount is the user's own view): see
"sftpgate sessions". If something else still holds the view (a session just
logging in), the hold ends and the daemon takes the view down once nothing
uses it any more (after the idle delay of the mounts, 30s).`,
		Example: "  sftpgate unmount -u alice",
		Args:    noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			resp, err := ctlCall(cmd, control.Request{Op: control.OpUnmount, User: login})
			if err != nil {
				return err
			}
			u := resp.Unmounted
			if u == nil {
				return errors.New("the daemon sent no result in its answer")
			}
			msg := fmt.Sprintf("%s: admin mount of %s ended, view unmounted", u.Dir, u.User)
			if u.InUse != "" {
				msg = fmt.Sprintf("%s: admin mount of %s ended; the view is still in use (%s) and is taken down once nothing uses it any more", u.Dir, u.User, u.InUse)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), msg)
			return err
		}),
	}
	addLoginFlag(cmd, &login, "login of the user whose admin mount to end")
	return cmd
}

// mountedMessage says what "sftpgate mount" did, m being the admin mount.
func mountedMessage(m *control.MountRow, r *control.Mounted) string {
	what := modeWords(m.Mode == control.ModeRO)
	if r.Sessions > 0 {
		what += fmt.Sprintf(", shared with %d open SFTP session(s)", r.Sessions)
	}
	verb := "mounted"
	if r.Extended {
		verb = "admin mount extended"
	}
	return fmt.Sprintf("%s's view %s (%s) until %s; end it with: sftpgate unmount -u %s", m.User, verb, what, formatTime(*m.HeldUntil), m.User)
}
