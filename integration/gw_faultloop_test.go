package integration

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/pkg/sftp"
)

// Environment of TestGatewayFaultLoop (`make soak ROUNDS=N` sets the first).
const (
	envFaultRounds = "SFTPGATE_FAULT_ROUNDS" // kill -9 rounds, 10 when unset
	envFaultSeed   = "SFTPGATE_FAULT_SEED"   // seed of the random choices, from the clock when unset (logged)
)

// Shape of a fault-loop round.
const (
	faultClients    = 4                       // client 0 writes big files with 64 requests in flight, 1-3 mix small operations
	faultMaxDelay   = 2500 * time.Millisecond // the kill comes 200 ms to this after the round starts
	faultClientWait = time.Minute             // the clients must all have stopped this long after the kill
	faultBigMin     = 12 * mib                // client 0's uploads: faultBigMin to 2*faultBigMin
	faultSmallMax   = 1 * mib                 // the others' writes
)

// TestGatewayFaultLoop runs concurrent clients that create, overwrite,
// append to, resume (open without truncation, write from the stat size),
// rename and remove files while the daemon is killed with SIGKILL at a
// random moment, then restarts it. After each restart, every key holds
// the newest version whose close returned OK to its client (or its prior
// bytes; with a close in flight at the kill, that version or the one
// before), checked by hash against the log the clients keep; every
// upload interrupted with its handle open is resumed from the size the
// view shows and must then hash right. At the end, no daemon process and
// no mount is left.
func TestGatewayFaultLoop(t *testing.T) {
	t.Parallel()
	rounds := 10
	if s := os.Getenv(envFaultRounds); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("$%s: got %q, want a positive number", envFaultRounds, s)
		}
		rounds = n
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(envFaultSeed); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("$%s: got %q, want a number", envFaultSeed, s)
		}
		seed = n
	}
	t.Logf("%d rounds, $%s=%d", rounds, envFaultSeed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))

	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)
	clients := make([]*faultClient, faultClients)
	for i := range clients {
		clients[i] = &faultClient{id: i, files: map[string]*faultFile{}, rng: rand.New(rand.NewPCG(seed, uint64(i+1)))}
		clients[i].sc = g.mustSFTP("alice", tok)
	}
	verified := map[string]string{} // key → "etag sum" already checked against the model
	var st faultStats
	for r := range rounds {
		roundStart := time.Now()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, c := range clients {
			c.round, c.pending = r, nil
			c.killAt.Store(0)
			wg.Add(1)
			go func() { defer wg.Done(); c.run(stop) }()
		}
		delay := 200*time.Millisecond + time.Duration(rng.Int64N(int64(faultMaxDelay-200*time.Millisecond)))
		time.Sleep(delay)
		if r%2 == 0 { // every other round, kill while client 0 has a 64-request upload going
			waitFor(10*time.Second, 5*time.Millisecond, func() bool { return clients[0].bigWriting.Load() })
		}
		killAt := time.Now()
		for _, c := range clients {
			c.killAt.Store(killAt.UnixNano())
		}
		pid := g.pid()
		if g.killRestart() {
			st.fallbacks++
		}
		close(stop)
		if !processGone(pid) {
			t.Errorf("round %d: killed daemon %d still exists after the restart", r, pid)
		}
		waited := make(chan struct{})
		go func() { wg.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(faultClientWait):
			t.Fatalf("round %d: clients still running %v after the kill", r, faultClientWait)
		}
		restarted := time.Now()

		for _, c := range clients {
			c.sc.Close()
			c.sc = g.mustSFTP("alice", tok)
			if c.failure != nil {
				t.Errorf("round %d: client %d: %v (before the kill)", r, c.id, c.failure)
				c.failure = nil
			}
		}
		g.checkFaultObjects(t, r, clients, verified)
		if c := g.conflicts(); len(c) != 0 {
			t.Errorf("round %d: conflicts after the restart: got %q, want none", r, c)
		}
		for _, c := range clients {
			if c.pending != nil {
				g.settle(t, r, c, &st)
			}
		}
		for _, c := range clients {
			for p, f := range c.files {
				if fi, err := c.sc.Stat(p); err != nil || fi.Size() != f.v.size() {
					t.Errorf("round %d: client %d: stat %s after the restart: got %v, %v, want %d bytes", r, c.id, p, fi, err, f.v.size())
				}
			}
		}
		if t.Failed() {
			t.Fatalf("round %d failed (replay with %s=%d)", r, envFaultSeed, seed)
		}
		var ops []string
		for _, c := range clients {
			ops = append(ops, fmt.Sprintf("c%d %d ok/%s", c.id, c.done, c.pending))
			st.ops += c.done
			c.done = 0
		}
		t.Logf("round %d: kill at %v, restart %v, check %v; %s", r, killAt.Sub(roundStart).Round(time.Millisecond),
			restarted.Sub(killAt).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond), strings.Join(ops, ", "))
	}
	t.Logf("%d rounds: %d operations closed OK, %d interrupted writes resumed (%d with 64 requests in flight), %d in-flight closes, %d kill fallbacks",
		rounds, st.ops, st.resumed, st.resumed64, st.closing, st.fallbacks)
	if st.resumed64 == 0 {
		t.Errorf("no upload was killed with 64 requests in flight (and resumed) in %d rounds", rounds)
	}

	pid := g.pid()
	for _, c := range clients {
		c.sc.Close()
	}
	if code := g.stop(); code != 0 {
		t.Errorf("daemon exit after SIGTERM: got %d, want 0", code)
	}
	if !processGone(pid) {
		t.Errorf("daemon %d still exists after it exited", pid)
	}
	if left := processesUsing(g.work); len(left) != 0 {
		t.Errorf("processes left with the gateway's working directory: %v", left)
	}
	if m := mountsUnder(t, g.mounts); len(m) != 0 {
		t.Errorf("mounts left: %q", m)
	}
}

