package integration

import (
	"io"
	"os"
	"path"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

// The durability fault tests: what an object holds after a client's
// connection drops, after kill -9 and a restart, and after SIGTERM, for
// the rule of DESIGN.md ("Write-back cache"): an object only holds what it
// held before, the local copy as of a successful close or fsync, or the
// result of a successful delete or rename.

// checkpointWait is long enough for the write-back cache to have made
// every acknowledged write durable (checkpoints about every second).
const checkpointWait = 4 * time.Second

// TestGatewayFaultDroppedWriter: session A opens f for writing and
// writes; session B opens f for writing; A's TCP connection drops; B
// writes and closes. B's close returns OK, so the object must hold the
// copy as of B's close (A's acknowledged bytes included when B did not
// truncate), and it stays so once A's handle has been interrupted. In
// the racing variants B does not wait for the daemon to end A's session.
func TestGatewayFaultDroppedWriter(t *testing.T) {
	t.Parallel()
	const aSize, bSize = 1 * mib, 512 * kib
	for i, tt := range []struct {
		name     string
		userB    string
		dir      string // workspace directory
		disjoint bool   // B writes after A's bytes, without truncating; else B truncates and rewrites all
		racing   bool   // B writes and closes at once, while the daemon ends A's session
	}{
		{"same user/rewrite all", "alice", personalWS, false, false},
		{"same user/disjoint region", "alice", personalWS, true, false},
		{"shared workspace/rewrite all", "bob", commonWS, false, false},
		{"shared workspace/disjoint region", "bob", commonWS, true, false},
		{"same user/disjoint region/racing the drop", "alice", personalWS, true, true},
		{"shared workspace/rewrite all/racing the drop", "bob", commonWS, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := startGateway(t, gwOptions{}) // its own: the session counts below are the daemon's
			tokA := g.addUser("alice", personalWS, commonWS)
			tokBob := g.addUser("bob", commonWS)
			seedA, seedB := uint64(500+10*i), uint64(501+10*i)
			name := path.Join("/", tt.dir, "f.bin")
			bucket, key := g.commonBucket, "f.bin"
			if tt.dir == personalWS {
				bucket, key = g.personalBucket, personalKey("alice", "f.bin")
			}
			tokB := map[string]string{"alice": tokA, "bob": tokBob}[tt.userB]

			a := g.mustDroppable("alice", tokA)
			fa, err := a.sftp.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
			if err != nil {
				t.Fatalf("A: open %s: %v", name, err)
			}
			if _, err := fa.ReadFromWithConcurrency(prng(seedA, aSize), 64); err != nil {
				t.Fatalf("A: write: %v", err)
			}
			b := g.mustSFTP(tt.userB, tokB)
			flags := os.O_WRONLY | os.O_TRUNC
			want := version{{seedB, bSize}}
			if tt.disjoint {
				flags = os.O_WRONLY
				want = version{{seedA, aSize}, {seedB, bSize}}
			}
			fb, err := b.OpenFile(name, flags)
			if err != nil {
				t.Fatalf("B: open %s: %v", name, err)
			}
			g.waitSessions(2)
			a.drop()
			if !tt.racing {
				g.waitSessions(1) // the daemon has ended A's session: its handle is interrupted
			}
			if tt.disjoint {
				if _, err := fb.Seek(aSize, io.SeekStart); err != nil {
					t.Fatalf("B: seek: %v", err)
				}
			}
			if _, err := fb.ReadFromWithConcurrency(prng(seedB, bSize), 64); err != nil {
				t.Fatalf("B: write: %v", err)
			}
			if err := fb.Close(); err != nil {
				t.Fatalf("B: close: got %v, want success", err)
			}
			wantState := stateOfVersion(want)
			if got := g.stateOf(bucket, key); got != wantState {
				t.Errorf("object right after B's close returned OK: got %v, want %v", got, wantState)
			}
			g.waitSessions(1)
			time.Sleep(checkpointWait) // anything A's interruption could still do
			if got := g.stateOf(bucket, key); got != wantState {
				t.Errorf("object %v after B's close: got %v, want %v", checkpointWait, got, wantState)
			}
			if sum, n := downloadSFTP(t, b, name); n != want.size() || sum != wantState.sum {
				t.Errorf("%s read back by B: got %d bytes sha256 %.12s, want %v", name, n, sum, wantState)
			}
		})
	}
}

