package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// TestGatewayPostgresLost stops the PostgreSQL server under a running
// gateway: new logins are refused with a log line that says why, the open
// session goes on reading and writing, and logins work again by
// themselves once the server is back.
func TestGatewayPostgresLost(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgresT(t) // its own server: this test stops it
	g := startGateway(t, gwOptions{database: pg.NewDatabase(t)})
	alice := g.addUser("alice", personalWS)
	sc := g.mustSFTP("alice", alice)
	writeFile := func(name, content string) error {
		f, err := sc.Create("/" + personalWS + "/" + name)
		if err != nil {
			return err
		}
		if _, err := io.WriteString(f, content); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	if err := writeFile("before.txt", "before"); err != nil {
		t.Fatalf("write before the outage: %v", err)
	}

	pg.Stop()
	stopped := time.Now()
	if c, err := g.login("alice", alice); err == nil {
		c.Close()
		t.Fatalf("login with the database stopped: got success, want refused")
	}
	t.Logf("login refused %v after the database stopped", time.Since(stopped).Round(time.Millisecond))
	// The open session goes on.
	if err := writeFile("during.txt", "during the outage"); err != nil {
		t.Errorf("write in the open session during the outage: %v", err)
	}
	if b, err := readRemote(sc, "/"+personalWS+"/before.txt"); err != nil || string(b) != "before" {
		t.Errorf("read in the open session during the outage: got %q, %v, want \"before\"", b, err)
	}
	var refusal string
	for _, l := range strings.Split(g.logs(), "\n") {
		if strings.Contains(l, "msg=login") && strings.Contains(l, "result=refused") {
			refusal = l
		}
	}
	if !strings.Contains(refusal, "identity store postgres 127.0.0.1:") || !strings.Contains(refusal, "connection") {
		t.Errorf("log of the refused login: got %q, want a line saying the database could not be reached", refusal)
	}

	if err := pg.Start(); err != nil {
		t.Fatalf("start PostgreSQL again: %v", err)
	}
	restarted := time.Now()
	var lastErr error
	ok := waitFor(30*time.Second, 200*time.Millisecond, func() bool {
		c, err := g.login("alice", alice)
		if err != nil {
			lastErr = err
			return false
		}
		c.Close()
		return true
	})
	if !ok {
		t.Fatalf("no login within 30 s of the database's return: %v", lastErr)
	}
	t.Logf("logins recovered %v after the database restarted", time.Since(restarted).Round(time.Millisecond))
	sc2 := g.mustSFTP("alice", alice)
	if b, err := readRemote(sc2, "/"+personalWS+"/during.txt"); err != nil || string(b) != "during the outage" {
		t.Errorf("new session reads the file written during the outage: got %q, %v", b, err)
	}
}

// readRemote reads a whole remote file.
func readRemote(sc *sftp.Client, name string) ([]byte, error) {
	f, err := sc.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// TestServePostgresUnreachable: serve with a database it cannot use exits
// non-zero at once with one line naming the server and the cause, and no
// password.
func TestServePostgresUnreachable(t *testing.T) {
	t.Parallel()
	pg := postgresServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	good := fmt.Sprintf("%s:%d", pg.Host, pg.Port)
	const pw = "n0t-the-pa55word"
	for _, tt := range []struct {
		name, url, server, cause string
	}{
		{"refused", "postgres://postgres:" + pw + "@" + closed + "/postgres?sslmode=disable", closed, "connection refused"},
		{"authentication", "postgres://postgres:" + pw + "@" + good + "/postgres?sslmode=disable", good, "authentication failed"},
		{"tls", strings.Replace(pg.URL("postgres"), "sslmode=disable", "sslmode=require", 1), good, "TLS failed"},
		{"dns", "postgres://postgres:" + pw + "@no-such-host.invalid:5432/postgres?sslmode=disable", "no-such-host.invalid:5432", "DNS lookup failed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			key := filepath.Join(dir, "id_ed25519")
			runCommand(t, "", nil, "ssh-keygen", "-t", "ed25519", "-f", key, "-N", "", "-q")
			port, err := testenv.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			section := map[string]any{
				"enabled": true, "hostKeyFile": key, "port": port, "bind": "127.0.0.1",
				"mountRoot": filepath.Join(dir, "mounts"), "tmpDir": filepath.Join(dir, "tmp"),
				"database": tt.url,
			}
			data, _ := json.Marshal(map[string]any{"services": map[string]any{"pydio.gateway.sftp": section}})
			work := filepath.Join(dir, "work")
			if err := os.MkdirAll(work, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(work, "pydio.json"), data, 0o600); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			r := runSftpgate(t, "--workdir", work, "serve")
			if r.code == 0 {
				t.Fatalf("serve: got exit 0, want a failure")
			}
			var lines []string
			for _, l := range strings.Split(r.stderr, "\n") {
				if strings.Contains(l, "identity store") {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 || !strings.Contains(lines[0], "postgres "+tt.server+": "+tt.cause) {
				t.Errorf("got stderr %q, want one line naming %s and %q", r.stderr, tt.server, tt.cause)
			}
			if strings.Contains(r.stdout+r.stderr, pw) || strings.Contains(r.stdout+r.stderr, pg.Password) {
				t.Errorf("output shows a password: %q", r.stderr)
			}
			t.Logf("exit %d after %v: %s", r.code, time.Since(start).Round(time.Millisecond), strings.Join(lines, ""))
		})
	}
}

// TestGatewayPostgresTwoNodes runs two gateways on one PostgreSQL
// database: failed logins through both lock the pair out on both, other
// users still log in, and a token revoked with one node's CLI is refused
// at the next login on the other.
func TestGatewayPostgresTwoNodes(t *testing.T) {
	t.Parallel()
	a := startGateway(t, gwOptions{database: storePostgres})
	b := startGateway(t, gwOptions{peer: a})
	erin := a.addUser("erin", personalWS)
	frank := a.addUser("frank", personalWS)
	nodes := []*gateway{a, b}
	for i := range 5 { // auth.DefaultMaxFailures
		wrong := randomToken(t)
		a.secret(wrong)
		b.secret(wrong)
		if c, err := nodes[i%2].login("erin", wrong); err == nil {
			c.Close()
			t.Fatalf("failure %d: wrong token accepted", i+1)
		}
	}
	for i, g := range nodes {
		if c, err := g.login("erin", erin); err == nil {
			c.Close()
			t.Errorf("node %d after 5 failures over both nodes: got erin's right token accepted, want refused", i)
		}
		c, err := g.login("frank", frank)
		if err != nil {
			t.Errorf("node %d: frank while erin is locked out: got %v, want success", i, err)
			continue
		}
		c.Close()
	}
	if !strings.Contains(b.logs(), "reason=rate-limited") {
		t.Errorf("node b's log: no rate-limited refusal")
	}

	// Revoked on a's CLI, refused at the next login on b.
	b.secret(frank)
	_, rows := tableRows(t, a.mustCLI("admin", "token", "list", "-u", "frank").stdout)
	if len(rows) != 1 {
		t.Fatalf("got %d tokens of frank, want 1", len(rows))
	}
	a.mustCLI("admin", "token", "revoke", rows[0][0])
	if c, err := b.login("frank", frank); err == nil {
		c.Close()
		t.Errorf("node b after the revoke on a's CLI: got frank's token accepted, want refused")
	}
	if !strings.Contains(b.logs(), "reason=revoked") {
		t.Errorf("node b's log: no revoked refusal")
	}
}
