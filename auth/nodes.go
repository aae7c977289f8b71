package auth

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// The nodes registry: the gateway nodes of a cluster sharing one
// PostgreSQL store register themselves (Heartbeat, every second), publish
// what the administration commands show of them (their sessions and
// mounts, opaque JSON documents to this package), and send each other
// commands (SendNodeCommand, polled by the target with
// PendingNodeCommands). The functions work on SQLite too (the unit tests
// run on both); the daemon only uses them when the store is shared.
//
// Heartbeats and the creation of commands are stamped, and their age
// judged, with the database's clock (see nowNanos), never a node's: a node
// whose clock is off is still seen alive by the others, and a command
// expires at the same time whoever sweeps. The Store's clock (WithClock)
// plays no part here.

// Bounds of the registry.
const (
	// MaxNodeDoc is the most bytes of one node's published sessions or
	// mounts document; Heartbeat refuses a larger one.
	MaxNodeDoc = 4 << 20
	// MaxPendingNodeCommands is the most commands waiting for one node;
	// SendNodeCommand refuses more.
	MaxPendingNodeCommands = 64
	// NodeCommandTTL is the age (by the database's clock) after which
	// SweepNodes deletes a command, answered or not.
	NodeCommandTTL = time.Minute
)

// nodeIDPattern is what a node id may be: 1 to 64 letters, digits, dots,
// dashes and underscores, starting with a letter or a digit.
var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidNodeID checks a node id: 1 to 64 letters, digits, '.', '-' and '_',
// starting with a letter or a digit.
func ValidNodeID(id string) error {
	if !nodeIDPattern.MatchString(id) {
		return invalid(fmt.Sprintf("node id %q", id), "want 1 to 64 letters, digits, '.', '-' or '_', starting with a letter or a digit")
	}
	return nil
}

// Node is one registered gateway node.
type Node struct {
	ID      string
	Host    string    // the machine's host name
	Addr    string    // the SSH listener's address
	Started time.Time // as the node's own clock read it (shown, never compared)
	// Heartbeat is the time of the last heartbeat, by the database's
	// clock; Store.Heartbeat ignores it (the database stamps the row).
	Heartbeat time.Time
	// Sessions and Mounts are the node's published documents (JSON, as
	// the daemon writes them; never nil once read from the store).
	Sessions []byte
	Mounts   []byte
}

// Shared reports whether the store is a database that several nodes use
// (PostgreSQL) rather than one node's embedded SQLite file.
func (s *Store) Shared() bool { return s.db.dialect == dialectPostgres }

// Heartbeat registers the node n or refreshes its row: host, address,
// start, its documents, and the heartbeat, stamped with the database's
// clock (n.Heartbeat is ignored).
func (s *Store) Heartbeat(ctx context.Context, n Node) error {
	if err := ValidNodeID(n.ID); err != nil {
		return err
	}
	if len(n.Sessions) > MaxNodeDoc || len(n.Mounts) > MaxNodeDoc {
		return invalid(fmt.Sprintf("node %q", n.ID), fmt.Sprintf("published document over %d bytes", MaxNodeDoc))
	}
	sess, mounts := orEmpty(n.Sessions), orEmpty(n.Mounts)
	err := s.write(ctx, func() error {
		_, err := s.db.ExecContext(ctx, `INSERT INTO nodes(id, host, addr, started, heartbeat, sessions, mounts)
			VALUES (?, ?, ?, ?, `+s.db.dialect.nowNanos()+`, ?, ?)
			ON CONFLICT(id) DO UPDATE SET host = excluded.host, addr = excluded.addr, started = excluded.started,
				heartbeat = excluded.heartbeat, sessions = excluded.sessions, mounts = excluded.mounts`,
			n.ID, n.Host, n.Addr, nanos(n.Started), sess, mounts)
		return err
	})
	return opErr("node heartbeat", err)
}