// TestGatewayFaultKillTruncated: report.txt (17 bytes) is uploaded, then
// reopened with truncation and written, the handle kept open; kill -9 and
// restart. The object must still be the 17 bytes; the view shows N, the
// durable prefix of what was written (all of it once a checkpoint has
// passed); resuming from N (open without truncate, write from N) gives
// the whole new content.
func TestGatewayFaultKillTruncated(t *testing.T) {
	t.Parallel()
	const report = "quarterly report\n" // 17 bytes
	for i, tt := range []struct {
		name    string
		written int64
		wait    time.Duration // between the last acknowledged write and the kill
	}{
		{"killed at once", 3 * mib, 0},
		{"killed after a second", 3 * mib, checkpointWait},
		{"killed after 1000 bytes", 1000, checkpointWait},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			seed := uint64(600 + i)
			g := startGateway(t, gwOptions{})
			tok := g.addUser("alice", personalWS)
			key := personalKey("alice", "report.txt")
			const name = "/personal-files/report.txt"
			sc := g.mustSFTP("alice", tok)
			writeFile(t, sc, name, report)
			before := g.stateOf(g.personalBucket, key)
			if before.size != int64(len(report)) {
				t.Fatalf("report.txt: got %v, want 17 bytes", before)
			}

			f, err := sc.OpenFile(name, os.O_WRONLY|os.O_TRUNC)
			if err != nil {
				t.Fatalf("reopen with truncate: %v", err)
			}
			if _, err := f.ReadFromWithConcurrency(prng(seed, tt.written), 64); err != nil {
				t.Fatalf("write: %v", err)
			}
			time.Sleep(tt.wait)
			start := time.Now()
			g.killRestart()
			t.Logf("kill -9 and restart: %v", time.Since(start).Round(time.Millisecond))

			if got := g.stateOf(g.personalBucket, key); got != before {
				t.Errorf("object after the restart: got %v, want the 17 bytes as before (%v)", got, before)
			}
			sc = g.mustSFTP("alice", tok)
			n := g.viewSize(t, sc, "alice", name)
			t.Logf("%d bytes written, stat shows %d after the restart", tt.written, n)
			switch {
			case n > tt.written:
				t.Fatalf("stat after the restart: got %d bytes, want at most the %d written", n, tt.written)
			case tt.wait > 0 && n != tt.written:
				t.Errorf("stat %v after the last write: got %d bytes, want all %d durable", tt.wait, n, tt.written)
			}
			if n > 0 {
				if sum, got := downloadSFTP(t, sc, name); got != n || sum != prngSum(seed, n) {
					t.Errorf("content after the restart: got %d bytes sha256 %.12s, want the first %d bytes written", got, sum, n)
				}
			}
			if got := g.stateOf(g.personalBucket, key); got != before {
				t.Errorf("object after reading the view: got %v, want %v", got, before)
			}
			want := version{{seed, tt.written}}
			if err := resumeFrom(sc, name, want, n); err != nil {
				t.Fatalf("resume from %d: %v", n, err)
			}
			if got, w := g.stateOf(g.personalBucket, key), stateOfVersion(want); got != w {
				t.Errorf("object after resuming from %d: got %v, want %v", n, got, w)
			}
		})
	}
}

