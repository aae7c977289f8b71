package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// Three `sftpgate serve` nodes on one MinIO and one PostgreSQL behind
// HAProxy (TCP, send-proxy-v2): sessions spread over the nodes, a token
// revoked or an address locked out on every node, changes through one
// node seen through another, and a node killed in the middle of uploads.

// Bounds and knobs of the three-node tests.
const (
	// coherenceBound is how long a change through one node may take to
	// be seen through another: the attribute TTL (1 s) with a margin for
	// a busy machine. The lag measured is logged.
	coherenceBound = 3 * time.Second
	// clusterSessionsEnv sets the number of sessions of the spread test
	// (30 by default).
	clusterSessionsEnv = "SFTPGATE_CLUSTER_SESSIONS"
	// clusterKillMiBEnv sets the size in MiB of each file being uploaded
	// when a node is killed (16 by default: two 5 MiB parts staged when
	// the node is killed, and more to send).
	clusterKillMiBEnv = "SFTPGATE_CLUSTER_KILL_MIB"
)

// TestGatewayCluster3 runs three nodes (same host key, same buckets, one
// PostgreSQL identity store) behind HAProxy and checks, through the
// balancer and node by node, what a cluster must do with no feature
// beyond the shared store and the PROXY protocol. Its subtests run in
// order on the same cluster.
func TestGatewayCluster3(t *testing.T) {
	t.Parallel()
	sessions, err := envIntRange(clusterSessionsEnv, 30, 3, 300)
	if err != nil {
		t.Fatal(err)
	}
	killMiB, err := envIntRange(clusterKillMiBEnv, 16, 2, 1024)
	if err != nil {
		t.Fatal(err)
	}
	gws := startGateways(t, 3, gwOptions{
		proxyProtocol: "required",
		database:      storePostgres,
		maxSessions:   sessions + 10,
		metrics:       true,
		keys:          map[string]any{"uploadPartSize": "5MiB"},
	})
	lb := balance(t, gws...)

	t.Run("sessions spread over the nodes", func(t *testing.T) { testClusterSpread(t, gws, lb, sessions) })
	t.Run("token revoked on one node", func(t *testing.T) { testClusterRevoke(t, gws, lb) })
	t.Run("address locked out on every node", func(t *testing.T) { testClusterLockout(t, gws, lb) })
	t.Run("coherence between nodes", func(t *testing.T) { testClusterCoherence(t, gws) })
	t.Run("node killed during uploads", func(t *testing.T) { testClusterKill(t, gws, lb, int64(killMiB)*mib) })
}

// sessionsByNode returns, for each node, the client addresses (host:port)
// of the sessions it holds: the rows of its `sessions --json` that name it
// (a node lists the whole cluster's); a nil gateway is skipped.
func sessionsByNode(gws []*gateway) []map[string]bool {
	out := make([]map[string]bool, len(gws))
	for i, g := range gws {
		out[i] = map[string]bool{}
		if g == nil {
			continue
		}
		id := g.nodeID()
		for _, r := range g.clusterSessions() {
			if r.Node == id {
				out[i][r.Remote] = true
			}
		}
	}
	return out
}

// nodeHolding is the index of the node whose sessions include the client
// address remote, or -1.
func nodeHolding(sessions []map[string]bool, remote string) int {
	for i, s := range sessions {
		if s[remote] {
			return i
		}
	}
	return -1
}

// viaSession is an SFTP session opened through the balancer, with the
// client address the nodes see for it.
type viaSession struct {
	ssh    *ssh.Client
	sftp   *sftp.Client
	remote string // the client's end of the TCP connection, host:port
}

// close ends the session.
func (s *viaSession) close() {
	s.sftp.Close()
	s.ssh.Close()
}

// openVia logs in through the balancer at addr from local and starts an
// SFTP session; cleanup closes it.
func openVia(t testing.TB, g *gateway, addr, local, user, token string) (*viaSession, error) {
	g.secret(token)
	c, err := g.dialFrom(addr, local, user, ssh.Password(token))
	if err != nil {
		return nil, err
	}
	sc, err := newSFTPClient(c)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("sftp session: %w", err)
	}
	s := &viaSession{ssh: c, sftp: sc, remote: c.LocalAddr().String()}
	t.Cleanup(s.close)
	return s, nil
}

