package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

// Budgets of the cluster-wide operations (README "Running a cluster").
const (
	// clusterListWithin: a session opened on a node is in every node's
	// list within a heartbeat (1 s), with margin for a busy machine.
	clusterListWithin = 10 * time.Second
	// clusterKillWithin: "sessions kill" on one node ends a session of
	// another (the brief's figure: the command is polled every 0.25 s).
	clusterKillWithin = 2 * time.Second
	// clusterGoneWithin: a node killed with SIGKILL leaves the lists after
	// 5 s without a heartbeat, plus a tick, plus margin.
	clusterGoneWithin = 9 * time.Second
)

// sessionIDPattern is the form of a session id: its connection's 48
// random bits in hex, a dash, its number on the connection.
var sessionIDPattern = regexp.MustCompile(`^[0-9a-f]{12}-[0-9]+$`)

// nodeID is the node id the daemon of g keeps in its working directory.
func (g *gateway) nodeID() string {
	g.t.Helper()
	b, err := os.ReadFile(filepath.Join(g.work, "node-id"))
	if err != nil {
		g.t.Fatalf("node id of %s: %v", g.addr, err)
	}
	return strings.TrimSpace(string(b))
}

// clusterSessionRow is a row of `sessions --json` in a cluster.
type clusterSessionRow struct {
	opsSessionRow
	Node string `json:"node"`
}

// clusterSessions runs `sessions --json` on g and returns its rows.
func (g *gateway) clusterSessions() []clusterSessionRow {
	g.t.Helper()
	r := g.mustCLI("sessions", "--json")
	var rows []clusterSessionRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		g.t.Fatalf("sessions --json: got %q: %v", r.stdout, err)
	}
	return rows
}

// nodeIDs runs `nodes --json` on g and returns the ids listed.
func (g *gateway) nodeIDs() []string {
	g.t.Helper()
	r := g.mustCLI("nodes", "--json")
	var rows []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		g.t.Fatalf("nodes --json: got %q: %v", r.stdout, err)
	}
	ids := make([]string, len(rows))
	for i, n := range rows {
		ids[i] = n.ID
	}
	return ids
}

// nodeOfUser maps user to node of rows.
func nodeOfUser(rows []clusterSessionRow) map[string]string {
	m := map[string]string{}
	for _, r := range rows {
		m[r.User] = r.Node
	}
	return m
}

