package main

import (
	"github.com/spf13/cobra"

	"github.com/sftpgate/sftpgate/internal/control"
)

// newNodesCmd is "sftpgate nodes".
func newNodesCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List the live nodes of the cluster",
		Long: `List the nodes of the cluster the running daemon belongs to (the daemons
sharing its PostgreSQL identity store) that heartbeat: id, host, SSH
address, start, last heartbeat, sessions and mounts. A node whose last
heartbeat is over 5 seconds old is gone and not listed. With a SQLite
store the daemon is alone and the command fails.`,
		Example: `  sftpgate nodes
  sftpgate nodes --json`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			resp, err := ctlCall(cmd, control.Request{Op: control.OpNodes})
			if err != nil {
				return err
			}
			return printNodes(cmd.OutOrStdout(), resp.Nodes, asJSON)
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array (times in RFC 3339)")
	return cmd
}