// testClusterSpread opens n sessions through the balancer (three users),
// checks that every node holds some, uploads a file through each session
// and reads it back through another session of the same user (most often
// held by another node), hashes checked, and checks the objects.
func testClusterSpread(t *testing.T, gws []*gateway, lb *testenv.HAProxy, n int) {
	const users = 3
	const size = 512 * kib
	tokens := make([]string, users)
	for u := range users {
		tokens[u] = gws[0].addUser(fmt.Sprintf("spread%d", u), personalWS)
	}
	// Consecutive logins go to the nodes in turn (leastconn): the users
	// change every `users` logins so that each has sessions on each node.
	userOf := func(i int) int { return (i / users) % users }
	ss := make([]*viaSession, n)
	start := time.Now()
	for i := range n {
		s, err := openVia(t, gws[0], lb.Addr, "127.0.0.6", fmt.Sprintf("spread%d", userOf(i)), tokens[userOf(i)])
		if err != nil {
			t.Fatalf("login %d through the balancer: %v", i+1, err)
		}
		ss[i] = s
	}
	t.Logf("%d logins through HAProxy in %v", n, time.Since(start).Round(time.Millisecond))
	defer func() {
		for _, s := range ss {
			s.close()
		}
	}()

	at := sessionsByNode(gws)
	perNode := make([]int, len(gws))
	nodeOfSession := make([]int, n)
	for i, s := range ss {
		nodeOfSession[i] = nodeHolding(at, s.remote)
		if nodeOfSession[i] < 0 {
			t.Errorf("session %d (%s): listed by no node's `sessions`", i+1, s.remote)
			continue
		}
		perNode[nodeOfSession[i]]++
	}
	t.Logf("sessions per node: %v", perNode)
	for i, c := range perNode {
		if c == 0 {
			t.Errorf("node %d: no session of the %d, want some (leastconn)", i+1, n)
		}
		if len(at[i]) != c {
			t.Errorf("node %d: `sessions` lists %d, of which %d are this test's: want only the test's", i+1, len(at[i]), c)
		}
	}

	path := func(i int) string { return fmt.Sprintf("/%s/s%03d.bin", personalWS, i) }
	seed := func(i int) uint64 { return uint64(3000 + i) }
	errs := make([]error, n)
	var wg sync.WaitGroup
	start = time.Now()
	for i, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := s.sftp.Create(path(i))
			if err != nil {
				errs[i] = err
				return
			}
			if _, err := f.ReadFromWithConcurrency(prng(seed(i), size), 16); err != nil {
				f.Close()
				errs[i] = fmt.Errorf("write: %w", err)
				return
			}
			errs[i] = f.Close()
		}()
	}
	wg.Wait()
	t.Logf("%d uploads of %d KiB at once: %v", n, size/kib, time.Since(start).Round(time.Millisecond))
	for i, err := range errs {
		if err != nil {
			t.Fatalf("session %d: upload %s: %v", i+1, path(i), err)
		}
	}

	// Each file is read through another session of the same user, on
	// another node when the user has one there.
	reader := make([]int, n)
	for i := range n {
		reader[i] = -1
		for d := 1; d < n; d++ {
			k := (i + d) % n
			if userOf(k) != userOf(i) {
				continue
			}
			if reader[i] < 0 {
				reader[i] = k
			}
			if nodeOfSession[k] != nodeOfSession[i] {
				reader[i] = k
				break
			}
		}
		if reader[i] < 0 {
			reader[i] = i
		}
	}
	cross := 0
	lags := make([]time.Duration, n)
	var retried atomic.Int32
	start = time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j := reader[i]
			want := prngSum(seed(i), size)
			var sum string
			var got int64
			var err error
			t0 := time.Now()
			tries := 0
			ok := waitFor(coherenceBound, 50*time.Millisecond, func() bool {
				if tries++; tries == 2 {
					retried.Add(1)
				}
				var f *sftp.File
				if f, err = ss[j].sftp.Open(path(i)); err != nil {
					return false
				}
				defer f.Close()
				sum, got, err = sumOf(f)
				return err == nil && sum == want && got == size
			})
			if !ok {
				errs[i] = fmt.Errorf("read through session %d: got %d bytes sha256 %.12s, %v; want %d bytes %.12s",
					j+1, got, sum, err, size, want)
				return
			}
			errs[i], lags[i] = nil, time.Since(t0)
		}()
	}
	wg.Wait()
	t.Logf("%d downloads at once: %v", n, time.Since(start).Round(time.Millisecond))
	var maxLag time.Duration
	for i, err := range errs {
		if err != nil {
			t.Errorf("file of session %d: %v", i+1, err)
		}
		maxLag = max(maxLag, lags[i])
		if nodeOfSession[i] != nodeOfSession[reader[i]] {
			cross++
		}
	}
	t.Logf("%d of %d files read back through another node; %d needed more than one read; slowest read %v",
		cross, n, retried.Load(), maxLag.Round(time.Millisecond))
	if cross < n/2 {
		t.Errorf("files read through another node than the one that wrote them: got %d of %d, want at least half", cross, n)
	}
	for i := range n {
		user := fmt.Sprintf("spread%d", userOf(i))
		if sum, got, _ := objectSum(t, gws[0].minio, gws[0].personalBucket, personalKey(user, path(i)[len(personalWS)+2:])); got != size || sum != prngSum(seed(i), size) {
			t.Errorf("object of session %d: got %d bytes sha256 %.12s, want %d bytes", i+1, got, sum, size)
		}
	}
}

