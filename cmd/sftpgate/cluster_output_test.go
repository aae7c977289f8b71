package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/internal/control"
)

// TestClusterCommandsOutput checks the words of sessions, mounts, kill and
// nodes when the daemon answers for a cluster: a NODE column first, a
// node field in JSON, the daemon's warning on stderr.
func TestClusterCommandsOutput(t *testing.T) {
	since := time.Now().Add(-time.Minute)
	dir := t.TempDir()
	fakeDaemon(t, dir, func(req control.Request) control.Response {
		switch req.Op {
		case control.OpMounts:
			return control.Response{Cluster: true, Mounts: []control.MountRow{
				{Node: "n1", User: "bob", Path: "/mnt/bob", Mode: "rw", Since: since},
				{Node: "n3", User: "carol", Path: "/mnt/carol", Mode: "rw", Since: since}}}
		case control.OpSessions:
			return control.Response{Cluster: true, Warning: "only node n1 is listed", Sessions: []control.SessionRow{
				{Node: "n3", ID: "ab12-1", User: "carol", Remote: "127.0.0.1:5555", Since: since}}}
		case control.OpKill:
			if req.Node == "n9" {
				return control.Response{Error: "kill: no live node \"n9\" in the cluster (see sftpgate nodes)"}
			}
			if req.Node == "" && req.ID == "dd-1" {
				return control.Response{Reason: control.ReasonAmbiguous, Error: "kill: session id \"dd-1\" is held by 2 nodes (n1, n3): nothing killed; name the node: sftpgate sessions kill --node NODE dd-1"}
			}
			return control.Response{Message: "closed on node n3"}
		case control.OpNodes:
			return control.Response{Cluster: true, Nodes: []control.NodeRow{
				{ID: "n1", Host: "h1", Addr: "127.0.0.1:2022", Started: since, Heartbeat: since, Sessions: 0, Mounts: 1, Self: true},
				{ID: "n3", Host: "h3", Addr: "127.0.0.1:2024", Started: since, Heartbeat: since, Sessions: 1, Mounts: 1}}}
		}
		return control.Response{Error: "unexpected " + req.Op}
	})

	code, stdout, stderr := runCLI(t, "--workdir", dir, "sessions")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "NODE  ID ") || !strings.HasPrefix(lines[1], "n3    ab12-1 ") {
		t.Errorf("sessions: got exit %d, %q, want a NODE column first and n3's session", code, stdout)
	}
	if stderr != "warning: only node n1 is listed\n" {
		t.Errorf("sessions: got stderr %q, want the daemon's warning", stderr)
	}
	code, stdout, _ = runCLI(t, "--workdir", dir, "sessions", "--json")
	var srows []map[string]any
	if err := json.Unmarshal([]byte(stdout), &srows); code != 0 || err != nil || len(srows) != 1 || srows[0]["node"] != "n3" {
		t.Errorf("sessions --json: got exit %d, %v, %v, want one row with node n3", code, err, srows)
	}
	code, stdout, _ = runCLI(t, "--workdir", dir, "mounts")
	if lines := strings.Split(strings.TrimSpace(stdout), "\n"); code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "NODE  USER ") ||
		!strings.HasPrefix(lines[1], "n1    bob ") || !strings.HasPrefix(lines[2], "n3    carol ") {
		t.Errorf("mounts: got exit %d, %q, want a NODE column and two rows", code, stdout)
	}
	code, stdout, _ = runCLI(t, "--workdir", dir, "mounts", "--json")
	var mrows []control.MountRow
	if err := json.Unmarshal([]byte(stdout), &mrows); code != 0 || err != nil || len(mrows) != 2 || mrows[1].Node != "n3" {
		t.Errorf("mounts --json: got exit %d, %v, %+v", code, err, mrows)
	}
	code, stdout, _ = runCLI(t, "--workdir", dir, "sessions", "kill", "ab12-1")
	if code != 0 || stdout != "session ab12-1 closed on node n3\n" {
		t.Errorf("sessions kill: got exit %d, %q", code, stdout)
	}
	// An id two nodes hold is refused with the daemon's words; --node
	// names the node.
	code, _, stderr = runCLI(t, "--workdir", dir, "sessions", "kill", "dd-1")
	if want := "sftpgate: kill: session id \"dd-1\" is held by 2 nodes (n1, n3): nothing killed; name the node: sftpgate sessions kill --node NODE dd-1\n"; code != exitFailure || stderr != want {
		t.Errorf("sessions kill of an ambiguous id: got exit %d, stderr %q, want %d and %q", code, stderr, exitFailure, want)
	}
	code, stdout, _ = runCLI(t, "--workdir", dir, "sessions", "kill", "--node", "n3", "dd-1")
	if code != 0 || stdout != "session dd-1 closed on node n3\n" {
		t.Errorf("sessions kill --node n3: got exit %d, %q", code, stdout)
	}
	code, _, stderr = runCLI(t, "--workdir", dir, "sessions", "kill", "--node", "n9", "dd-1")
	if code != exitFailure || !strings.Contains(stderr, `no live node "n9"`) {
		t.Errorf("sessions kill --node n9: got exit %d, stderr %q, want the daemon's refusal", code, stderr)
	}
	code, stdout, _ = runCLI(t, "--workdir", dir, "nodes")
	if lines := strings.Split(strings.TrimSpace(stdout), "\n"); code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "NODE ") ||
		!strings.HasPrefix(lines[1], "n1 (this node)  h1 ") || !strings.Contains(lines[2], "127.0.0.1:2024") {
		t.Errorf("nodes: got exit %d, %q", code, stdout)
	}
}
