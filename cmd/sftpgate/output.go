package main

// The output of the commands: aligned tables, JSON, sizes and times, and
// the wording Cells uses for tokens.

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/internal/control"
)

// newTable starts an aligned table with a header; write rows with row and
// finish with Flush.
func newTable(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row(tw, header...)
	return tw
}

// row writes one table row. Cells are sanitised so that a tab or newline in
// a value cannot break the table.
func row(tw *tabwriter.Writer, cells ...string) {
	for i, c := range cells {
		c = strings.Map(func(r rune) rune {
			if r < ' ' || r == 0x7f {
				return ' '
			}
			return r
		}, c)
		if i > 0 {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprint(tw, c)
	}
	fmt.Fprintln(tw)
}

// formatTime is the time format of tables, in local time; "never" for zero.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// mode is "ro" or "rw", as tables and the control socket's rows say it.
func mode(readOnly bool) string { return control.Mode(readOnly) }

// modeWords is "read-only" or "read-write", as sentences say it.
func modeWords(readOnly bool) string {
	if readOnly {
		return "read-only"
	}
	return "read-write"
}

// printJSON writes v indented, with a final newline.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// nonNil makes an empty list print as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// formatBytes is a size for tables: "0", "512 B", "12.3 MiB".
func formatBytes(n int64) string {
	if n == 0 {
		return "0"
	}
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}
	f := float64(n) / 1024
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

// printToken prints a freshly minted token as Cells does.
func printToken(out io.Writer, login string, tok auth.Token, secret string, autoRefresh bool) error {
	when := tok.Expires.Local().Round(0).String()
	if autoRefresh {
		fmt.Fprintf(out, "✔ This token for %s will expire on %s unless it is automatically refreshed.\n", login, when)
	} else {
		fmt.Fprintf(out, "✔ This token for %s will expire on %s.\n", login, when)
	}
	fmt.Fprintf(out, "✔ %s\n", secret)
	_, err := fmt.Fprintln(out, "⚠ Make sure to secure it as it grants access to the user resources!")
	return err
}

// printSessions writes the sessions of resp as a table (a NODE column
// first in a cluster) or a JSON array (each row with its node in a
// cluster); a warning of the daemon goes to errw.
func printSessions(w, errw io.Writer, resp control.Response, asJSON bool) error {
	printWarning(errw, resp)
	if asJSON {
		return printJSON(w, nonNil(resp.Sessions))
	}
	header := []string{"ID", "USER", "REMOTE", "SINCE", "UP", "DOWN", "OPERATION"}
	tw := newTable(w, withNode(resp.Cluster, "NODE", header)...)
	for _, s := range resp.Sessions {
		row(tw, withNode(resp.Cluster, s.Node, []string{s.ID, s.User, s.Remote, formatTime(s.Since), formatBytes(s.BytesUp), formatBytes(s.BytesDown), orDash(s.Op)})...)
	}
	return tw.Flush()
}

// printMounts writes the views of resp as a table (a NODE column first in
// a cluster) or a JSON array (each row with its node in a cluster); a
// warning of the daemon goes to errw.
func printMounts(w, errw io.Writer, resp control.Response, asJSON bool) error {
	printWarning(errw, resp)
	if asJSON {
		return printJSON(w, nonNil(resp.Mounts))
	}
	header := []string{"USER", "MODE", "PATH", "SINCE", "SESSIONS", "FILES", "DIRTY", "UPLOADING", "CLEAN", "HELD UNTIL"}
	tw := newTable(w, withNode(resp.Cluster, "NODE", header)...)
	for _, m := range resp.Mounts {
		held := "-"
		if m.HeldUntil != nil {
			held = formatTime(*m.HeldUntil)
		}
		row(tw, withNode(resp.Cluster, m.Node, []string{m.User, m.Mode, m.Path, formatTime(m.Since), fmt.Sprint(m.Sessions), fmt.Sprint(m.OpenFiles),
			formatBytes(m.DirtyBytes), fmt.Sprint(m.UploadsInFlight), formatBytes(m.CleanBytes), held})...)
	}
	return tw.Flush()
}

// printNodes writes the nodes of a cluster as a table or a JSON array.
func printNodes(w io.Writer, nodes []control.NodeRow, asJSON bool) error {
	if asJSON {
		return printJSON(w, nonNil(nodes))
	}
	tw := newTable(w, "NODE", "HOST", "ADDRESS", "STARTED", "HEARTBEAT", "SESSIONS", "MOUNTS")
	for _, n := range nodes {
		id := n.ID
		if n.Self {
			id += " (this node)"
		}
		row(tw, id, n.Host, n.Addr, formatTime(n.Started), formatTime(n.Heartbeat), fmt.Sprint(n.Sessions), fmt.Sprint(n.Mounts))
	}
	return tw.Flush()
}

// withNode is cells, after node when cluster.
func withNode(cluster bool, node string, cells []string) []string {
	if !cluster {
		return cells
	}
	return append([]string{node}, cells...)
}

// printWarning writes the daemon's warning, if any, as one line.
func printWarning(errw io.Writer, resp control.Response) {
	if resp.Warning != "" {
		fmt.Fprintln(errw, "warning:", resp.Warning)
	}
}