// testClusterRevoke logs in on every node, revokes the token with node
// 2's CLI and checks that every node, and the balancer, refuse it at the
// next login, each node logging why.
func testClusterRevoke(t *testing.T, gws []*gateway, lb *testenv.HAProxy) {
	tok := gws[0].addUser("dave", personalWS)
	for i, g := range gws {
		c, err := g.dialFrom(g.addr, "127.0.0.4", "dave", ssh.Password(tok))
		if err != nil {
			t.Fatalf("node %d: login before the revocation: %v", i+1, err)
		}
		c.Close()
	}
	gws[1].mustCLI("admin", "token", "revoke", tokenID(t, gws[1], "dave"))
	revoked := time.Now()
	for i, g := range gws {
		if c, err := g.dialFrom(g.addr, "127.0.0.4", "dave", ssh.Password(tok)); err == nil {
			c.Close()
			t.Errorf("node %d: login with the token revoked on node 2: got logged in, want refused", i+1)
		}
		if lines := g.logLines("msg=login", "user=dave", "result=refused", "reason=revoked"); len(lines) != 1 {
			t.Errorf("node %d: refusals of dave for revocation: got %q, want one", i+1, lines)
		}
	}
	for i := range 3 {
		if c, err := gws[0].dialFrom(lb.Addr, "127.0.0.5", "dave", ssh.Password(tok)); err == nil {
			c.Close()
			t.Errorf("login %d through the balancer with the revoked token: got logged in, want refused", i+1)
		}
	}
	t.Logf("revoked on node 2: refused on 3 nodes and 3 times through the balancer within %v", time.Since(revoked).Round(time.Millisecond))
}