// TestGatewayFaultKillFreshUpload: a fresh 200 MiB upload (64 requests in
// flight) is killed at 1.5 s. After the restart there is no object; the
// view shows N; OpenSSH `sftp reput` resumes from there and the object is
// right.
func TestGatewayFaultKillFreshUpload(t *testing.T) {
	t.Parallel()
	const size, seed = 200 * mib, 700
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)
	local := t.TempDir()
	writeLocal(t, filepath.Join(local, "big.bin"), seed, size)
	key := personalKey("alice", "big.bin")
	sc := g.mustSFTP("alice", tok)

	var sent atomic.Int64
	ended := make(chan error, 1)
	f, err := sc.Create("/personal-files/big.bin")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	go func() {
		_, err := f.ReadFromWithConcurrency(&countingReader{r: prng(seed, size), n: &sent}, 64)
		if err == nil {
			err = f.Close()
		}
		ended <- err
	}()
	time.Sleep(1500 * time.Millisecond)
	sentAtKill := sent.Load()
	g.killRestart()
	var closeErr error
	select {
	case closeErr = <-ended:
		t.Logf("killed with %d MiB read by the client; the client's upload ended with %v", sentAtKill>>20, closeErr)
	case <-time.After(time.Minute):
		t.Fatalf("the client's upload did not end a minute after the kill")
	}
	// Absent, unless the client's close returned OK before the kill (then
	// the test proves less: a slow kill).
	want := objectState{}
	if closeErr == nil {
		t.Logf("the whole upload was closed OK before the kill")
		want = stateOfVersion(version{{seed, size}})
	}
	if got := g.stateOf(g.personalBucket, key); got != want {
		t.Fatalf("object after the restart: got %v, want %v", got, want)
	}

	sc = g.mustSFTP("alice", tok)
	n := g.viewSize(t, sc, "alice", "/personal-files/big.bin")
	t.Logf("stat after the restart: %d MiB (%d bytes) of %d MiB read by the client at the kill", n>>20, n, sentAtKill>>20)
	if n > sent.Load() {
		t.Errorf("stat after the restart: got %d bytes, want at most the %d the client sent", n, sent.Load())
	}
	if got := g.stateOf(g.personalBucket, key); got != want {
		t.Fatalf("object after the first login: got %v, want %v", got, want)
	}
	start := time.Now()
	if out, code := g.sftpBatch(t, "alice", tok, local, "reput big.bin /personal-files/big.bin"); code != 0 {
		t.Fatalf("reput: got exit %d, want 0\n%s", code, out)
	}
	t.Logf("reput of the last %d MiB: %v", (size-n)>>20, time.Since(start).Round(time.Millisecond))
	sum, got, _ := objectSum(t, g.minio, g.personalBucket, key)
	if want := prngSum(seed, size); got != size || sum != want {
		t.Errorf("object after reput: got %d bytes sha256 %.12s, want %d bytes %.12s", got, sum, size, want)
	}
}

// TestGatewayFaultKillRenamed: a file open for writing is renamed over
// SFTP while open, then the daemon is killed and restarted. The copy is an
// interrupted upload at the new name (the view shows it there, nothing
// goes to conflicts), the objects are what the rename left, and a resume
// at the new name publishes there.
func TestGatewayFaultKillRenamed(t *testing.T) {
	t.Parallel()
	for i, tt := range []struct {
		name      string
		published bool // the file had an object before it was reopened
	}{
		{"new file", false},
		{"published file", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			seed := uint64(800 + i)
			const written = 2 * mib
			g := startGateway(t, gwOptions{})
			tok := g.addUser("alice", personalWS)
			oldKey, newKey := personalKey("alice", "old.bin"), personalKey("alice", "new.bin")
			sc := g.mustSFTP("alice", tok)
			var published objectState
			if tt.published {
				writeFile(t, sc, "/personal-files/old.bin", "seventeen bytes!\n")
				published = g.stateOf(g.personalBucket, oldKey)
			}
			f, err := sc.OpenFile("/personal-files/old.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			if _, err := f.ReadFromWithConcurrency(prng(seed, written), 64); err != nil {
				t.Fatalf("write: %v", err)
			}
			if err := sc.PosixRename("/personal-files/old.bin", "/personal-files/new.bin"); err != nil {
				t.Fatalf("rename while open: %v", err)
			}
			// The rename moved the published object, if any.
			if got := g.stateOf(g.personalBucket, oldKey); got.exists {
				t.Errorf("old key after the rename: got %v, want absent", got)
			}
			if got := g.stateOf(g.personalBucket, newKey); got != published {
				t.Errorf("new key after the rename: got %v, want %v (the object moved)", got, published)
			}
			time.Sleep(checkpointWait)
			g.killRestart()

			if got := g.stateOf(g.personalBucket, oldKey); got.exists {
				t.Errorf("old key after the restart: got %v, want absent", got)
			}
			if got := g.stateOf(g.personalBucket, newKey); got != published {
				t.Errorf("new key after the restart: got %v, want %v", got, published)
			}
			if c := g.conflicts(); len(c) != 0 {
				t.Errorf("conflicts after the restart: got %q, want none", c)
			}
			sc = g.mustSFTP("alice", tok)
			if _, err := sc.Stat("/personal-files/old.bin"); !os.IsNotExist(err) {
				t.Errorf("stat old.bin after the restart: got %v, want not exist", err)
			}
			n := g.viewSize(t, sc, "alice", "/personal-files/new.bin")
			if n != written {
				t.Errorf("new.bin after the restart: got %d bytes, want the %d durable before the kill", n, written)
			}
			if n > written {
				t.Fatalf("new.bin: %d bytes, more than written", n)
			}
			want := version{{seed, written}}
			if err := resumeFrom(sc, "/personal-files/new.bin", want, n); err != nil {
				t.Fatalf("resume new.bin from %d: %v", n, err)
			}
			if got, w := g.stateOf(g.personalBucket, newKey), stateOfVersion(want); got != w {
				t.Errorf("new key after the resume: got %v, want %v", got, w)
			}
			if got := g.stateOf(g.personalBucket, oldKey); got.exists {
				t.Errorf("old key after the resume: got %v, want absent", got)
			}
		})
	}
}

