package integration

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// Staged uploads (README "Running a cluster"): two nodes on one MinIO and
// one PostgreSQL store, 5 MiB parts. An upload interrupted on node A is
// shown and resumed through node B from its staged size (whole parts),
// without B downloading them; B's continuation is streamed (cut again,
// it is resumed from the larger staged size); a plain put over a staged
// upload aborts it;
// node A killed and restarted does not abort the upload B continues; a
// staged upload nobody resumes is aborted after the lifespan.

// Knobs of the staged-upload test.
const (
	stagedPart = 5 * mib
	// stagedLease is fusefs's StagingLease (5 s) with a margin: how long
	// a killed node's staged uploads stay held.
	stagedLease = 7 * time.Second
	// stagedLifespan is tmpFilesLifespan in this test.
	stagedLifespan = 12 * time.Second
)

func TestGatewayStagedResume(t *testing.T) {
	t.Parallel()
	opts := gwOptions{database: storePostgres, metrics: true, lifespan: "12s",
		keys: map[string]any{"uploadPartSize": "5MiB"}}
	gws := startGateways(t, 2, opts)
	a, b := gws[0], gws[1]
	const user = "stan"
	tok := a.addUser(user, personalWS)
	m, bucket := a.minio, a.personalBucket

	t.Run("resume through another node", func(t *testing.T) {
		v := version{{seed: 901, n: 13 * mib}}
		p := "/" + personalWS + "/r.bin"
		interruptOn(t, a, user, tok, p, v, 12*mib)
		off := waitStaged(t, b, user, tok, p, 2*stagedPart)
		before := testenv.MetricValueT(t, b.scrape(), "sftpgate_s3_get_bytes_total")
		sc := b.mustSFTP(user, tok)
		// Listed at its staged size; its bytes are not read back.
		fis, err := sc.ReadDir("/" + personalWS)
		if err != nil {
			t.Fatal(err)
		}
		listed := int64(-1)
		for _, fi := range fis {
			if fi.Name() == "r.bin" {
				listed = fi.Size()
			}
		}
		if listed != off {
			t.Errorf("listing through node B: r.bin has %d bytes (-1: absent), want %d (staged)", listed, off)
		}
		if rf, err := sc.Open(p); err != nil {
			t.Errorf("open for reading through node B: %v", err)
		} else {
			if n, err := rf.Read(make([]byte, 4096)); err == nil {
				t.Errorf("read below the staged size through node B: got %d bytes, want an error", n)
			}
			rf.Close()
		}
		if err := resumeFrom(sc, p, v, off); err != nil {
			t.Fatalf("resume through node B from %d: %v", off, err)
		}
		got := testenv.MetricValueT(t, b.scrape(), "sftpgate_s3_get_bytes_total") - before
		t.Logf("resumed through node B from the staged offset %d; node B read %.0f bytes from the store meanwhile", off, got)
		if got >= float64(mib) {
			t.Errorf("node B read %.0f bytes from the store while resuming, want less than 1 MiB (the staged %d bytes are not downloaded)", got, off)
		}
		if st, want := a.stateOf(bucket, personalKey(user, "r.bin")), stateOfVersion(v); st != want {
			t.Errorf("object: got %v, want %v", st, want)
		}
		if c := testenv.MetricValueT(t, b.scrape(), "sftpgate_staged_uploads_completed_total"); c != 1 {
			t.Errorf("node B: sftpgate_staged_uploads_completed_total = %v, want 1", c)
		}
		waitNoUploads(t, m, bucket, personalKey(user, "r.bin"))
	})

	t.Run("continuation streamed, interrupted again", func(t *testing.T) {
		// Another user: the sessions of this one stay under its limit.
		const user = "sia"
		tok := a.addUser(user, personalWS)
		v := version{{seed: 908, n: 23 * mib}}
		p := "/" + personalWS + "/s.bin"
		key := personalKey(user, "s.bin")
		interruptOn(t, a, user, tok, p, v, 12*mib)
		off := waitStaged(t, b, user, tok, p, 2*stagedPart)
		// Node B continues past two more whole parts and is cut before the
		// close: they are staged already.
		c := b.mustSSH(user, tok)
		f, err := newSFTP(t, c).OpenFile(p, os.O_WRONLY)
		if err != nil {
			t.Fatalf("open through node B: %v", err)
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if _, err := f.ReadFromWithConcurrency(io.LimitReader(v.from(off), 2*stagedPart+mib), 16); err != nil {
			t.Fatalf("write through node B from %d: %v", off, err)
		}
		waitStagedBytes(t, b, off+2*stagedPart)
		c.Close()
		// Node A resumes from the larger staged size, nothing downloaded.
		off2 := waitStaged(t, a, user, tok, p, off+2*stagedPart)
		if off2 != off+2*stagedPart {
			t.Fatalf("staged after node B was cut: got %d, want %d", off2, off+2*stagedPart)
		}
		before := testenv.MetricValueT(t, a.scrape(), "sftpgate_s3_get_bytes_total")
		if err := resumeFrom(a.mustSFTP(user, tok), p, v, off2); err != nil {
			t.Fatalf("resume through node A from %d: %v", off2, err)
		}
		got := testenv.MetricValueT(t, a.scrape(), "sftpgate_s3_get_bytes_total") - before
		t.Logf("node B streamed %d to %d; node A resumed from %d and read %.0f bytes from the store", off, off2, off2, got)
		if got >= float64(mib) {
			t.Errorf("node A read %.0f bytes from the store while resuming, want less than 1 MiB", got)
		}
		if st, want := a.stateOf(bucket, key), stateOfVersion(v); st != want {
			t.Errorf("object: got %v, want %v", st, want)
		}
		waitNoUploads(t, m, bucket, key)
	})

	t.Run("plain put over a staged upload", func(t *testing.T) {
		v := version{{seed: 902, n: 11 * mib}}
		p := "/" + personalWS + "/t.bin"
		interruptOn(t, a, user, tok, p, v, 11*mib)
		waitStaged(t, b, user, tok, p, stagedPart)
		sc := b.mustSFTP(user, tok)
		uploadSFTP(t, sc, p, 903, 100*kib)
		if st, want := a.stateOf(bucket, personalKey(user, "t.bin")), stateOfVersion(version{{903, 100 * kib}}); st != want {
			t.Errorf("object after a plain put: got %v, want %v", st, want)
		}
		waitNoUploads(t, m, bucket, personalKey(user, "t.bin"))
		if fi, err := a.mustSFTP(user, tok).Stat(p); err != nil || fi.Size() != 100*kib {
			t.Errorf("stat through node A: got %v, %v; want the %d bytes put", fi, err, 100*kib)
		}
	})

	t.Run("held by another node", func(t *testing.T) {
		v := version{{seed: 906, n: 12 * mib}}
		p := "/" + personalWS + "/h.bin"
		interruptOn(t, a, user, tok, p, v, 11*mib)
		off := waitStaged(t, b, user, tok, p, stagedPart)
		bc := b.mustSFTP(user, tok)
		g, err := bc.OpenFile(p, os.O_WRONLY)
		if err != nil {
			t.Fatalf("open through node B: %v", err)
		}
		// Claimed by node B: node A shows the object as it is (none), and
		// a writer there starts afresh.
		ac := a.mustSFTP(user, tok)
		time.Sleep(1500 * time.Millisecond) // node A's index and attributes: 1 s TTL
		if fi, err := ac.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat through node A while node B holds the staged upload: got %v, %v; want not found", fi, err)
		}
		other := version{{seed: 907, n: 100 * kib}}
		uploadSFTP(t, ac, p, 907, 100*kib)
		if st, want := a.stateOf(bucket, personalKey(user, "h.bin")), stateOfVersion(other); st != want {
			t.Errorf("object after node A's put: got %v, want %v", st, want)
		}
		// Node B's close comes last and wins, as two writers' would.
		if _, err := g.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if _, err := g.ReadFromWithConcurrency(v.from(off), 16); err != nil {
			t.Fatalf("write through node B from %d: %v", off, err)
		}
		if err := g.Close(); err != nil {
			t.Fatalf("close through node B: %v", err)
		}
		if st, want := a.stateOf(bucket, personalKey(user, "h.bin")), stateOfVersion(v); st != want {
			t.Errorf("object after node B's close: got %v, want %v", st, want)
		}
		waitNoUploads(t, m, bucket, personalKey(user, "h.bin"))
	})

	t.Run("node killed, restarted while another continues", func(t *testing.T) {
		v := version{{seed: 904, n: 13 * mib}}
		p := "/" + personalWS + "/k.bin"
		waitNoStaged(t, a)
		c := a.mustSSH(user, tok)
		sc := newSFTP(t, c)
		f, err := sc.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.ReadFromWithConcurrency(io.LimitReader(v.reader(), 12*mib), 16); err != nil {
			t.Fatal(err)
		}
		waitStagedBytes(t, a, 2*stagedPart)
		killed := time.Now()
		a.kill9()
		c.Close()
		time.Sleep(time.Until(killed.Add(stagedLease)))
		off := waitStaged(t, b, user, tok, p, 2*stagedPart)
		// Node B continues (claims it) and, before it closes, node A comes
		// back: its recovery leaves the upload alone.
		bc := b.mustSFTP(user, tok)
		g, err := bc.OpenFile(p, os.O_WRONLY)
		if err != nil {
			t.Fatalf("open through node B: %v", err)
		}
		if _, err := g.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if _, err := g.ReadFromWithConcurrency(v.from(off), 16); err != nil {
			t.Fatalf("write through node B from %d: %v", off, err)
		}
		a.start()
		a.waitReady()
		if err := g.Close(); err != nil {
			t.Fatalf("close through node B after node A restarted: %v", err)
		}
		if st, want := a.stateOf(bucket, personalKey(user, "k.bin")), stateOfVersion(v); st != want {
			t.Errorf("object: got %v, want %v", st, want)
		}
		waitNoUploads(t, m, bucket, personalKey(user, "k.bin"))
		t.Logf("resumed through node B from %d while node A restarted", off)
	})

	t.Run("expired after the lifespan", func(t *testing.T) {
		v := version{{seed: 905, n: 11 * mib}}
		p := "/" + personalWS + "/x.bin"
		interruptOn(t, a, user, tok, p, v, 11*mib)
		waitStaged(t, b, user, tok, p, stagedPart)
		key := personalKey(user, "x.bin")
		if n := incompleteUploads(t, m, bucket, key); n != 1 {
			t.Fatalf("incomplete uploads of %s: got %d, want 1 (the staged one)", key, n)
		}
		if !waitFor(stagedLifespan+15*time.Second, 250*time.Millisecond, func() bool { return incompleteUploads(t, m, bucket, key) == 0 }) {
			t.Fatalf("staged upload of %s still in MinIO %v after the lifespan", key, stagedLifespan+15*time.Second)
		}
		exp := testenv.MetricValueT(t, a.scrape(), "sftpgate_staged_uploads_expired_total") +
			testenv.MetricValueT(t, b.scrape(), "sftpgate_staged_uploads_expired_total")
		if exp < 1 {
			t.Errorf("sftpgate_staged_uploads_expired_total on both nodes: got %v, want at least 1", exp)
		}
		if _, err := b.mustSFTP(user, tok).Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat after expiry: got %v, want not found", err)
		}
		if st := a.stateOf(bucket, key); st.exists {
			t.Errorf("object after expiry: got %v, want absent", st)
		}
	})
}