// testClusterLockout sends 20 wrong tokens from 127.0.0.2 through the
// balancer (the nodes share them) and checks that every node then refuses
// 127.0.0.2, even a valid token, while 127.0.0.3 logs in through the
// balancer and on every node.
func testClusterLockout(t *testing.T, gws []*gateway, lb *testenv.HAProxy) {
	var wg sync.WaitGroup
	var accepted atomic.Int32
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				wrong := randomToken(t)
				gws[0].secret(wrong)
				c, err := gws[0].dialFrom(lb.Addr, "127.0.0.2", fmt.Sprintf("nobody%d", w*5+i), ssh.Password(wrong))
				if err == nil {
					c.Close()
					accepted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := accepted.Load(); n != 0 {
		t.Fatalf("wrong tokens: %d accepted, want none", n)
	}
	seen := make([]int, len(gws))
	total, nodes := 0, 0
	for i, g := range gws {
		seen[i] = len(g.logLines("msg=login", "result=refused", "remote=127.0.0.2:", "user=nobody"))
		total += seen[i]
		if seen[i] > 0 {
			nodes++
		}
	}
	t.Logf("wrong tokens from 127.0.0.2 refused per node: %v", seen)
	if total != 20 || nodes < 2 {
		t.Errorf("wrong tokens per node: got %v, want 20 over at least 2 nodes (no node alone saw enough to lock out)", seen)
	}

	carol := gws[0].addUser("carol", personalWS)
	for i, g := range gws {
		if c, err := g.dialFrom(g.addr, "127.0.0.2", "carol", ssh.Password(carol)); err == nil {
			c.Close()
			t.Errorf("node %d: carol from 127.0.0.2 after 20 failures from it: got logged in, want refused (address locked out)", i+1)
		}
		if lines := g.logLines("msg=login", "user=carol", "remote=127.0.0.2:", "result=refused"); len(lines) != 1 || !strings.Contains(lines[0], "rate") {
			t.Errorf("node %d: carol's refusal from 127.0.0.2: got %q, want one rate-limited refusal", i+1, lines)
		}
		c, err := g.dialFrom(g.addr, "127.0.0.3", "carol", ssh.Password(carol))
		if err != nil {
			t.Errorf("node %d: carol from 127.0.0.3 while 127.0.0.2 is locked out: got %v, want logged in", i+1, err)
		} else {
			c.Close()
		}
	}
	for i := range 3 {
		c, err := gws[0].dialFrom(lb.Addr, "127.0.0.3", "carol", ssh.Password(carol))
		if err != nil {
			t.Errorf("login %d of carol through the balancer from 127.0.0.3: got %v, want logged in", i+1, err)
			continue
		}
		c.Close()
	}
}

// testClusterCoherence makes changes through node 1 and waits, bounded by
// coherenceBound, for node 2 to show them (new file, overwrite, rename,
// delete), logging each lag; then a file node 2 has read (its pages
// cached) is overwritten through node 1 with the same size and must read
// as the new content on node 2 1.5 s later; last, an upload cut on node 1
// and sent whole through node 2 must read whole on node 1 (no node shows
// its cut copy once the object changed).
func testClusterCoherence(t *testing.T, gws []*gateway) {
	tok := gws[0].addUser("erin", personalWS)
	a := directSFTP(t, gws[0], "127.0.0.9", "erin", tok)
	b := directSFTP(t, gws[1], "127.0.0.9", "erin", tok)
	dir := "/" + personalWS + "/co"
	if err := a.Mkdir(dir); err != nil {
		t.Fatal(err)
	}
	lags := map[string]time.Duration{}
	// seen waits for cond on node 2 and records the lag of the change.
	seen := func(change string, cond func() (bool, string)) {
		t.Helper()
		start := time.Now()
		var state string
		ok := waitFor(coherenceBound, 20*time.Millisecond, func() bool {
			var done bool
			done, state = cond()
			return done
		})
		lags[change] = time.Since(start)
		if !ok {
			t.Errorf("%s through node 1: node 2 still shows %s after %v", change, state, coherenceBound)
		}
	}
	readsAs := func(p, want string) func() (bool, string) {
		return func() (bool, string) {
			got, err := readAll(b, p)
			if err != nil {
				return false, err.Error()
			}
			return got == want, fmt.Sprintf("%q", got)
		}
	}
	absent := func(p string) func() (bool, string) {
		return func() (bool, string) {
			_, err := b.Stat(p)
			if errors.Is(err, os.ErrNotExist) {
				return true, ""
			}
			return false, fmt.Sprintf("%s (stat: %v)", p, err)
		}
	}

	seen("mkdir", func() (bool, string) {
		fi, err := b.Stat(dir)
		return err == nil && fi.IsDir(), fmt.Sprint(err)
	})
	// Node 2 looks first, so that what it caches is the old state.
	if ok, _ := absent(dir + "/new.txt")(); !ok {
		t.Fatalf("new.txt exists before it was written")
	}
	writeFile(t, a, dir+"/new.txt", "first version")
	seen("new file", readsAs(dir+"/new.txt", "first version"))

	writeFile(t, a, dir+"/new.txt", "second version, longer than the first")
	seen("overwrite", readsAs(dir+"/new.txt", "second version, longer than the first"))

	if ok, _ := absent(dir + "/moved.txt")(); !ok {
		t.Fatalf("moved.txt exists before the rename")
	}
	if err := a.Rename(dir+"/new.txt", dir+"/moved.txt"); err != nil {
		t.Fatal(err)
	}
	seen("rename (new name)", readsAs(dir+"/moved.txt", "second version, longer than the first"))
	seen("rename (old name)", absent(dir+"/new.txt"))

	if err := a.Remove(dir + "/moved.txt"); err != nil {
		t.Fatal(err)
	}
	seen("delete", absent(dir+"/moved.txt"))
	names := []string{"mkdir", "new file", "overwrite", "rename (new name)", "rename (old name)", "delete"}
	var sb strings.Builder
	for _, n := range names {
		fmt.Fprintf(&sb, " %s %v;", n, lags[n].Round(time.Millisecond))
	}
	t.Logf("seen through node 2 after:%s", sb.String())

	// Stale pages: same size, new content.
	const size = 1 * mib
	same := dir + "/same.bin"
	uploadSFTP(t, a, same, 41, size)
	seen("same-size file", func() (bool, string) {
		sum, n := sumRemote(b, same)
		return sum == prngSum(41, size), fmt.Sprintf("%d bytes sha256 %.12s", n, sum)
	})
	uploadSFTP(t, a, same, 42, size)
	overwritten := time.Now()
	time.Sleep(1500 * time.Millisecond)
	if sum, n := sumRemote(b, same); sum != prngSum(42, size) || n != size {
		old := ""
		if sum == prngSum(41, size) {
			old = " (the old content: stale pages)"
		}
		t.Errorf("same-size overwrite through node 1, read on node 2 %v later: got %d bytes sha256 %.12s%s, want the new content %.12s",
			time.Since(overwritten).Round(time.Millisecond), n, sum, old, prngSum(42, size))
	}
	// And the other way round, through a handle node 2 opened before.
	f, err := b.Open(same)
	if err != nil {
		t.Fatal(err)
	}
	if sum, _, err := sumOf(f); err != nil || sum != prngSum(42, size) {
		t.Errorf("read on node 2 before the second overwrite: got sha256 %.12s, %v", sum, err)
	}
	f.Close()
	uploadSFTP(t, a, same, 43, size)
	time.Sleep(1500 * time.Millisecond)
	if sum, n := sumRemote(b, same); sum != prngSum(43, size) || n != size {
		t.Errorf("second same-size overwrite, read on node 2 1.5 s later: got %d bytes sha256 %.12s, want %.12s", n, sum, prngSum(43, size))
	}

	// An upload cut on node 1 (the client's connection reset) waits there
	// as an interrupted upload; the client sends the file again through
	// node 2. Node 1 must then show the object, not its partial copy.
	cut := dir + "/cut.bin"
	conn := rawDial(t, gws[0].addr, "127.0.0.10", dialTimeout).(*net.TCPConn)
	cl, err := gws[0].sshOn(conn, "erin", ssh.Password(tok))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	dsc := newSFTP(t, cl)
	df, err := dsc.Create(cut)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := df.Write(prngBytes(44, 256*kib)); err != nil {
		t.Fatal(err)
	}
	conn.SetLinger(0)
	conn.Close()
	if !waitFor(30*time.Second, 50*time.Millisecond, func() bool {
		return len(gws[0].logLines("interrupted upload kept for a resume", "key=erin/co/cut.bin")) > 0
	}) {
		t.Fatalf("node 1 did not keep the cut upload as an interrupted upload within 30 s")
	}
	uploadSFTP(t, b, cut, 44, size)
	var sum string
	var n int64
	start := time.Now()
	if !waitFor(coherenceBound, 50*time.Millisecond, func() bool {
		sum, n = sumRemote(a, cut)
		return sum == prngSum(44, size)
	}) {
		t.Errorf("file cut on node 1 then sent whole through node 2: node 1 shows %d bytes sha256 %.12s %v later, want the object's %d bytes",
			n, sum, time.Since(start).Round(time.Millisecond), size)
	}
}

// directSFTP logs in on node g itself (not through the balancer) from local,
// an address not in proxyTrusted (so no PROXY header is expected), and
// starts an SFTP session; cleanup closes it.
func directSFTP(t testing.TB, g *gateway, local, user, token string) *sftp.Client {
	t.Helper()
	g.secret(token)
	c, err := g.dialFrom(g.addr, local, user, ssh.Password(token))
	if err != nil {
		t.Fatalf("ssh login as %s on %s from %s: %v", user, g.addr, local, err)
	}
	t.Cleanup(func() { c.Close() })
	return newSFTP(t, c)
}

// sumRemote is the hex SHA-256 and length of a remote file, "" when it
// cannot be read.
func sumRemote(sc *sftp.Client, path string) (string, int64) {
	f, err := sc.Open(path)
	if err != nil {
		return "", 0
	}
	defer f.Close()
	sum, n, err := sumOf(f)
	if err != nil {
		return "", n
	}
	return sum, n
}

// objectWatch lists a bucket prefix over and over while a test runs and
// records every object that is not in one of the states allowed for its
// key: a partial object, or one that should not exist.
type objectWatch struct {
	m       *testenv.MinIO
	bucket  string
	prefix  string
	allowed map[string][]objectState // key → the states it may be in

	stop chan struct{}
	done chan struct{}
	bad  []string       // violations, each once
	sums map[string]int // ETag → 1 good, -1 bad
	runs int            // listings made
}

// watchObjects starts watching bucket/prefix.
func watchObjects(m *testenv.MinIO, bucket, prefix string, allowed map[string][]objectState) *objectWatch {
	w := &objectWatch{m: m, bucket: bucket, prefix: prefix, allowed: allowed,
		stop: make(chan struct{}), done: make(chan struct{}), sums: map[string]int{}}
	go w.run()
	return w
}

func (w *objectWatch) run() {
	defer close(w.done)
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-w.stop:
			w.check() // one last look
			return
		default:
		}
		w.check()
		time.Sleep(50 * time.Millisecond)
	}
}