// faultStats counts what a fault loop did.
type faultStats struct {
	ops, resumed, resumed64, closing, fallbacks int
}

// faultFile is the newest version of a file whose close returned OK.
type faultFile struct {
	v   version
	sum string // v.sum(), computed once
}

// hash returns the SHA-256 of the version, computing it once.
func (f *faultFile) hash() string {
	if f.sum == "" {
		f.sum = f.v.sum()
	}
	return f.sum
}

// faultOp is one operation of a client; the one a kill interrupted is
// kept as the client's pending operation.
type faultOp struct {
	kind        string // create, overwrite, append, resume, big, rename, remove
	path, to    string // to: the new name of a rename
	prior       version
	target      version // the content a write's close publishes
	concurrency int     // requests in flight of a write
	opened      bool    // the open returned a handle
	closing     bool    // every write was acknowledged and the close sent
	err         error
}

// String describes the operation for the logs.
func (op *faultOp) String() string {
	if op == nil {
		return "-"
	}
	state := "opening"
	switch {
	case op.closing:
		state = "closing"
	case op.opened:
		state = "writing"
	}
	if op.kind == "rename" || op.kind == "remove" {
		state = "sent"
	}
	return fmt.Sprintf("%s %s %s", op.kind, path.Base(op.path), state)
}

// faultClient is one SFTP client of the loop with its log: the newest
// version of each of its files whose close returned OK. Its files are its
// own (names prefixed with its id), so the log is exact.
type faultClient struct {
	id     int
	rng    *rand.Rand
	sc     *sftp.Client
	files  map[string]*faultFile // path → newest version closed OK
	names  int                   // names used so far
	round  int
	writes int // writes so far (the seed of each)

	killAt     atomic.Int64 // UnixNano of the round's kill
	bigWriting atomic.Bool  // client 0 is in the middle of a big write

	// Set by run, read after it returned.
	pending *faultOp // the operation the kill interrupted
	failure error    // an operation failed before the kill
	done    int      // operations that succeeded this round
}

// run performs random operations until one fails (the kill) or stop is
// closed.
func (c *faultClient) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		op := c.next()
		op.err = c.do(op)
		if op.err == nil {
			c.commit(op)
			c.done++
			continue
		}
		if time.Now().UnixNano() < c.killAt.Load() || c.killAt.Load() == 0 {
			c.failure = fmt.Errorf("%s: %w", op, op.err)
		}
		c.pending = op
		return
	}
}

// newName returns a name of this client's, never used before.
func (c *faultClient) newName() string {
	c.names++
	return fmt.Sprintf("/%s/c%d-%03d.bin", personalWS, c.id, c.names)
}

// seg returns n bytes of a stream never written before.
func (c *faultClient) seg(n int64) segment {
	c.writes++
	return segment{seed: uint64(c.id+1)<<40 | uint64(c.round)<<20 | uint64(c.writes), n: n}
}

// pick returns one of the client's files, or "" when it has none.
func (c *faultClient) pick() string {
	if len(c.files) == 0 {
		return ""
	}
	names := make([]string, 0, len(c.files))
	for p := range c.files {
		names = append(names, p)
	}
	// Map order is random but not from c.rng: sort for a replayable choice.
	slices.Sort(names)
	return names[c.rng.IntN(len(names))]
}