// interruptOn writes the first n bytes of v to path through g, waits
// until at least one whole part of them is staged (g's metrics), and ends
// the session without closing the file.
func interruptOn(t *testing.T, g *gateway, user, tok, path string, v version, n int64) {
	t.Helper()
	waitNoStaged(t, g)
	c := g.mustSSH(user, tok)
	sc := newSFTP(t, c)
	f, err := sc.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFromWithConcurrency(io.LimitReader(v.reader(), n), 16); err != nil {
		t.Fatal(err)
	}
	waitStagedBytes(t, g, n/stagedPart*stagedPart)
	c.Close()
}

// waitNoStaged waits until g's metrics show no staged upload (those of
// the subtests before are gone, and g's view of them is up to date).
func waitNoStaged(t *testing.T, g *gateway) {
	t.Helper()
	var got float64
	if !waitFor(30*time.Second, 200*time.Millisecond, func() bool {
		got = testenv.MetricValueT(t, g.scrape(), "sftpgate_staged_uploads")
		return got == 0
	}) {
		t.Fatalf("sftpgate_staged_uploads: got %v, want 0 before the next upload", got)
	}
}

// waitStagedBytes waits until g's metrics show at least n bytes staged.
func waitStagedBytes(t *testing.T, g *gateway, n int64) {
	t.Helper()
	var got float64
	if !waitFor(30*time.Second, 200*time.Millisecond, func() bool {
		got = testenv.MetricValueT(t, g.scrape(), "sftpgate_staged_bytes")
		return got >= float64(n)
	}) {
		t.Fatalf("sftpgate_staged_bytes: got %v, want at least %d", got, n)
	}
}