// orEmpty is b, or an empty (non-nil) slice: the columns are NOT NULL.
func orEmpty(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Nodes returns the nodes whose last heartbeat is at most goneAfter old
// (by the database's clock), by id.
func (s *Store) Nodes(ctx context.Context, goneAfter time.Duration) ([]Node, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, host, addr, started, heartbeat, sessions, mounts FROM nodes
		WHERE heartbeat >= `+s.db.dialect.nowNanos()+` - ? ORDER BY id`, goneAfter.Nanoseconds())
	if err != nil {
		return nil, opErr("list nodes", err)
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		var (
			n             Node
			started, beat int64
		)
		if err := rows.Scan(&n.ID, &n.Host, &n.Addr, &started, &beat, &n.Sessions, &n.Mounts); err != nil {
			return nil, opErr("list nodes", err)
		}
		n.Started, n.Heartbeat = fromNanos(started), fromNanos(beat)
		n.Sessions, n.Mounts = orEmpty(n.Sessions), orEmpty(n.Mounts)
		out = append(out, n)
	}
	return out, opErr("list nodes", rows.Err())
}

// RemoveNode deletes the row of node id and its commands (a node stopping
// cleanly); no error if there is none.
func (s *Store) RemoveNode(ctx context.Context, id string) error {
	err := s.writeTx(ctx, func(tx *dbTx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM node_commands WHERE node = ?`, id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM nodes WHERE id = ?`, id)
		return err
	})
	return opErr("remove node", err)
}

// SweepNodes deletes the nodes whose heartbeat is older than goneAfter,
// the commands addressed to nodes that have no row, and the commands
// older than NodeCommandTTL, ages by the database's clock. It returns the
// number of nodes deleted.
func (s *Store) SweepNodes(ctx context.Context, goneAfter time.Duration) (int, error) {
	now := s.db.dialect.nowNanos()
	var gone int64
	err := s.writeTx(ctx, func(tx *dbTx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM nodes WHERE heartbeat < `+now+` - ?`, goneAfter.Nanoseconds())
		if err != nil {
			return err
		}
		if gone, err = res.RowsAffected(); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM node_commands WHERE created < `+now+` - ?
			OR NOT EXISTS (SELECT 1 FROM nodes WHERE nodes.id = node_commands.node)`, NodeCommandTTL.Nanoseconds())
		return err
	})
	if err != nil {
		return 0, opErr("sweep nodes", err)
	}
	return int(gone), nil
}

// NodeCommand is a command sent to a node.
type NodeCommand struct {
	ID      string
	Node    string    // the node that runs it
	Op      string    // e.g. "kill"
	Arg     string    // e.g. a session id
	Created time.Time // by the database's clock
	Done    bool
	Result  string // written by the node; "" for success
}

// SendNodeCommand queues the command op(arg) for node and returns its id.
// It fails if the node has MaxPendingNodeCommands commands waiting.
func (s *Store) SendNodeCommand(ctx context.Context, node, op, arg string) (string, error) {
	if err := ValidNodeID(node); err != nil {
		return "", err
	}
	var b [12]byte
	rand.Read(b[:]) //nolint:errcheck // crypto/rand panics rather than fail
	id := hex.EncodeToString(b[:])
	err := s.writeTx(ctx, func(tx *dbTx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM node_commands WHERE node = ? AND done = 0`, node).Scan(&n); err != nil {
			return err
		}
		if n >= MaxPendingNodeCommands {
			return invalid(fmt.Sprintf("node %q", node), fmt.Sprintf("%d commands are waiting for it already", n))
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO node_commands(id, node, op, arg, created)
			VALUES (?, ?, ?, ?, `+s.db.dialect.nowNanos()+`)`, id, node, op, arg)
		return err
	})
	if err != nil {
		return "", opErr("send node command", err)
	}
	return id, nil
}

// PendingNodeCommands returns the commands waiting for node, oldest first.
func (s *Store) PendingNodeCommands(ctx context.Context, node string) ([]NodeCommand, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, node, op, arg, created FROM node_commands
		WHERE node = ? AND done = 0 ORDER BY created, id LIMIT ?`, node, MaxPendingNodeCommands)
	if err != nil {
		return nil, opErr("pending node commands", err)
	}
	defer rows.Close()
	var out []NodeCommand
	for rows.Next() {
		var (
			c       NodeCommand
			created int64
		)
		if err := rows.Scan(&c.ID, &c.Node, &c.Op, &c.Arg, &created); err != nil {
			return nil, opErr("pending node commands", err)
		}
		c.Created = fromNanos(created)
		out = append(out, c)
	}
	return out, opErr("pending node commands", rows.Err())
}

// FinishNodeCommand records the result of command id ("" for success).
// A command is finished once: it fails with ErrNotFound if id is unknown
// or already finished.
func (s *Store) FinishNodeCommand(ctx context.Context, id, result string) error {
	var n int64
	err := s.write(ctx, func() error {
		res, err := s.db.ExecContext(ctx, `UPDATE node_commands SET done = 1, result = ? WHERE id = ? AND done = 0`, result, id)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return opErr("finish node command", err)
	}
	if n == 0 {
		return notFound(fmt.Sprintf("pending node command %q", id))
	}
	return nil
}

// NodeCommandResult returns command id as it stands (Done and Result once
// the node has run it), or ErrNotFound.
func (s *Store) NodeCommandResult(ctx context.Context, id string) (NodeCommand, error) {
	var (
		c       NodeCommand
		created int64
	)
	err := s.db.QueryRowContext(ctx, `SELECT id, node, op, arg, created, done, result FROM node_commands WHERE id = ?`, id).
		Scan(&c.ID, &c.Node, &c.Op, &c.Arg, &created, &c.Done, &c.Result)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return NodeCommand{}, notFound(fmt.Sprintf("node command %q", id))
		}
		return NodeCommand{}, opErr("node command result", err)
	}
	c.Created = fromNanos(created)
	return c, nil
}

// DeleteNodeCommand deletes command id (its sender, once it has the
// result or gives up); no error if there is none.
func (s *Store) DeleteNodeCommand(ctx context.Context, id string) error {
	err := s.write(ctx, func() error {
		_, err := s.db.ExecContext(ctx, `DELETE FROM node_commands WHERE id = ?`, id)
		return err
	})
	return opErr("delete node command", err)
}
