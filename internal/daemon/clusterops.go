package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/internal/control"
)

// The control requests in a cluster: the rows of every live node, each
// with its node's id, and kills that reach the node holding the session.

// localRows are this daemon's sessions and mounts, as it publishes them.
func (d *daemonControl) localRows() ([]control.SessionRow, []control.MountRow) {
	return sessionRows(d.sessions.Sessions()), d.mounts()
}

// otherNodes returns the live nodes other than this one, or a warning
// saying why they could not be listed.
func (d *daemonControl) otherNodes(ctx context.Context) ([]auth.Node, string) {
	nodes, err := d.node.nodes(ctx)
	if err != nil {
		d.log.Warn("cluster: the other nodes could not be listed", "err", err)
		return nil, fmt.Sprintf("only the sessions and mounts of node %s are listed: the other nodes could not be read from the shared store: %v", d.node.self.ID, err)
	}
	out := nodes[:0]
	for _, n := range nodes {
		if n.ID != d.node.self.ID {
			out = append(out, n)
		}
	}
	return out, ""
}

// clusterSessions lists the sessions of every live node, oldest first:
// this daemon's as they are now, the others' as their last heartbeat
// published them (at most heartbeatEvery old).
func (d *daemonControl) clusterSessions(ctx context.Context) control.Response {
	rows := sessionRows(d.sessions.Sessions())
	for i := range rows {
		rows[i].Node = d.node.self.ID
	}
	others, warning := d.otherNodes(ctx)
	for _, n := range others {
		var theirs []control.SessionRow
		if err := json.Unmarshal(n.Sessions, &theirs); err != nil {
			d.log.Warn("cluster: unreadable sessions of a node", "node", n.ID, "err", err)
			continue
		}
		for _, r := range theirs {
			r.Node = n.ID
			rows = append(rows, r)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if !a.Since.Equal(b.Since) {
			return a.Since.Before(b.Since)
		}
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		return a.ID < b.ID
	})
	return control.Response{Cluster: true, Sessions: rows, Warning: warning}
}

// clusterMounts lists the views of every live node, node by node (by id),
// each node's in its own order.
func (d *daemonControl) clusterMounts(ctx context.Context) control.Response {
	rows := d.mounts()
	for i := range rows {
		rows[i].Node = d.node.self.ID
	}
	others, warning := d.otherNodes(ctx)
	for _, n := range others {
		var theirs []control.MountRow
		if err := json.Unmarshal(n.Mounts, &theirs); err != nil {
			d.log.Warn("cluster: unreadable mounts of a node", "node", n.ID, "err", err)
			continue
		}
		for _, r := range theirs {
			r.Node = n.ID
			rows = append(rows, r)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Node < rows[j].Node })
	return control.Response{Cluster: true, Mounts: rows, Warning: warning}
}

// nodes lists the live nodes of the cluster.
func (d *daemonControl) nodes(ctx context.Context) control.Response {
	if d.node == nil {
		return control.Response{Error: `nodes: this daemon is not part of a cluster: its identity store is SQLite (nodes share a PostgreSQL store, key "database")`}
	}
	nodes, err := d.node.nodes(ctx)
	if err != nil {
		return control.Response{Error: fmt.Sprintf("nodes: %v", err)}
	}
	sessions, mounts := d.localRows()
	rows := make([]control.NodeRow, 0, len(nodes)+1)
	self := false
	for _, n := range nodes {
		r := control.NodeRow{ID: n.ID, Host: n.Host, Addr: n.Addr, Started: n.Started, Heartbeat: n.Heartbeat}
		if n.ID == d.node.self.ID {
			self, r.Self = true, true
			r.Sessions, r.Mounts = len(sessions), len(mounts)
		} else {
			r.Sessions, r.Mounts = countRows(n.Sessions), countRows(n.Mounts)
		}
		rows = append(rows, r)
	}
	if !self {
		// This node's heartbeats fail: it is not in the registry, but it
		// answers.
		n := d.node.self
		rows = append(rows, control.NodeRow{ID: n.ID, Host: n.Host, Addr: n.Addr, Started: n.Started, Self: true, Sessions: len(sessions), Mounts: len(mounts)})
	}
	return control.Response{Cluster: true, Nodes: rows}
}

// countRows counts the rows of a published JSON array (0 if unreadable).
func countRows(doc []byte) int {
	var rows []json.RawMessage
	if json.Unmarshal(doc, &rows) != nil {
		return 0
	}
	return len(rows)
}

// clusterKill kills session req.ID on the node that holds it: the node
// req.Node when set, else the one live node that lists the id (this
// daemon's sessions as they are, the others' as last published). An id
// that two nodes list is refused (ReasonAmbiguous) rather than guessed;
// naming the node settles it. When the shared store cannot be read, only
// this daemon's sessions can be reached.
func (d *daemonControl) clusterKill(ctx context.Context, req control.Request, noSession control.Response) control.Response {
	id, self := req.ID, d.node.self.ID
	if req.Node == self {
		return d.localKill(id, noSession)
	}
	others, warning := d.otherNodes(ctx)
	if warning != "" {
		if req.Node != "" {
			return control.Response{Error: fmt.Sprintf("kill: session %q of node %s: the shared store could not be read", id, req.Node)}
		}
		if r := d.localKill(id, noSession); r.Reason != control.ReasonNoSession {
			return r
		}
		return control.Response{Error: fmt.Sprintf("kill: no session %q on node %s, and the other nodes could not be asked: the shared store could not be read", id, self)}
	}
	if req.Node != "" {
		for _, n := range others {
			if n.ID == req.Node {
				return d.remoteKill(ctx, n.ID, id, noSession)
			}
		}
		return control.Response{Error: fmt.Sprintf("kill: no live node %q in the cluster (see sftpgate nodes)", req.Node)}
	}
	var holders []string
	for _, s := range d.sessions.Sessions() {
		if s.ID == id {
			holders = append(holders, self)
			break
		}
	}
	for _, n := range others {
		if listsSession(n.Sessions, id) {
			holders = append(holders, n.ID)
		}
	}
	switch {
	case len(holders) == 0:
		return noSession
	case len(holders) > 1:
		return control.Response{Reason: control.ReasonAmbiguous, Error: fmt.Sprintf(
			"kill: session id %q is held by %d nodes (%s): nothing killed; name the node: sftpgate sessions kill --node NODE %s",
			id, len(holders), strings.Join(holders, ", "), id)}
	case holders[0] == self:
		return d.localKill(id, noSession)
	}
	return d.remoteKill(ctx, holders[0], id, noSession)
}

// listsSession reports whether the published sessions doc hold id.
func listsSession(doc []byte, id string) bool {
	var rows []control.SessionRow
	if json.Unmarshal(doc, &rows) != nil {
		return false
	}
	for _, r := range rows {
		if r.ID == id {
			return true
		}
	}
	return false
}

// remoteKill kills session id of the node holder (another live node) and
// words the outcome.
func (d *daemonControl) remoteKill(ctx context.Context, holder, id string, noSession control.Response) control.Response {
	err := d.node.remoteKill(ctx, holder, id)
	switch {
	case err == nil:
		d.log.Info("session killed by an admin", "session", id, "node", holder)
		return control.Response{Message: fmt.Sprintf("closed on node %s", holder)}
	case errors.Is(err, errNoRemoteSession):
		return noSession
	case errors.Is(err, errNodeSilent):
		return control.Response{Error: fmt.Sprintf("kill: session %q of node %s: %v", id, holder, err), Reason: control.ReasonNodeGone}
	}
	return control.Response{Error: fmt.Sprintf("kill: session %q of node %s: %v", id, holder, err)}
}