// TestGatewayClusterOps runs three nodes on one PostgreSQL store, one
// session on each: every node's CLI lists the three sessions and views
// with the node holding each; `sessions kill` on node 1 ends the session
// of node 3 within clusterKillWithin; an unknown id is refused as without
// a cluster; node 3 killed with SIGKILL leaves the lists of the others
// within clusterGoneWithin, and comes back under its id when restarted.
func TestGatewayClusterOps(t *testing.T) {
	t.Parallel()
	gws := startGateways(t, 3, gwOptions{database: storePostgres})
	users := []string{"alice", "bob", "carol"}
	clients := make([]*sftp.Client, 3)
	ids := make([]string, 3)
	for i, g := range gws {
		tok := gws[0].addUser(users[i], personalWS)
		clients[i] = g.mustSFTP(users[i], tok)
		ids[i] = g.nodeID()
	}
	if ids[0] == ids[1] || ids[1] == ids[2] || ids[0] == ids[2] {
		t.Fatalf("node ids: got %q, want three different ones", ids)
	}

	// Every node lists every session, with its node.
	start := time.Now()
	for i, g := range gws {
		var got map[string]string
		ok := waitFor(clusterListWithin, 100*time.Millisecond, func() bool {
			got = nodeOfUser(g.clusterSessions())
			return len(got) == 3 && got["alice"] == ids[0] && got["bob"] == ids[1] && got["carol"] == ids[2]
		})
		if !ok {
			t.Fatalf("sessions through node %d: got user→node %v, want alice, bob, carol on %q", i+1, got, ids)
		}
	}
	t.Logf("three sessions listed by the three nodes %v after the logins", time.Since(start).Round(time.Millisecond))
	tab := gws[1].mustCLI("sessions").stdout
	if header, rows := tableRows(t, tab); !strings.HasPrefix(header, "NODE ") || len(rows) != 3 {
		t.Errorf("sessions table through node 2: got %q, want a NODE column and 3 rows", tab)
	}
	r := gws[1].mustCLI("mounts", "--json")
	var mounts []struct {
		Node string `json:"node"`
		User string `json:"user"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &mounts); err != nil {
		t.Fatalf("mounts --json: %v", err)
	}
	views := map[string]string{}
	for _, m := range mounts {
		views[m.User] = m.Node
	}
	if len(views) != 3 || views["alice"] != ids[0] || views["bob"] != ids[1] || views["carol"] != ids[2] {
		t.Errorf("mounts through node 2: got %+v, want the views of alice, bob, carol on %q", mounts, ids)
	}
	if got := gws[2].nodeIDs(); strings.Join(got, ",") != strings.Join(slices.Sorted(slices.Values(ids)), ",") {
		t.Errorf("nodes through node 3: got %q, want %q", got, slices.Sorted(slices.Values(ids)))
	}

	// Kill on node 1 the session held by node 3.
	var carolID string
	for _, row := range gws[0].clusterSessions() {
		if row.User == "carol" {
			carolID = row.ID
		}
		if !sessionIDPattern.MatchString(row.ID) {
			t.Errorf("session id %q of %s: want 12 hex digits, a dash and a number", row.ID, row.User)
		}
	}
	start = time.Now()
	out := gws[0].mustCLI("sessions", "kill", carolID).stdout
	if want := "session " + carolID + " closed on node " + ids[2] + "\n"; out != want {
		t.Errorf("sessions kill on node 1: got %q, want %q", out, want)
	}
	ended := waitFor(clusterKillWithin, 20*time.Millisecond, func() bool {
		_, err := clients[2].Getwd()
		return err != nil
	})
	took := time.Since(start)
	if !ended || took > clusterKillWithin {
		t.Errorf("carol's session on node 3: still open %v after the kill on node 1, want ended within %v", took.Round(time.Millisecond), clusterKillWithin)
	}
	t.Logf("kill on node 1 of a session of node 3: ended after %v", took.Round(time.Millisecond))
	if _, err := clients[0].Getwd(); err != nil {
		t.Errorf("alice's session on node 1 after carol's kill: %v", err)
	}
	if !waitFor(clusterListWithin, 100*time.Millisecond, func() bool { return len(gws[1].clusterSessions()) == 2 }) {
		t.Errorf("sessions through node 2 after the kill: got %+v, want alice's and bob's", gws[1].clusterSessions())
	}
	if !strings.Contains(gws[2].logs(), "session killed by an admin on another node") {
		t.Errorf("node 3's log: no line for the kill")
	}
	// An unknown id (and the id just killed): refused as without a cluster.
	for _, id := range []string{"zz-9", carolID} {
		r := gws[0].cli("sessions", "kill", id)
		if want := "sftpgate: kill: no session \"" + id + "\" (see sftpgate sessions)\n"; r.code != 1 || r.stderr != want {
			t.Errorf("sessions kill %s: got exit %d, stderr %q, want 1 and %q", id, r.code, r.stderr, want)
		}
	}

	// Node 3 dies: it leaves the lists of the others.
	g3 := gws[2]
	clients[2].Close()
	c3 := g3.mustSFTP("carol", g3.token("carol", "1h"))
	if !waitFor(clusterListWithin, 100*time.Millisecond, func() bool { return nodeOfUser(gws[0].clusterSessions())["carol"] == ids[2] }) {
		t.Fatalf("carol's new session on node 3 not listed by node 1")
	}
	kill := time.Now()
	if err := syscall.Kill(g3.pid(), syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 node 3: %v", err)
	}
	gone := waitFor(clusterGoneWithin, 100*time.Millisecond, func() bool {
		return len(gws[0].nodeIDs()) == 2 && len(gws[1].clusterSessions()) == 2
	})
	took = time.Since(kill)
	if !gone {
		t.Errorf("node 3 after kill -9: still listed %v later (nodes %q, sessions %+v), want gone within %v",
			took.Round(time.Millisecond), gws[0].nodeIDs(), gws[1].clusterSessions(), clusterGoneWithin)
	}
	t.Logf("node 3 killed with SIGKILL: out of the lists after %v", took.Round(time.Millisecond))
	if got := nodeOfUser(gws[0].clusterSessions()); got["alice"] != ids[0] || got["bob"] != ids[1] {
		t.Errorf("sessions through node 1 after node 3's death: got %v, want alice on %s and bob on %s", got, ids[0], ids[1])
	}
	c3.Close()

	// Restarted on its working directory, node 3 comes back, same id.
	select {
	case <-g3.done:
	case <-time.After(killPortFreeWithin):
		t.Fatalf("node 3 not reaped %v after kill -9", time.Since(kill))
	}
	g3.start()
	g3.waitReady()
	if g3.nodeID() != ids[2] {
		t.Errorf("node 3's id after the restart: got %q, want %q", g3.nodeID(), ids[2])
	}
	if !waitFor(clusterListWithin, 100*time.Millisecond, func() bool { return len(gws[0].nodeIDs()) == 3 }) {
		t.Errorf("nodes through node 1 after node 3's restart: got %q, want 3", gws[0].nodeIDs())
	}
}
