package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/internal/control"
)

// Cluster-wide operations. When the identity store is shared (PostgreSQL),
// every daemon is a node of one cluster: it registers itself in the store
// and, every heartbeatEvery, refreshes its row with its sessions and mounts
// (the rows of "sftpgate sessions" and "sftpgate mounts", as JSON). Any
// node's control socket then lists the rows of every live node; a node
// whose heartbeat is older than nodeGoneAfter is left out and its row
// deleted by the others. "sessions kill" of a session held by another
// node becomes a command row in the store that the node polls every
// clusterTick, runs, and answers in the row.
//
// The store stamps heartbeats and commands with the database's clock and
// judges their age with it (auth, "the database's clock"): a node's own
// clock only dates its start, as shown by "sftpgate nodes", so nodes whose
// clocks disagree still see each other.
//
// Polling the store rather than PostgreSQL's LISTEN/NOTIFY: the heartbeat
// writes to the store every second anyway, one indexed SELECT per quarter
// second per node is cheap, it goes through the store's connection pool
// (database/sql) like every other query, and a command is never lost when
// a connection drops (a notification sent while a node reconnects is).

// Timing of the cluster loop.
const (
	// clusterTick is how often a node looks for commands sent to it.
	clusterTick = 250 * time.Millisecond
	// heartbeatEvery is how often a node refreshes its row.
	heartbeatEvery = time.Second
	// nodeGoneAfter is the age of a heartbeat after which its node is
	// gone: out of the lists, its row deleted.
	nodeGoneAfter = 5 * time.Second
	// clusterOpTimeout bounds one store operation of the loop.
	clusterOpTimeout = 3 * time.Second
	// killWait is how long a kill waits for the node holding the session
	// to run it; killPoll how often it looks at the answer.
	killWait = 5 * time.Second
	killPoll = 50 * time.Millisecond
	// maxPublishedRows bounds the sessions (and the mounts) a node
	// publishes; more are left out of the other nodes' lists.
	maxPublishedRows = 10000
)

// NodeIDFile is the file of the working directory that holds the node's
// id in a cluster: generated at the first start on a shared store, kept
// afterwards, and the admin's to set (1 to 64 letters, digits, '.', '-'
// or '_').
const NodeIDFile = "node-id"

// nodeCmdKill is the command that kills a session (its argument).
const nodeCmdKill = "kill"

// clusterStore is what a node needs from the shared store (auth.Store).
type clusterStore interface {
	Heartbeat(ctx context.Context, n auth.Node) error
	Nodes(ctx context.Context, goneAfter time.Duration) ([]auth.Node, error)
	RemoveNode(ctx context.Context, id string) error
	SweepNodes(ctx context.Context, goneAfter time.Duration) (int, error)
	SendNodeCommand(ctx context.Context, node, op, arg string) (string, error)
	PendingNodeCommands(ctx context.Context, node string) ([]auth.NodeCommand, error)
	FinishNodeCommand(ctx context.Context, id, result string) error
	NodeCommandResult(ctx context.Context, id string) (auth.NodeCommand, error)
	DeleteNodeCommand(ctx context.Context, id string) error
}

var _ clusterStore = (*auth.Store)(nil)

// clusterNode is this daemon as a node of the cluster.
type clusterNode struct {
	st   clusterStore
	self auth.Node // ID, Host, Addr, Started
	log  *slog.Logger
	// rows returns the local sessions and mounts, as published.
	rows func() ([]control.SessionRow, []control.MountRow)
	// kill kills a local session (sftpd.Server.Kill).
	kill func(id string) error
	// now is the node's own clock (time.Now): it dates the node's start,
	// nothing that another node compares.
	now func() time.Time

	// mu guards the fields below (the loop's, and beats from kills).
	mu      sync.Mutex
	healthy bool // the last heartbeat was written

	cancel context.CancelFunc
	done   chan struct{}
}

