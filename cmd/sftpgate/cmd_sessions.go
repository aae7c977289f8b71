package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sftpgate/sftpgate/internal/control"
)

// newSessionsCmd is "sftpgate sessions" and "sftpgate sessions kill ID".
func newSessionsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "List the SFTP sessions of the running daemon; kill one",
		Long: `List the SSH sessions of the running daemon, oldest first: id, user, remote
address, since, file bytes uploaded and downloaded, and the current (or
last) operation. "sftpgate sessions kill ID" closes one.

In a cluster (nodes sharing a PostgreSQL identity store) the list holds the
sessions of every live node, with a NODE column first (a "node" field in
JSON); another node's rows are as it published them at its last heartbeat
(at most a second old).`,
		Example: `  sftpgate sessions
  sftpgate sessions --json
  sftpgate sessions kill 1a2b3c4d5e6f-1`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			resp, err := ctlCall(cmd, control.Request{Op: control.OpSessions})
			if err != nil {
				return err
			}
			return printSessions(cmd.OutOrStdout(), cmd.ErrOrStderr(), resp, asJSON)
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array (bytes as numbers, times in RFC 3339)")
	cmd.AddCommand(newSessionsKillCmd())
	return cmd
}

// newSessionsKillCmd is "sftpgate sessions kill ID".
func newSessionsKillCmd() *cobra.Command {
	var node string
	cmd := &cobra.Command{
		Use:   "kill ID",
		Short: "Close an SFTP session",
		Long: `Close the session with that id (and its SSH connection if it has no other
session). Its open files are closed as if the client had closed them: what
it wrote is still uploaded. In a cluster, a session of another node is
closed by that node (within about a second). Two nodes practically never
hold sessions with the same id; should they, the kill is refused until the
node is named with --node.`,
		Example: `  sftpgate sessions kill 1a2b3c4d5e6f-1
  sftpgate sessions kill --node a07e5d9c1f30 1a2b3c4d5e6f-1`,
		Args: exactArgs(1, "the session id"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			resp, err := ctlCall(cmd, control.Request{Op: control.OpKill, ID: args[0], Node: node})
			if err != nil {
				return err
			}
			if resp.Message != "" { // in a cluster: "closed on node N"
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "session %s %s\n", args[0], resp.Message)
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "session %s closed\n", args[0])
			return err
		}),
	}
	cmd.Flags().StringVar(&node, "node", "", "in a cluster, the node that holds the session (see sftpgate sessions)")
	return cmd
}
