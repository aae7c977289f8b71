package daemon

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/fusefs"
	"github.com/sftpgate/sftpgate/internal/control"
	"github.com/sftpgate/sftpgate/sftpd"
)

// lockedSessions is a sessionAdmin safe for the cluster loop's goroutine.
type lockedSessions struct {
	mu     sync.Mutex
	list   []sftpd.SessionInfo
	killed []string
}

func (f *lockedSessions) Sessions() []sftpd.SessionInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sftpd.SessionInfo(nil), f.list...)
}

func (f *lockedSessions) Kill(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, s := range f.list {
		if s.ID == id {
			f.killed = append(f.killed, id)
			f.list = append(f.list[:i], f.list[i+1:]...)
			return nil
		}
	}
	return sftpd.ErrNoSession
}

// testClusterStore opens the store of a test cluster (SQLite: the nodes
// of the tests share one process), closed at cleanup.
func testClusterStore(t *testing.T) *auth.Store {
	t.Helper()
	st, err := auth.Open(filepath.Join(t.TempDir(), "sftpgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// killedIDs returns the ids killed so far, comma-separated.
func (f *lockedSessions) killedIDs() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.killed, ",")
}

// testNode starts a node of the cluster of st, with the sessions ss and
// one view of user; its loop is stopped at cleanup unless stopped before.
func testNode(t *testing.T, st *auth.Store, ss []sftpd.SessionInfo, user string) (*daemonControl, *lockedSessions) {
	t.Helper()
	return testNodeClock(t, st, ss, user, time.Now)
}

// testNodeClock is testNode for a node whose own clock is now.
func testNodeClock(t *testing.T, st *auth.Store, ss []sftpd.SessionInfo, user string, now func() time.Time) (*daemonControl, *lockedSessions) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	views := newFakeViews()
	views.stats = []fusefs.ViewStats{{User: user, Dir: "/mnt/" + user}}
	sess := &lockedSessions{list: ss}
	holds := newAdminMounts(views, log)
	t.Cleanup(holds.close)
	dc := &daemonControl{sessions: sess, views: views, users: fakeUsers{}, holds: holds, log: log}
	node, err := newClusterNode(t.TempDir(), st, "127.0.0.1:2022", dc, log)
	if err != nil {
		t.Fatal(err)
	}
	node.now = now
	dc.node = node
	node.start(context.Background())
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			node.stop()
		}
	})
	return dc, sess
}

