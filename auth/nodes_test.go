package auth

import (
	"context"
	"errors"
	"testing"
	"time"
)

// ageRows makes the rows of table (nodes: heartbeat, node_commands:
// created) that match where (SQL, with args) d older, as if the database's
// clock had run on by d since they were written.
func ageRows(t *testing.T, s *Store, table, where string, d time.Duration, args ...any) {
	t.Helper()
	col := map[string]string{"nodes": "heartbeat", "node_commands": "created"}[table]
	q := `UPDATE ` + table + ` SET ` + col + ` = ` + col + ` - ? WHERE ` + where
	if _, err := s.db.ExecContext(context.Background(), q, append([]any{d.Nanoseconds()}, args...)...); err != nil {
		t.Fatalf("age the rows of %s: %v", table, err)
	}
}

// within reports whether got is within margin of want.
func within(got, want time.Time, margin time.Duration) bool {
	return got.After(want.Add(-margin)) && got.Before(want.Add(margin))
}

// TestNodesRegistry registers nodes, lists those heartbeating, sweeps the
// gone ones with their commands, on both stores; heartbeats are aged by
// the database's clock (rows aged in place stand for time passing).
func TestNodesRegistry(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s, _ := open(t)
		start := time.Now()
		for _, id := range []string{"n1", "n2", "n3"} {
			n := Node{ID: id, Host: "h-" + id, Addr: "127.0.0.1:2022", Started: start, Sessions: []byte(`[{"id":"` + id + `-s"}]`)}
			if err := s.Heartbeat(ctx, n); err != nil {
				t.Fatalf("Heartbeat %s: %v", id, err)
			}
		}
		nodes, err := s.Nodes(ctx, 5*time.Second)
		if err != nil || len(nodes) != 3 {
			t.Fatalf("Nodes: got %d, %v; want 3", len(nodes), err)
		}
		n1 := nodes[0]
		if n1.ID != "n1" || n1.Host != "h-n1" || n1.Addr != "127.0.0.1:2022" || !n1.Started.Equal(start) ||
			!within(n1.Heartbeat, start, 2*time.Second) || string(n1.Sessions) != `[{"id":"n1-s"}]` || n1.Mounts == nil || len(n1.Mounts) != 0 {
			t.Errorf("node n1: got %+v", n1)
		}

		// n1 and n2 go on beating, n3 stops; n3 has a command waiting.
		cmd, err := s.SendNodeCommand(ctx, "n3", "kill", "abc-1")
		if err != nil {
			t.Fatalf("SendNodeCommand: %v", err)
		}
		ageRows(t, s, "nodes", "1 = 1", 3*time.Second)
		for _, id := range []string{"n1", "n2"} {
			if err := s.Heartbeat(ctx, Node{ID: id, Host: "h-" + id, Addr: "a", Started: start}); err != nil {
				t.Fatal(err)
			}
		}
		ageRows(t, s, "nodes", "1 = 1", 3*time.Second)
		nodes, err = s.Nodes(ctx, 5*time.Second)
		if err != nil || len(nodes) != 2 || nodes[0].ID != "n1" || nodes[1].ID != "n2" {
			t.Fatalf("Nodes 6 s later, n3 silent: got %+v, %v; want n1, n2", nodes, err)
		}
		if want := time.Now().Add(-3 * time.Second); !within(nodes[0].Heartbeat, want, 2*time.Second) {
			t.Errorf("n1's heartbeat: got %v, want about %v", nodes[0].Heartbeat, want)
		}
		gone, err := s.SweepNodes(ctx, 5*time.Second)
		if err != nil || gone != 1 {
			t.Fatalf("SweepNodes: got %d, %v; want 1 node deleted", gone, err)
		}
		if _, err := s.NodeCommandResult(ctx, cmd); !errors.Is(err, ErrNotFound) {
			t.Errorf("the command of the swept node: got %v, want ErrNotFound", err)
		}
		if nodes, _ := s.Nodes(ctx, time.Hour); len(nodes) != 2 {
			t.Errorf("rows after the sweep: got %d nodes, want 2", len(nodes))
		}

		// A clean stop removes the node's row at once.
		if err := s.RemoveNode(ctx, "n2"); err != nil {
			t.Fatal(err)
		}
		if nodes, _ := s.Nodes(ctx, time.Hour); len(nodes) != 1 || nodes[0].ID != "n1" {
			t.Errorf("after RemoveNode n2: got %+v, want n1 alone", nodes)
		}

		if err := s.Heartbeat(ctx, Node{ID: "bad id"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Heartbeat with id %q: got %v, want ErrInvalid", "bad id", err)
		}
		big := make([]byte, MaxNodeDoc+1)
		if err := s.Heartbeat(ctx, Node{ID: "n1", Sessions: big}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Heartbeat with a %d-byte document: got %v, want ErrInvalid", len(big), err)
		}
	})
}