// TestGatewayShutdownOpenWriters: SIGTERM with writers still open.
// Files closed before the signal are in MinIO when the daemon has exited;
// nothing an open handle wrote is published (a new file stays absent, a
// file reopened with truncation keeps its object), neither at the next
// start; both are interrupted uploads that resume to the right object.
func TestGatewayShutdownOpenWriters(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)
	sc := g.mustSFTP("alice", tok)
	key := func(name string) string { return personalKey("alice", name) }

	// Closed before the signal.
	closed := version{{900, 5 * mib}}
	uploadSFTP(t, sc, "/personal-files/closed.bin", 900, 5*mib)
	writeFile(t, sc, "/personal-files/kept.txt", "kept as it was\n")
	kept := g.stateOf(g.personalBucket, key("kept.txt"))

	// Open at the signal: a new file, and kept.txt reopened with truncation.
	open := func(name string, flags int, seed uint64) *sftp.File {
		f, err := sc.OpenFile(name, flags)
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		if _, err := f.ReadFromWithConcurrency(prng(seed, 3*mib), 64); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
		return f
	}
	open("/personal-files/new.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 901)
	open("/personal-files/kept.txt", os.O_WRONLY|os.O_TRUNC, 902)

	start := time.Now()
	if code := g.stop(); code != 0 {
		t.Errorf("daemon exit after SIGTERM: got %d, want 0", code)
	}
	t.Logf("SIGTERM → exit: %v", time.Since(start).Round(time.Millisecond))
	if m := mountsUnder(t, g.mounts); len(m) != 0 {
		t.Errorf("mounts after exit: got %q, want none", m)
	}
	if got, want := g.stateOf(g.personalBucket, key("closed.bin")), stateOfVersion(closed); got != want {
		t.Errorf("closed.bin: got %v, want %v", got, want)
	}
	if got := g.stateOf(g.personalBucket, key("new.bin")); got.exists {
		t.Errorf("new.bin (open at the signal): got %v, want absent", got)
	}
	if got := g.stateOf(g.personalBucket, key("kept.txt")); got != kept {
		t.Errorf("kept.txt (reopened with truncation, open at the signal): got %v, want %v as before", got, kept)
	}

	// Nor does the next start publish them.
	g.start()
	g.waitReady()
	sc = g.mustSFTP("alice", tok)
	if _, err := sc.ReadDir("/personal-files"); err != nil {
		t.Fatalf("list after the restart: %v", err)
	}
	time.Sleep(checkpointWait)
	if got := g.stateOf(g.personalBucket, key("new.bin")); got.exists {
		t.Errorf("new.bin after the restart: got %v, want absent", got)
	}
	if got := g.stateOf(g.personalBucket, key("kept.txt")); got != kept {
		t.Errorf("kept.txt after the restart: got %v, want %v", got, kept)
	}

	// Both were interrupted, not dropped: each resumes from the size the
	// view shows to the right object.
	for _, f := range []struct {
		name string
		seed uint64
	}{{"new.bin", 901}, {"kept.txt", 902}} {
		p := "/personal-files/" + f.name
		n := g.viewSize(t, sc, "alice", p)
		t.Logf("%s, open at SIGTERM with 3 MiB written: %d bytes after the restart", f.name, n)
		if n > 3*mib {
			t.Errorf("%s after the restart: got %d bytes, want at most the %d written", f.name, n, 3*mib)
			continue
		}
		want := version{{f.seed, 3 * mib}}
		if err := resumeFrom(sc, p, want, n); err != nil {
			t.Errorf("resume %s from %d: %v", f.name, n, err)
			continue
		}
		if got, w := g.stateOf(g.personalBucket, key(f.name)), stateOfVersion(want); got != w {
			t.Errorf("%s resumed from %d: got %v, want %v", f.name, n, got, w)
		}
	}
}