// TestClusterControl runs two nodes on one store in this process: each
// lists both nodes' sessions and views, a kill on one reaches the other,
// an unknown id is refused as without a cluster, a node that stops leaves
// the lists at once, and a kill for a node that does not answer fails
// after killWait.
func TestClusterControl(t *testing.T) {
	ctx := context.Background()
	st := testClusterStore(t)
	since := time.Now().Add(-time.Minute)
	a, _ := testNode(t, st, []sftpd.SessionInfo{{ID: "aa-1", User: "alice", Since: since}}, "alice")
	b, bSess := testNode(t, st, []sftpd.SessionInfo{{ID: "bb-1", User: "bob", Since: since.Add(time.Second)}}, "bob")
	aID, bID := a.node.self.ID, b.node.self.ID
	if aID == bID {
		t.Fatalf("two nodes with the id %q", aID)
	}

	for _, dc := range []*daemonControl{a, b} {
		r := dc.handle(ctx, control.Request{Op: control.OpSessions})
		if !r.Cluster || len(r.Sessions) != 2 || r.Sessions[0].ID != "aa-1" || r.Sessions[0].Node != aID ||
			r.Sessions[1].ID != "bb-1" || r.Sessions[1].Node != bID || r.Warning != "" {
			t.Errorf("sessions through %s: got %+v", dc.node.self.ID, r)
		}
		m := dc.handle(ctx, control.Request{Op: control.OpMounts})
		if !m.Cluster || len(m.Mounts) != 2 {
			t.Errorf("mounts through %s: got %+v, want the views of both nodes", dc.node.self.ID, m)
		}
		n := dc.handle(ctx, control.Request{Op: control.OpNodes})
		if len(n.Nodes) != 2 || n.Nodes[0].Sessions != 1 || n.Nodes[1].Mounts != 1 {
			t.Errorf("nodes through %s: got %+v", dc.node.self.ID, n)
		}
	}

	start := time.Now()
	r := a.handle(ctx, control.Request{Op: control.OpKill, ID: "bb-1"})
	took := time.Since(start)
	if r.Error != "" || r.Message != "closed on node "+bID {
		t.Errorf("kill of b's session through a: got %+v", r)
	}
	if took > 2*time.Second {
		t.Errorf("kill through another node took %v, want at most 2s", took)
	}
	if killed := bSess.killedIDs(); killed != "bb-1" {
		t.Errorf("b's kills: got %q, want bb-1", killed)
	}
	// The node published its list again at once.
	if r := a.handle(ctx, control.Request{Op: control.OpSessions}); len(r.Sessions) != 1 {
		t.Errorf("sessions after the kill: got %+v, want a's alone", r.Sessions)
	}
	for _, id := range []string{"zz-9", "bb-1"} {
		if r := a.handle(ctx, control.Request{Op: control.OpKill, ID: id}); r.Reason != control.ReasonNoSession || r.Error != `kill: no session "`+id+`"` {
			t.Errorf("kill %s: got %+v, want the no-session refusal", id, r)
		}
	}

	// A node that stops cleanly leaves at once.
	b.node.stop()
	if r := a.handle(ctx, control.Request{Op: control.OpNodes}); len(r.Nodes) != 1 || r.Nodes[0].ID != aID || !r.Nodes[0].Self {
		t.Errorf("nodes after b stopped: got %+v, want a alone", r.Nodes)
	}

	// A node registered but not running its commands: the kill gives up.
	if err := st.Heartbeat(ctx, auth.Node{ID: "silent", Started: time.Now(), Sessions: []byte(`[{"id":"ss-1","user":"sam"}]`)}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	r = a.handle(ctx, control.Request{Op: control.OpKill, ID: "ss-1"})
	if r.Reason != control.ReasonNodeGone || !strings.Contains(r.Error, "silent") {
		t.Errorf("kill on a silent node: got %+v, want refused with node-gone", r)
	}
	if took := time.Since(start); took < killWait || took > killWait+3*time.Second {
		t.Errorf("kill on a silent node gave up after %v, want about %v", took, killWait)
	}
}

// TestClusterSkewedClocks runs two nodes whose own clocks are an hour
// apart (each an hour off the database's, one each way): each lists the
// other, whose heartbeat is the database's time; the sweeps of either
// delete neither; a kill through one reaches the other.
func TestClusterSkewedClocks(t *testing.T) {
	ctx := context.Background()
	st := testClusterStore(t)
	behind := func() time.Time { return time.Now().Add(-time.Hour) }
	ahead := func() time.Time { return time.Now().Add(time.Hour) }
	a, _ := testNodeClock(t, st, []sftpd.SessionInfo{{ID: "aa-1", User: "alice", Since: behind()}}, "alice", behind)
	b, bSess := testNodeClock(t, st, []sftpd.SessionInfo{{ID: "bb-1", User: "bob", Since: ahead()}}, "bob", ahead)
	a.node.sweep(ctx)
	b.node.sweep(ctx)
	for _, dc := range []*daemonControl{a, b} {
		r := dc.handle(ctx, control.Request{Op: control.OpNodes})
		if len(r.Nodes) != 2 {
			t.Fatalf("nodes through %s: got %+v, want both", dc.node.self.ID, r.Nodes)
		}
		for _, n := range r.Nodes {
			if d := time.Since(n.Heartbeat); d < -2*time.Second || d > 5*time.Second {
				t.Errorf("nodes through %s: heartbeat of %s %v off the database's clock, want within a few seconds", dc.node.self.ID, n.ID, d)
			}
		}
		if r := dc.handle(ctx, control.Request{Op: control.OpSessions}); len(r.Sessions) != 2 {
			t.Errorf("sessions through %s: got %+v, want both nodes'", dc.node.self.ID, r.Sessions)
		}
	}
	if r := a.handle(ctx, control.Request{Op: control.OpKill, ID: "bb-1"}); r.Error != "" || r.Message != "closed on node "+b.node.self.ID {
		t.Errorf("kill through a of b's session: got %+v", r)
	}
	if killed := bSess.killedIDs(); killed != "bb-1" {
		t.Errorf("b's kills: got %q, want bb-1", killed)
	}
}

// TestClusterKillAmbiguous: a session id that two nodes hold is refused,
// nothing killed, with a message naming both nodes; naming the node
// (Request.Node) kills the one asked for, on this node or another; an
// unknown node is refused.
func TestClusterKillAmbiguous(t *testing.T) {
	ctx := context.Background()
	st := testClusterStore(t)
	since := time.Now().Add(-time.Minute)
	a, aSess := testNode(t, st, []sftpd.SessionInfo{{ID: "dup-1", User: "alice", Since: since}, {ID: "dup-2", User: "alice", Since: since}}, "alice")
	b, bSess := testNode(t, st, []sftpd.SessionInfo{{ID: "dup-1", User: "bob", Since: since}, {ID: "dup-2", User: "bob", Since: since}}, "bob")
	aID, bID := a.node.self.ID, b.node.self.ID

	for _, dc := range []*daemonControl{a, b} {
		r := dc.handle(ctx, control.Request{Op: control.OpKill, ID: "dup-1"})
		if r.Reason != control.ReasonAmbiguous || !strings.Contains(r.Error, aID) || !strings.Contains(r.Error, bID) ||
			!strings.Contains(r.Error, "--node") {
			t.Errorf("kill dup-1 through %s: got %+v, want refused as ambiguous, naming %s and %s", dc.node.self.ID, r, aID, bID)
		}
	}
	if ka, kb := aSess.killedIDs(), bSess.killedIDs(); ka != "" || kb != "" {
		t.Fatalf("after the refused kills: got kills %q on a and %q on b, want none", ka, kb)
	}

	// Named: b's through a, then a's own through a.
	if r := a.handle(ctx, control.Request{Op: control.OpKill, ID: "dup-1", Node: bID}); r.Error != "" || r.Message != "closed on node "+bID {
		t.Errorf("kill dup-1 on node b through a: got %+v", r)
	}
	if r := a.handle(ctx, control.Request{Op: control.OpKill, ID: "dup-2", Node: aID}); r.Error != "" {
		t.Errorf("kill dup-2 on node a through a: got %+v", r)
	}
	if ka, kb := aSess.killedIDs(), bSess.killedIDs(); ka != "dup-2" || kb != "dup-1" {
		t.Errorf("kills: got %q on a and %q on b, want dup-2 and dup-1", ka, kb)
	}
	// Each id is now held by one node: no name needed.
	if r := b.handle(ctx, control.Request{Op: control.OpKill, ID: "dup-1"}); r.Error != "" || r.Message != "closed on node "+aID {
		t.Errorf("kill dup-1 through b, a alone holding it: got %+v", r)
	}
	if r := a.handle(ctx, control.Request{Op: control.OpKill, ID: "zz-1", Node: "nowhere"}); r.Error == "" || !strings.Contains(r.Error, `no live node "nowhere"`) {
		t.Errorf("kill on an unknown node: got %+v, want refused", r)
	}
	if r := a.handle(ctx, control.Request{Op: control.OpKill, ID: "zz-1", Node: bID}); r.Reason != control.ReasonNoSession {
		t.Errorf("kill on node b of an id it does not hold: got %+v, want no-session", r)
	}
	// Without a cluster (SQLite), a node cannot be named.
	alone := &daemonControl{sessions: &lockedSessions{list: []sftpd.SessionInfo{{ID: "dup-1"}}}, log: slog.New(slog.DiscardHandler)}
	if r := alone.handle(ctx, control.Request{Op: control.OpKill, ID: "dup-1", Node: "n1"}); !strings.Contains(r.Error, "not part of a cluster") {
		t.Errorf("kill naming a node without a cluster: got %+v, want refused", r)
	}
}

// TestLoadNodeID: generated once, kept, the admin's to set, checked.
func TestLoadNodeID(t *testing.T) {
	dir := t.TempDir()
	id, err := loadNodeID(dir)
	if err != nil || auth.ValidNodeID(id) != nil || len(id) != 12 {
		t.Fatalf("first id: got %q, %v; want 12 hex digits", id, err)
	}
	fi, err := os.Stat(filepath.Join(dir, NodeIDFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("node id file: got %v, %v; want mode 0600", fi, err)
	}
	if again, err := loadNodeID(dir); err != nil || again != id {
		t.Errorf("second load: got %q, %v; want %q", again, err, id)
	}
	if err := os.WriteFile(filepath.Join(dir, NodeIDFile), []byte("gw-paris-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := loadNodeID(dir); err != nil || got != "gw-paris-1" {
		t.Errorf("id set by the admin: got %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(dir, NodeIDFile), []byte("no spaces\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadNodeID(dir); !errors.Is(err, auth.ErrInvalid) || !strings.Contains(err.Error(), NodeIDFile) {
		t.Errorf("bad id: got %v, want ErrInvalid naming the file", err)
	}
}

// TestPublishDocBounded: a node publishes at most maxPublishedRows rows,
// and fewer when they would not fit in auth.MaxNodeDoc.
func TestPublishDocBounded(t *testing.T) {
	rows := make([]control.SessionRow, maxPublishedRows+5)
	doc, err := publishDoc(rows)
	if err != nil || countRows(doc) != maxPublishedRows {
		t.Errorf("%d small rows: got %d published, %v; want %d", len(rows), countRows(doc), err, maxPublishedRows)
	}
	long := strings.Repeat("x", 4096)
	for i := range rows {
		rows[i].Op = long
	}
	doc, err = publishDoc(rows)
	if err != nil || len(doc) > auth.MaxNodeDoc || countRows(doc) < 500 {
		t.Errorf("rows of 4 KiB: got %d bytes, %d rows, %v; want at most %d bytes and some hundreds of rows", len(doc), countRows(doc), err, auth.MaxNodeDoc)
	}
	if doc, _ := publishDoc[control.MountRow](nil); string(doc) != "[]" {
		t.Errorf("no rows: got %q, want []", doc)
	}
}