// next chooses the client's next operation.
func (c *faultClient) next() *faultOp {
	if c.id == 0 { // big uploads over two names, 64 requests in flight
		p := fmt.Sprintf("/%s/big-%d.bin", personalWS, c.rng.IntN(2))
		op := &faultOp{kind: "big", path: p, concurrency: 64}
		if f := c.files[p]; f != nil {
			op.prior = f.v
		}
		op.target = version{c.seg(faultBigMin + c.rng.Int64N(faultBigMin))}
		return op
	}
	small := func() int64 {
		if c.rng.IntN(4) == 0 {
			return c.rng.Int64N(64 * kib)
		}
		return c.rng.Int64N(faultSmallMax)
	}
	existing := c.pick()
	kind := []string{"create", "create", "overwrite", "append", "resume", "resume", "rename", "remove"}[c.rng.IntN(8)]
	if existing == "" || (kind == "remove" && len(c.files) < 4) {
		kind = "create"
	}
	op := &faultOp{kind: kind, path: existing, concurrency: 16}
	if kind != "create" {
		op.prior = c.files[existing].v
	}
	switch kind {
	case "create":
		op.path = c.newName()
		op.target = version{c.seg(small())}
	case "overwrite":
		op.target = version{c.seg(small())}
	case "append":
		op.target = op.prior.appended(c.seg(1 + c.rng.Int64N(32*kib-1)))
		op.concurrency = 1
	case "resume":
		op.target = op.prior.appended(c.seg(1 + c.rng.Int64N(512*kib)))
		op.concurrency = 64
	case "rename":
		op.to = c.newName()
	}
	return op
}