// check lists the prefix once.
func (w *objectWatch) check() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w.runs++
	for o := range w.m.Client.ListObjects(ctx, w.bucket, minio.ListObjectsOptions{Prefix: w.prefix, Recursive: true}) {
		if o.Err != nil {
			w.report(fmt.Sprintf("list %s: %v", w.prefix, o.Err))
			return
		}
		if _, done := w.sums[o.ETag]; done {
			continue
		}
		states, known := w.allowed[o.Key]
		sized := false
		for _, s := range states {
			sized = sized || s.size == o.Size
		}
		if !known || !sized {
			w.sums[o.ETag] = -1
			w.report(fmt.Sprintf("%s: %d bytes, want one of %v", o.Key, o.Size, states))
			continue
		}
		data, err := w.m.Client.GetObject(ctx, w.bucket, o.Key, minio.GetObjectOptions{})
		if err != nil {
			continue // gone meanwhile: looked at again next time
		}
		sum, n, err := sumOf(data)
		data.Close()
		if err != nil {
			continue
		}
		st := objectState{exists: true, sum: sum, size: n}
		good := false
		for _, s := range states {
			good = good || s == st
		}
		if !good {
			w.sums[o.ETag] = -1
			w.report(fmt.Sprintf("%s: %v, want one of %v", o.Key, st, states))
			continue
		}
		w.sums[o.ETag] = 1
	}
}