// waitStaged waits until path shows at least want bytes through g (the
// staged size, a multiple of the part size) and returns that size.
func waitStaged(t *testing.T, g *gateway, user, tok, path string, want int64) int64 {
	t.Helper()
	sc := g.mustSFTP(user, tok)
	var (
		fi  os.FileInfo
		err error
	)
	if !waitFor(20*time.Second, 200*time.Millisecond, func() bool {
		fi, err = sc.Stat(path)
		return err == nil && fi.Size() >= want
	}) {
		t.Fatalf("stat %s through another node: got %v, %v; want at least %d bytes staged", path, fi, err, want)
	}
	if fi.Size()%stagedPart != 0 {
		t.Fatalf("stat %s: got %d bytes, want whole %d-byte parts", path, fi.Size(), stagedPart)
	}
	return fi.Size()
}

// incompleteUploads counts the multipart uploads of key not completed
// or aborted in MinIO.
func incompleteUploads(t testing.TB, m *testenv.MinIO, bucket, key string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 0
	for u := range m.Client.ListIncompleteUploads(ctx, bucket, key, false) {
		if u.Err != nil {
			t.Fatalf("list incomplete uploads: %v", u.Err)
		}
		if u.Key == key {
			n++
		}
	}
	return n
}

// waitNoUploads waits until MinIO holds no multipart upload of key.
func waitNoUploads(t testing.TB, m *testenv.MinIO, bucket, key string) {
	t.Helper()
	if !waitFor(15*time.Second, 200*time.Millisecond, func() bool { return incompleteUploads(t, m, bucket, key) == 0 }) {
		t.Errorf("incomplete uploads of %s: got %d, want none", key, incompleteUploads(t, m, bucket, key))
	}
}
