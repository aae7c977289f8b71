package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sftpgate/sftpgate/sftpd"
)

// sessionRow is one SSH session, as "sessions" prints it (and its --json).
type sessionRow struct {
	ID        string    `json:"id"`
	User      string    `json:"user"`
	Remote    string    `json:"remote"`
	Since     time.Time `json:"since"`
	BytesUp   int64     `json:"bytes_up"`   // file data written by the client
	BytesDown int64     `json:"bytes_down"` // file data read by the client
	Op        string    `json:"op"`         // current or last operation
}

func sessionRows(ss []sftpd.SessionInfo) []sessionRow {
	rows := make([]sessionRow, 0, len(ss))
	for _, s := range ss {
		rows = append(rows, sessionRow{ID: s.ID, User: s.User, Remote: s.Remote, Since: s.Since, BytesUp: s.BytesUp, BytesDown: s.BytesDown, Op: s.Op})
	}
	return rows
}

// newSessionsCmd is "sftpgate sessions" and "sftpgate sessions kill ID".
func newSessionsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "List the SFTP sessions of the running daemon; kill one",
		Long: `List the SSH sessions of the running daemon, oldest first: id, user, remote
address, since, file bytes uploaded and downloaded, and the current (or
last) operation. "sftpgate sessions kill ID" closes one.`,
		Example: `  sftpgate sessions
  sftpgate sessions --json
  sftpgate sessions kill 1a2b3c4d-1`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			resp, err := ctlCall(cmd, ctlRequest{Op: opSessions})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), nonNil(resp.Sessions))
			}
			tw := newTable(cmd.OutOrStdout(), "ID", "USER", "REMOTE", "SINCE", "UP", "DOWN", "OPERATION")
			for _, s := range resp.Sessions {
				row(tw, s.ID, s.User, s.Remote, formatTime(s.Since), formatBytes(s.BytesUp), formatBytes(s.BytesDown), orDash(s.Op))
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array (bytes as numbers, times in RFC 3339)")
	cmd.AddCommand(newSessionsKillCmd())
	return cmd
}

// newSessionsKillCmd is "sftpgate sessions kill ID".
func newSessionsKillCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "kill ID",
		Short: "Close an SFTP session",
		Long: `Close the session with that id (and its SSH connection if it has no other
session). Its open files are closed as if the client had closed them: what
it wrote is still uploaded.`,
		Example: "  sftpgate sessions kill 1a2b3c4d-1",
		Args:    exactArgs(1, "the session id"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			resp, err := ctlCall(cmd, ctlRequest{Op: opKill, ID: args[0]})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), resp.Message)
			return err
		}),
	}
}

// kill closes a session for the control socket.
func (d *daemonControl) kill(req ctlRequest) ctlResponse {
	if err := d.sessions.Kill(req.ID); err != nil {
		if errors.Is(err, sftpd.ErrNoSession) {
			return ctlResponse{Error: fmt.Sprintf("kill: no session %q (see sftpgate sessions)", req.ID)}
		}
		return ctlResponse{Error: fmt.Sprintf("kill: %v", err)}
	}
	d.log.Info("session killed by an admin", "session", req.ID)
	return ctlResponse{Message: fmt.Sprintf("session %s closed", req.ID)}
}