// do performs the operation over SFTP.
func (c *faultClient) do(op *faultOp) error {
	switch op.kind {
	case "rename":
		return c.sc.PosixRename(op.path, op.to)
	case "remove":
		return c.sc.Remove(op.path)
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	off := int64(0)
	switch op.kind {
	case "append":
		flags = os.O_WRONLY | os.O_APPEND
		off = op.prior.size()
	case "resume":
		flags = os.O_WRONLY
	}
	f, err := c.sc.OpenFile(op.path, flags)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	op.opened = true
	if op.kind == "resume" {
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("stat: %w", err)
		}
		if fi.Size() != op.prior.size() {
			f.Close()
			return fmt.Errorf("stat of the open file: got %d bytes, want %d (the last version closed OK)", fi.Size(), op.prior.size())
		}
		off = fi.Size()
	}
	if op.kind == "big" {
		c.bigWriting.Store(true)
		defer c.bigWriting.Store(false)
	}
	if op.kind == "append" {
		_, err = io.Copy(f, op.target.from(off))
	} else {
		if _, err = f.Seek(off, io.SeekStart); err == nil {
			_, err = f.ReadFromWithConcurrency(op.target.from(off), op.concurrency)
		}
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("write: %w", err)
	}
	op.closing = true
	if err := f.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// commit records an operation that returned OK in the log.
func (c *faultClient) commit(op *faultOp) {
	switch op.kind {
	case "rename":
		c.files[op.to] = c.files[op.path]
		delete(c.files, op.path)
	case "remove":
		delete(c.files, op.path)
	default:
		c.files[op.path] = &faultFile{v: op.target}
	}
}

// keyOf is the object key of a client path.
func keyOf(p string) string {
	return personalKey("alice", strings.TrimPrefix(p, "/"+personalWS+"/"))
}

// checkFaultObjects compares every object under alice/ with the clients'
// logs: a file whose last operation returned OK holds exactly that
// version; the file of an interrupted operation holds its prior version,
// or the new one when the close (or the rename, or the remove) was in
// flight; no other object exists.
func (g *gateway) checkFaultObjects(t *testing.T, round int, clients []*faultClient, verified map[string]string) {
	t.Helper()
	objs := listObjectInfos(t, g, g.personalBucket, "alice/")
	claimed := map[string]bool{}
	check := func(what, key string, allowed ...*faultFile) {
		t.Helper()
		claimed[key] = true
		o, exists := objs[key]
		var sum string
		if exists {
			if v, ok := verified[key]; ok && strings.HasPrefix(v, o.ETag+" ") {
				sum = strings.TrimPrefix(v, o.ETag+" ")
			} else {
				sum, _, _ = objectSum(t, g.minio, g.personalBucket, key)
				verified[key] = o.ETag + " " + sum
			}
		}
		var want []string
		for _, a := range allowed {
			if a == nil || a.v == nil {
				if !exists {
					return
				}
				want = append(want, "absent")
				continue
			}
			if exists && o.Size == a.v.size() && sum == a.hash() {
				return
			}
			want = append(want, stateOfVersion(a.v).String())
		}
		got := "absent"
		if exists {
			got = fmt.Sprintf("%d bytes sha256 %.12s", o.Size, sum)
		}
		t.Errorf("round %d: %s: %s: got %s, want %s", round, what, key, got, strings.Join(want, " or "))
	}
	for _, c := range clients {
		op := c.pending
		for p, f := range c.files {
			if op != nil && (p == op.path || p == op.to) {
				continue
			}
			check(fmt.Sprintf("client %d, closed OK", c.id), keyOf(p), f)
		}
		if op == nil {
			continue
		}
		prior := &faultFile{v: op.prior}
		what := fmt.Sprintf("client %d, interrupted %s", c.id, op)
		switch op.kind {
		case "rename":
			check(what+" (old name)", keyOf(op.path), prior, nil)
			check(what+" (new name)", keyOf(op.to), nil, prior)
		case "remove":
			check(what, keyOf(op.path), prior, nil)
		default:
			if op.closing {
				check(what, keyOf(op.path), prior, &faultFile{v: op.target})
			} else {
				check(what, keyOf(op.path), prior)
			}
		}
	}
	for key, o := range objs {
		if !claimed[key] {
			t.Errorf("round %d: object %s (%d bytes) that no client wrote or left there", round, key, o.Size)
		}
	}
}

// settle brings the client's interrupted operation to a known end after
// the restart: an interrupted write is resumed from the size the view
// shows (which must not exceed what was written) and must then publish
// exactly its content; a rename or remove is read off the objects.
func (g *gateway) settle(t *testing.T, round int, c *faultClient, st *faultStats) {
	t.Helper()
	op := c.pending
	switch op.kind {
	case "rename":
		_, errNew := statObject(g.minio, g.personalBucket, keyOf(op.to))
		_, errOld := statObject(g.minio, g.personalBucket, keyOf(op.path))
		if errNew != nil && errOld != nil {
			t.Errorf("round %d: client %d: after an interrupted rename of %s to %s, neither key holds the file (%v; %v)", round, c.id, op.path, op.to, errOld, errNew)
		}
		if errNew == nil {
			c.files[op.to] = c.files[op.path]
			delete(c.files, op.path)
			if errOld == nil { // copied, not yet deleted when killed
				t.Logf("round %d: client %d: interrupted rename left both %s and %s", round, c.id, op.path, op.to)
				if err := c.sc.Remove(op.path); err != nil {
					t.Errorf("round %d: remove %s after an interrupted rename: %v", round, op.path, err)
				}
			}
		}
		return
	case "remove":
		if _, err := statObject(g.minio, g.personalBucket, keyOf(op.path)); isNotFound(err) {
			delete(c.files, op.path)
		}
		return
	}
	if op.closing {
		st.closing++
	}
	if !op.opened {
		// The open may or may not have reached the daemon: write the
		// version whole.
		f, err := c.sc.OpenFile(op.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err == nil {
			_, err = f.ReadFromWithConcurrency(op.target.reader(), 16)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			t.Errorf("round %d: client %d: rewrite %s after an interrupted open: %v", round, c.id, op.path, err)
			return
		}
	} else {
		fi, err := c.sc.Stat(op.path)
		if err != nil {
			t.Errorf("round %d: client %d: stat %s, interrupted while %s: %v", round, c.id, op.path, op, err)
			return
		}
		n := fi.Size()
		if n > op.target.size() {
			t.Errorf("round %d: client %d: %s shows %d bytes after the restart, more than the %d written", round, c.id, op.path, n, op.target.size())
			return
		}
		if err := resumeFrom(c.sc, op.path, op.target, n); err != nil {
			t.Errorf("round %d: client %d: resume %s from %d: %v", round, c.id, op.path, n, err)
			return
		}
		st.resumed++
		if op.concurrency == 64 && !op.closing {
			st.resumed64++ // killed while its 64 requests were in flight
		}
	}
	c.files[op.path] = &faultFile{v: op.target}
	want := stateOfVersion(op.target)
	if got := g.stateOf(g.personalBucket, keyOf(op.path)); got != want {
		t.Errorf("round %d: client %d: %s after the resume of an interrupted %s: got %v, want %v", round, c.id, keyOf(op.path), op, got, want)
	}
}

// listObjectInfos lists the objects under prefix, by key.
func listObjectInfos(t testing.TB, g *gateway, bucket, prefix string) map[string]minio.ObjectInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	objs := map[string]minio.ObjectInfo{}
	for o := range g.minio.Client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list %s/%s: %v", bucket, prefix, o.Err)
		}
		objs[o.Key] = o
	}
	return objs
}

// processesUsing lists the processes whose command line mentions s.
func processesUsing(s string) []string {
	dirs, _ := os.ReadDir("/proc")
	var found []string
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(b), s) || processGone(pid) {
			continue
		}
		found = append(found, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(b), "\x00", " ")))
	}
	return found
}