// TestNodeCommands sends commands to a node, which runs each once; the
// sender reads the result; pending commands are bounded; old ones (by the
// database's clock) are swept.
func TestNodeCommands(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s, _ := open(t)
		for _, id := range []string{"a", "b"} {
			if err := s.Heartbeat(ctx, Node{ID: id, Started: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		c1, err := s.SendNodeCommand(ctx, "b", "kill", "s-1")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // SQLite's clock counts milliseconds
		c2, err := s.SendNodeCommand(ctx, "b", "kill", "s-2")
		if err != nil {
			t.Fatal(err)
		}
		if p, err := s.PendingNodeCommands(ctx, "a"); err != nil || len(p) != 0 {
			t.Errorf("pending for a: got %+v, %v; want none", p, err)
		}
		p, err := s.PendingNodeCommands(ctx, "b")
		if err != nil || len(p) != 2 || p[0].ID != c1 || p[1].ID != c2 || p[0].Op != "kill" || p[0].Arg != "s-1" || p[0].Node != "b" {
			t.Fatalf("pending for b: got %+v, %v; want %s then %s", p, err, c1, c2)
		}
		if r, err := s.NodeCommandResult(ctx, c1); err != nil || r.Done {
			t.Errorf("result before the run: got %+v, %v; want not done", r, err)
		}
		if err := s.FinishNodeCommand(ctx, c1, ""); err != nil {
			t.Fatal(err)
		}
		if err := s.FinishNodeCommand(ctx, c2, "no-session"); err != nil {
			t.Fatal(err)
		}
		if err := s.FinishNodeCommand(ctx, c2, ""); !errors.Is(err, ErrNotFound) {
			t.Errorf("finishing a command twice: got %v, want ErrNotFound", err)
		}
		if p, _ := s.PendingNodeCommands(ctx, "b"); len(p) != 0 {
			t.Errorf("pending after the runs: got %+v, want none", p)
		}
		r1, err1 := s.NodeCommandResult(ctx, c1)
		r2, err2 := s.NodeCommandResult(ctx, c2)
		if err1 != nil || err2 != nil || !r1.Done || r1.Result != "" || !r2.Done || r2.Result != "no-session" {
			t.Errorf("results: got %+v, %v and %+v, %v; want done, \"\" and done, no-session", r1, err1, r2, err2)
		}
		if err := s.DeleteNodeCommand(ctx, c1); err != nil {
			t.Fatal(err)
		}
		if _, err := s.NodeCommandResult(ctx, c1); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted command: got %v, want ErrNotFound", err)
		}

		// Bounded: a node that does not run its commands gets at most
		// MaxPendingNodeCommands.
		for i := range MaxPendingNodeCommands {
			if _, err := s.SendNodeCommand(ctx, "a", "kill", "x"); err != nil {
				t.Fatalf("command %d: %v", i, err)
			}
		}
		if _, err := s.SendNodeCommand(ctx, "a", "kill", "x"); !errors.Is(err, ErrInvalid) {
			t.Errorf("command %d: got %v, want refused", MaxPendingNodeCommands+1, err)
		}
		// Commands older than NodeCommandTTL go at the next sweep, even
		// when their node is alive.
		ageRows(t, s, "node_commands", "1 = 1", NodeCommandTTL+time.Second)
		for _, id := range []string{"a", "b"} {
			if err := s.Heartbeat(ctx, Node{ID: id, Started: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.SweepNodes(ctx, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM node_commands`).Scan(&n); err != nil || n != 0 {
			t.Errorf("commands after the sweep: got %d, %v; want 0", n, err)
		}
		if _, err := s.SendNodeCommand(ctx, "a", "kill", "x"); err != nil {
			t.Errorf("a command after the sweep: %v", err)
		}
	})
}

// TestNodesDatabaseClock: heartbeats and commands are stamped and judged
// with the database's clock, whatever the clock of the store's process
// (WithClock) and the Heartbeat a node sends: a node an hour off is
// listed, and its fresh command is not swept.
func TestNodesDatabaseClock(t *testing.T) {
	eachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		for _, skew := range []time.Duration{-time.Hour, time.Hour} {
			s, _ := open(t, WithClock(func() time.Time { return time.Now().Add(skew) }))
			if err := s.Heartbeat(ctx, Node{ID: "skewed", Started: time.Now().Add(skew), Heartbeat: time.Now().Add(skew)}); err != nil {
				t.Fatal(err)
			}
			nodes, err := s.Nodes(ctx, 5*time.Second)
			if err != nil || len(nodes) != 1 || !within(nodes[0].Heartbeat, time.Now(), 2*time.Second) {
				t.Fatalf("skew %v: Nodes: got %+v, %v; want the node, its heartbeat about now", skew, nodes, err)
			}
			cmd, err := s.SendNodeCommand(ctx, "skewed", "kill", "s-1")
			if err != nil {
				t.Fatal(err)
			}
			if n, err := s.SweepNodes(ctx, 5*time.Second); err != nil || n != 0 {
				t.Errorf("skew %v: SweepNodes: got %d, %v; want nothing deleted", skew, n, err)
			}
			if r, err := s.NodeCommandResult(ctx, cmd); err != nil || !within(r.Created, time.Now(), 2*time.Second) {
				t.Errorf("skew %v: the command after a sweep: got %+v, %v; want kept, created about now", skew, r, err)
			}
		}
	})
}