// loadNodeID returns the node id kept in workdir, creating it (12 random
// hex digits, mode 0600) if there is none.
func loadNodeID(workdir string) (string, error) {
	path := filepath.Join(workdir, NodeIDFile)
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if err := auth.ValidNodeID(id); err != nil {
			return "", fmt.Errorf("node id in %s: %w", path, err)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("node id: %w", err)
	}
	var r [6]byte
	rand.Read(r[:]) //nolint:errcheck // crypto/rand panics rather than fail
	id := hex.EncodeToString(r[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("node id: %w", err)
	}
	if _, err := f.WriteString(id + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("node id: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("node id: write %s: %w", path, err)
	}
	return id, nil
}

// newClusterNode makes this daemon a node: its id kept in workdir, its
// SSH listener's address addr, its rows those of dc.
func newClusterNode(workdir string, st clusterStore, addr string, dc *daemonControl, log *slog.Logger) (*clusterNode, error) {
	id, err := loadNodeID(workdir)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return &clusterNode{
		st:   st,
		self: auth.Node{ID: id, Host: host, Addr: addr},
		log:  log,
		rows: dc.localRows,
		kill: dc.sessions.Kill,
		now:  time.Now,
	}, nil
}

// start registers the node (its first heartbeat; a failure is logged and
// the loop tries again) and starts its loop; stop ends it.
func (c *clusterNode) start(ctx context.Context) {
	c.healthy = true
	c.self.Started = c.now()
	if c.beat(ctx) == nil {
		c.log.Info("cluster: node registered", "node", c.self.ID, "host", c.self.Host, "addr", c.self.Addr)
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel, c.done = cancel, make(chan struct{})
	go c.loop(lctx)
}

// stop ends the loop and removes the node's row, so that it leaves the
// lists at once. It may be called once, after start.
func (c *clusterNode) stop() {
	c.cancel()
	<-c.done
	ctx, cancel := context.WithTimeout(context.Background(), clusterOpTimeout)
	defer cancel()
	if err := c.st.RemoveNode(ctx, c.self.ID); err != nil {
		c.log.Warn("cluster: node row not removed (the others drop it when its heartbeat is old)", "node", c.self.ID, "err", err)
		return
	}
	c.log.Info("cluster: node left", "node", c.self.ID)
}

// loop runs the node's commands every clusterTick and beats every
// heartbeatEvery until ctx is done.
func (c *clusterNode) loop(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(clusterTick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ran := c.runCommands(ctx)
		if ran || time.Since(last) >= heartbeatEvery-clusterTick/2 {
			last = time.Now()
			if c.beat(ctx) == nil {
				c.sweep(ctx)
			}
		}
	}
}

// beat publishes the node's row: heartbeat (stamped by the database),
// sessions and mounts.
func (c *clusterNode) beat(ctx context.Context) error {
	sessions, mounts := c.rows()
	n := c.self
	var err error
	if n.Sessions, err = publishDoc(sessions); err != nil {
		return err
	}
	if n.Mounts, err = publishDoc(mounts); err != nil {
		return err
	}
	octx, cancel := context.WithTimeout(ctx, clusterOpTimeout)
	defer cancel()
	err = c.st.Heartbeat(octx, n)
	c.health(err)
	return err
}

// publishDoc is the JSON array of the first maxPublishedRows rows, fewer
// if needed to stay within auth.MaxNodeDoc (halved until it fits).
func publishDoc[T any](rows []T) ([]byte, error) {
	rows = rows[:min(len(rows), maxPublishedRows)]
	for {
		doc, err := json.Marshal(nonNilRows(rows))
		if err != nil || len(doc) <= auth.MaxNodeDoc {
			return doc, err
		}
		rows = rows[:len(rows)/2]
	}
}

// nonNilRows is rows, or an empty slice (JSON [] rather than null).
func nonNilRows[T any](rows []T) []T {
	if rows == nil {
		return []T{}
	}
	return rows
}

// health logs the changes of the store's state as the loop sees it: once
// when heartbeats start failing, once when they work again.
func (c *clusterNode) health(err error) {
	c.mu.Lock()
	was := c.healthy
	c.healthy = err == nil
	c.mu.Unlock()
	switch {
	case err != nil && was:
		c.log.Warn("cluster: heartbeat failed: the other nodes drop this one from their lists until it works again", "node", c.self.ID, "err", err)
	case err == nil && !was:
		c.log.Info("cluster: heartbeat works again", "node", c.self.ID)
	}
}

// sweep deletes the rows of the nodes gone and old commands.
func (c *clusterNode) sweep(ctx context.Context) {
	octx, cancel := context.WithTimeout(ctx, clusterOpTimeout)
	defer cancel()
	n, err := c.st.SweepNodes(octx, nodeGoneAfter)
	if err != nil {
		c.log.Debug("cluster: sweep failed", "err", err)
		return
	}
	if n > 0 {
		c.log.Info("cluster: removed nodes that stopped heartbeating", "nodes", n, "after", nodeGoneAfter)
	}
}

// runCommands runs the commands sent to this node and reports whether it
// ran any.
func (c *clusterNode) runCommands(ctx context.Context) bool {
	octx, cancel := context.WithTimeout(ctx, clusterOpTimeout)
	defer cancel()
	cmds, err := c.st.PendingNodeCommands(octx, c.self.ID)
	if err != nil {
		return false // the heartbeat reports the store's trouble
	}
	for _, cmd := range cmds {
		result := ""
		switch cmd.Op {
		case nodeCmdKill:
			if err := c.kill(cmd.Arg); err != nil {
				result = err.Error()
				if isNoSession(err) {
					result = control.ReasonNoSession
				}
			} else {
				c.log.Info("session killed by an admin on another node", "session", cmd.Arg)
			}
		default:
			result = fmt.Sprintf("unknown node command %q (is this node older than the sender?)", cmd.Op)
		}
		if err := c.st.FinishNodeCommand(octx, cmd.ID, result); err != nil {
			c.log.Warn("cluster: command result not written", "command", cmd.Op, "err", err)
		}
	}
	return len(cmds) > 0
}

// nodes returns the live nodes.
func (c *clusterNode) nodes(ctx context.Context) ([]auth.Node, error) {
	return c.st.Nodes(ctx, nodeGoneAfter)
}

// remoteKill asks node to kill session id and waits for its answer (at
// most killWait): nil, or an error wrapping errNoRemoteSession or
// errNodeSilent.
func (c *clusterNode) remoteKill(ctx context.Context, node, id string) error {
	cmd, err := c.st.SendNodeCommand(ctx, node, nodeCmdKill, id)
	if err != nil {
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), clusterOpTimeout)
		defer cancel()
		c.st.DeleteNodeCommand(dctx, cmd) //nolint:errcheck // the sweep deletes it otherwise
	}()
	deadline := time.Now().Add(killWait)
	t := time.NewTicker(killPoll)
	defer t.Stop()
	for {
		r, err := c.st.NodeCommandResult(ctx, cmd)
		switch {
		case err != nil && !errors.Is(err, auth.ErrNotFound):
			return err
		case errors.Is(err, auth.ErrNotFound):
			// Swept: its node left the registry.
			return fmt.Errorf("%w: node %s left the cluster", errNodeSilent, node)
		case r.Done && r.Result == "":
			return nil
		case r.Done && r.Result == control.ReasonNoSession:
			return errNoRemoteSession
		case r.Done:
			return errors.New(r.Result)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: node %s did not answer within %v", errNodeSilent, node, killWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Errors of remoteKill.
var (
	errNoRemoteSession = errors.New("the session ended before the node got the command")
	errNodeSilent      = errors.New("node did not run the command")
)