func (w *objectWatch) report(s string) {
	for _, b := range w.bad {
		if b == s {
			return
		}
	}
	w.bad = append(w.bad, s)
}

// finish stops the watch and returns the violations and how many
// listings and object versions it looked at.
func (w *objectWatch) finish() (bad []string, listings, versions int) {
	close(w.stop)
	<-w.done
	return w.bad, w.runs, len(w.sums)
}

// sftpBatchVia runs OpenSSH sftp through addr (host:port, e.g. the
// balancer) with the batch (after `lcd dir`) as user, the token given to
// sshpass, and returns the output and exit code.
func (g *gateway) sftpBatchVia(t testing.TB, addr, user, token, dir, batch string) (string, int) {
	t.Helper()
	g.secret(token)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	bf := filepath.Join(t.TempDir(), "batch")
	if err := os.WriteFile(bf, []byte("lcd "+dir+"\n"+strings.TrimSpace(batch)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code, err := execCommand("", []string{"SSHPASS=" + token}, "sshpass", "-e",
		"sftp", "-o", "BatchMode=no", "-b", bf, "-P", port,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "PubkeyAuthentication=no", "-o", "LogLevel=ERROR",
		"-o", "ConnectTimeout=30", user+"@"+host)
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	return out, code
}

// killClient is one upload of the node-kill test.
type killClient struct {
	name   string // file name in the personal workspace
	seed   uint64
	from   int64 // where this upload starts: a published prefix for the appending one
	s      *viaSession
	node   int // the node holding the session
	sent   atomic.Int64
	err    error         // how the upload ended
	offset int64         // the size the client found when it resumed
	onto   int           // the node that served the resume
	ended  chan struct{} // closed when the upload ended
}

// testClusterKill uploads files of size through nine sessions spread over
// the nodes, paced so that they are still going when the node holding the
// first session is killed with SIGKILL. The sessions on the other nodes
// finish; those on the killed node reconnect through the balancer and
// resume (pkg/sftp: stat, open without truncation, write from the size
// found; the first one, an append to a file whose first MiB was already
// published, with OpenSSH `reput`). Meanwhile MinIO is listed over and
// over: no object other than a complete one (or the published first MiB)
// ever appears. The killed node is restarted and serves every file whole.
func testClusterKill(t *testing.T, gws []*gateway, lb *testenv.HAProxy, size int64) {
	const user = "kim"
	const nClients = 9
	const prefix = 1 * mib
	const rate = 1536 * kib // per client, bytes/s: each upload lasts ~size/rate
	tok := gws[0].addUser(user, personalWS)
	m, bucket := gws[0].minio, gws[0].personalBucket

	cs := make([]*killClient, nClients)
	for i := range cs {
		s, err := openVia(t, gws[0], lb.Addr, "127.0.0.7", user, tok)
		if err != nil {
			t.Fatalf("login %d through the balancer: %v", i+1, err)
		}
		cs[i] = &killClient{name: fmt.Sprintf("k%d.bin", i), seed: uint64(5000 + i), s: s, ended: make(chan struct{})}
	}
	at := sessionsByNode(gws)
	for i, c := range cs {
		if c.node = nodeHolding(at, c.s.remote); c.node < 0 {
			t.Fatalf("session %d (%s): listed by no node", i+1, c.s.remote)
		}
	}
	victim := cs[0].node
	var onVictim []int
	for i, c := range cs {
		if c.node == victim {
			onVictim = append(onVictim, i)
		}
	}
	t.Logf("sessions on nodes %v; killing node %d, which holds sessions %v", func() []int {
		n := make([]int, len(cs))
		for i, c := range cs {
			n[i] = c.node + 1
		}
		return n
	}(), victim+1, onVictim)

	// The first file's first MiB is published (a complete earlier upload):
	// its upload appends the rest.
	full := func(c *killClient) version { return version{{c.seed, size}} }
	uploadSFTP(t, cs[0].s.sftp, "/"+personalWS+"/"+cs[0].name, cs[0].seed, prefix)
	cs[0].from = prefix

	allowed := map[string][]objectState{}
	for _, c := range cs {
		allowed[personalKey(user, c.name)] = []objectState{stateOfVersion(full(c))}
	}
	allowed[personalKey(user, cs[0].name)] = append(allowed[personalKey(user, cs[0].name)],
		stateOfVersion(version{{cs[0].seed, prefix}}))
	watch := watchObjects(m, bucket, user+"/", allowed)
	watching := true
	defer func() {
		if watching {
			watch.finish()
		}
	}()

	start := time.Now()
	for _, c := range cs {
		go func() {
			defer close(c.ended)
			p := "/" + personalWS + "/" + c.name
			flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			if c.from > 0 {
				flags = os.O_WRONLY
			}
			f, err := c.s.sftp.OpenFile(p, flags)
			if err != nil {
				c.err = fmt.Errorf("open: %w", err)
				return
			}
			if _, err := f.Seek(c.from, io.SeekStart); err != nil {
				f.Close()
				c.err = fmt.Errorf("seek: %w", err)
				return
			}
			r := &countingReader{r: full(c).from(c.from), n: &c.sent, rate: rate, start: time.Now()}
			if _, err := f.ReadFromWithConcurrency(r, 16); err != nil {
				f.Close()
				c.err = fmt.Errorf("write: %w", err)
				return
			}
			c.err = f.Close()
		}()
	}
	// Kill once every upload on the victim has sent a MiB, or (big
	// enough files) two parts and more.
	killAt := max(mib, min(size-5*mib, 2*stagedPart+mib))
	if !waitFor(time.Minute, 20*time.Millisecond, func() bool {
		for _, i := range onVictim {
			if cs[i].sent.Load() < killAt {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("the uploads on node %d did not reach %d bytes within a minute", victim+1, killAt)
	}
	killedAt := time.Since(start)
	sentAtKill := make([]int64, len(cs))
	for i, c := range cs {
		sentAtKill[i] = c.sent.Load()
	}
	if gws[victim].kill9() {
		t.Logf("the killed node needed its FUSE connections aborted")
	}
	t.Logf("node %d killed %v after the uploads started; bytes sent by each client then: %v", victim+1, killedAt.Round(time.Millisecond), sentAtKill)
	for i, c := range cs {
		select {
		case <-c.ended:
		case <-time.After(2 * time.Minute):
			t.Fatalf("upload %d still going 2 min after the kill", i+1)
		}
		switch {
		case c.node != victim && c.err != nil:
			t.Errorf("upload %d through node %d (alive): %v, want success", i+1, c.node+1, c.err)
		case c.node == victim && c.err == nil:
			t.Logf("upload %d through the killed node closed OK before the kill (a slow kill: proves less)", i+1)
		case c.node == victim:
			t.Logf("upload %d through the killed node ended with: %v", i+1, c.err)
		}
	}

	// The interrupted uploads resume through the balancer: it sends them
	// to a live node, where the local copy of the killed node is not; the
	// parts it had sent (staged in the store) are, once the killed node's
	// hold on them has lapsed.
	alive := append([]*gateway(nil), gws...)
	alive[victim] = nil
	time.Sleep(time.Until(start.Add(killedAt + stagedLease)))
	getBytes := func() float64 {
		var n float64
		for _, g := range alive {
			if g != nil {
				n += testenv.MetricValueT(t, g.scrape(), "sftpgate_s3_get_bytes_total")
			}
		}
		return n
	}
	getBefore := getBytes()
	var pkgResumed, stagedResumed int
	for _, i := range onVictim[1:] {
		c := cs[i]
		if c.err == nil {
			continue
		}
		s, err := openVia(t, gws[0], lb.Addr, "127.0.0.7", user, tok)
		if err != nil {
			t.Fatalf("upload %d: login again through the balancer: %v", i+1, err)
		}
		c.onto = nodeHolding(sessionsByNode(alive), s.remote)
		p := "/" + personalWS + "/" + c.name
		if fi, err := s.sftp.Stat(p); err == nil {
			c.offset = fi.Size()
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("upload %d: stat %s after reconnecting: %v", i+1, p, err)
		}
		if c.offset > size {
			t.Fatalf("upload %d: stat after reconnecting: %d bytes, more than the file", i+1, c.offset)
		}
		if err := resumeAt(s.sftp, p, full(c), c.offset); err != nil {
			t.Errorf("upload %d: resume through node %d from %d: %v", i+1, c.onto+1, c.offset, err)
		}
		pkgResumed++
		if c.offset > 0 {
			stagedResumed++
		}
		s.close()
		t.Logf("upload %d: %d bytes sent before the kill; resumed through node %d from offset %d", i+1, sentAtKill[i], c.onto+1, c.offset)
	}
	if c := cs[0]; c.err != nil {
		local := t.TempDir()
		writeLocal(t, filepath.Join(local, c.name), c.seed, size)
		probe, err := openVia(t, gws[0], lb.Addr, "127.0.0.7", user, tok)
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := probe.sftp.Stat("/" + personalWS + "/" + c.name); err != nil {
			t.Errorf("upload 1: stat after the kill: %v, want the published first MiB", err)
		} else {
			c.offset = fi.Size()
		}
		probe.close()
		out, code := gws[0].sftpBatchVia(t, lb.Addr, user, tok, local, "reput "+c.name+" /"+personalWS+"/"+c.name)
		if code != 0 {
			t.Errorf("upload 1: OpenSSH reput through the balancer: exit %d\n%s", code, out)
		}
		t.Logf("upload 1 (append after a published MiB): %d bytes sent before the kill; OpenSSH reput through the balancer from offset %d", sentAtKill[0], c.offset)
		if c.offset > prefix {
			stagedResumed++
		}
	}
	gotGet := getBytes() - getBefore
	t.Logf("resumes from a staged offset: %d; the live nodes read %.0f bytes from the store during the resumes", stagedResumed, gotGet)
	if size >= 3*stagedPart && stagedResumed == 0 {
		t.Errorf("no resume after the kill started from a staged offset, want at least one (parts of %d bytes staged)", stagedPart)
	}
	if stagedResumed > 0 && gotGet >= stagedPart {
		t.Errorf("the live nodes read %.0f bytes from the store during the resumes, want less than a part (%d): a staged prefix is never downloaded", gotGet, stagedPart)
	}
	t.Logf("resumed: %d with pkg/sftp, 1 with OpenSSH reput; all done %v after the kill", pkgResumed, time.Since(start)-killedAt)
	bad, listings, versions := watch.finish()
	watching = false
	t.Logf("MinIO listed %d times during the test, %d object versions checked", listings, versions)
	for _, b := range bad {
		t.Errorf("object seen during the kill and resumes: %s", b)
	}
	for i, c := range cs {
		if got, want := gws[0].stateOf(bucket, personalKey(user, c.name)), stateOfVersion(full(c)); got != want {
			t.Errorf("object of upload %d (through node %d): got %v, want %v", i+1, c.node+1, got, want)
		}
	}

	// The killed node comes back: its interrupted copies publish nothing,
	// and it serves every file as the store has it.
	g := gws[victim]
	g.start()
	g.waitReady()
	sc := directSFTP(t, g, "127.0.0.8", user, tok)
	for i, c := range cs {
		want := full(c)
		if got, w := gws[0].stateOf(bucket, personalKey(user, c.name)), stateOfVersion(want); got != w {
			t.Errorf("object of upload %d after the killed node restarted: got %v, want %v", i+1, got, w)
		}
		sum, n := sumRemote(sc, "/"+personalWS+"/"+c.name)
		if sum == want.sum() && n == size {
			continue
		}
		msg := fmt.Sprintf("file of upload %d through the restarted node %d: got %d bytes sha256 %.12s, want %d bytes %.12s (the object)",
			i+1, victim+1, n, sum, size, want.sum())
		t.Error(msg)
	}
	// No multipart upload is left: resumed ones completed, the others
	// aborted by the restarted node's recovery.
	for _, c := range cs {
		waitNoUploads(t, m, bucket, personalKey(user, c.name))
	}
}

// resumeAt writes v from offset off to path, opened without truncation
// and created if absent (what a client resuming an upload does when the
// file may not exist), and closes it.
func resumeAt(sc *sftp.Client, path string, v version, off int64) error {
	f, err := sc.OpenFile(path, os.O_WRONLY|os.O_CREATE)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("seek %s: %w", path, err)
	}
	if _, err := f.ReadFromWithConcurrency(v.from(off), 16); err != nil {
		f.Close()
		return fmt.Errorf("write %s from %d: %w", path, off, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}
