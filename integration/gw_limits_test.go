package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

// daemonFDs counts the open file descriptors of the daemon.
func (g *gateway) daemonFDs() int {
	g.t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", g.pid()))
	if err != nil {
		g.t.Fatalf("daemon fds: %v", err)
	}
	return len(ents)
}

// openUntilRefused opens new files for writing named prefix-NNNN on sc until an open
// is refused (at most max+1 tries) and returns the handles and that error.
func openUntilRefused(t *testing.T, sc *sftp.Client, prefix string, max int) ([]*sftp.File, error) {
	t.Helper()
	var open []*sftp.File
	for i := range max + 1 {
		f, err := sc.OpenFile(fmt.Sprintf("%s-%04d", prefix, i), os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			return open, err
		}
		open = append(open, f)
	}
	return open, nil
}

// TestGatewayHandleFlood: one session of alice opens files for writing
// until refused with "too many open files", a second session of hers is
// capped by the per-user limit, and meanwhile bob logs in and uploads
// within 5 s. The daemon runs with RLIMIT_NOFILE 2048 and the default
// handle limits (256 per session, 512 per user); a handle open for
// writing costs it about 2 descriptors (the file on the mount and the
// local copy), so without the limits alice alone would exhaust it.
func TestGatewayHandleFlood(t *testing.T) {
	t.Parallel()
	const perSession, perUser = 256, 512 // the defaults
	const nofile = 2048
	g := startGateway(t, gwOptions{nofile: nofile})
	tok := g.addUser("alice", personalWS)
	bobTok := g.addUser("bob", personalWS)
	fdStart := g.daemonFDs()

	s1 := g.mustSFTP("alice", tok)
	if err := s1.MkdirAll("/personal-files/flood"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	first, err := openUntilRefused(t, s1, "/personal-files/flood/s1", perSession)
	if len(first) != perSession || err == nil || !strings.Contains(err.Error(), fmt.Sprintf("too many open files (limit %d per session)", perSession)) {
		t.Fatalf("first session: got %d handles then %v, want %d then too many open files (limit %d per session)", len(first), err, perSession, perSession)
	}
	if code, _ := sftpStatus(err); code != 4 {
		t.Errorf("refused open: got status %d, want 4 (failure)", code)
	}
	fdOneSession := g.daemonFDs()
	t.Logf("%d handles opened in %v; daemon fds: %d at start, %d with %d handles open", len(first), time.Since(start).Round(time.Millisecond), fdStart, fdOneSession, len(first))

	s2 := g.mustSFTP("alice", tok)
	second, err := openUntilRefused(t, s2, "/personal-files/flood/s2", perSession)
	if len(second) != perUser-perSession || err == nil || !strings.Contains(err.Error(), "too many open files (limit") {
		t.Fatalf("second session: got %d handles then %v, want %d then too many open files", len(second), err, perUser-perSession)
	}
	s3 := g.mustSFTP("alice", tok)
	if _, err := s3.OpenFile("/personal-files/flood/s3", os.O_WRONLY|os.O_CREATE); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("too many open files (limit %d per user)", perUser)) {
		t.Errorf("third session at the per-user limit: got %v, want too many open files (limit %d per user)", err, perUser)
	}
	if _, err := s3.ReadDir("/personal-files"); err == nil || !strings.Contains(err.Error(), "too many open files") {
		t.Errorf("opendir at the per-user limit: got %v, want too many open files", err)
	}
	// Operations that hold no handle still work.
	if _, err := s3.Stat("/personal-files/flood"); err != nil {
		t.Errorf("stat at the per-user limit: %v", err)
	}
	fdFull := g.daemonFDs()
	t.Logf("daemon fds with alice at her limit (%d handles): %d (RLIMIT_NOFILE %d)", perUser, fdFull, nofile)

	// Another user logs in and uploads within 5 s.
	start = time.Now()
	bob := g.mustSFTP("bob", bobTok)
	data := prngBytes(7, 1<<20)
	writeFile(t, bob, "/personal-files/b.bin", string(data))
	if got, err := readAll(bob, "/personal-files/b.bin"); err != nil || got != string(data) {
		t.Errorf("bob's upload read back: got %d bytes, %v, want %d bytes", len(got), err, len(data))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("bob's login and 1 MiB upload while alice floods: took %v, want under 5s", d)
	} else {
		t.Logf("bob's login and 1 MiB upload while alice floods: %v", d.Round(time.Millisecond))
	}

	// A closed handle frees a slot of the user.
	if err := second[0].Close(); err != nil {
		t.Fatal(err)
	}
	f, err := s3.OpenFile("/personal-files/flood/s3", os.O_WRONLY|os.O_CREATE)
	if err != nil {
		t.Fatalf("open after a close: %v", err)
	}
	f.Close()

	// Ending the sessions closes their handles (as interrupted uploads,
	// which publish nothing) and frees alice's slots.
	start = time.Now()
	s1.Close()
	s2.Close()
	if !waitFor(time.Minute, 50*time.Millisecond, func() bool {
		f, err := s3.OpenFile("/personal-files/flood/after", os.O_WRONLY|os.O_CREATE)
		if err != nil {
			return false
		}
		f.Close()
		return true
	}) {
		t.Fatalf("alice's slots still taken a minute after her flooding sessions ended")
	}
	t.Logf("flooding sessions ended, %d handles released in %v; daemon fds after: %d (local copies keep theirs until discarded)",
		perUser-1, time.Since(start).Round(time.Millisecond), g.daemonFDs())
	if logs := g.logs(); !strings.Contains(logs, "open refused") {
		t.Errorf("daemon log: no \"open refused\" line:\n%s", tail(logs, 20))
	}
}

// TestGatewayManyConnections works as rclone with its defaults does (8
// checkers + 4 transfers, each on its own connection, new ones opened
// while old ones close) with the daemon's default maxSessionsPerUser: 16
// connections of one user are open at once, each uploads a file, and 8
// more open while those close.
func TestGatewayManyConnections(t *testing.T) {
	t.Parallel()
	const wave, late, size = 16, 8, 256 << 10
	g := startGateway(t, gwOptions{maxSessions: -1})
	tok := g.addUser("alice", personalWS)

	var (
		mu        sync.Mutex
		connected int
		allIn     = make(chan struct{}) // closed when the whole first wave is connected
		closing   = make(chan struct{}) // closed when the first of the wave starts closing
		closeOnce sync.Once
		abort     = make(chan struct{}) // closed at the first error
		abortOnce sync.Once
		wg        sync.WaitGroup
		errs      = make(chan error, wave+late)
	)
	fail := func(err error) {
		errs <- err
		abortOnce.Do(func() { close(abort) })
	}
	worker := func(i int, first bool) {
		defer wg.Done()
		c, err := g.login("alice", tok)
		if err != nil {
			fail(fmt.Errorf("connection %d: login: %w", i, err))
			return
		}
		defer c.Close()
		sc, err := newSFTPClient(c)
		if err != nil {
			fail(fmt.Errorf("connection %d: sftp session: %w", i, err))
			return
		}
		defer sc.Close()
		if first {
			mu.Lock()
			if connected++; connected == wave {
				close(allIn)
			}
			mu.Unlock()
			select {
			case <-allIn:
			case <-abort:
				return
			case <-time.After(2 * time.Minute):
				fail(fmt.Errorf("connection %d: the other connections of the wave did not come", i))
				return
			}
		}
		f, err := sc.Create(fmt.Sprintf("/personal-files/conn%02d.bin", i))
		if err != nil {
			fail(fmt.Errorf("connection %d: create: %w", i, err))
			return
		}
		if _, err := io.Copy(f, prng(uint64(i), size)); err != nil {
			f.Close()
			fail(fmt.Errorf("connection %d: write: %w", i, err))
			return
		}
		if err := f.Close(); err != nil {
			fail(fmt.Errorf("connection %d: close: %w", i, err))
			return
		}
		if first {
			closeOnce.Do(func() { close(closing) })
		}
	}
	for i := range wave {
		wg.Add(1)
		go worker(i, true)
	}
	select {
	case <-closing:
	case <-abort:
	case <-time.After(3 * time.Minute):
		t.Error("no connection of the first wave finished its upload")
	}
	for i := range late {
		wg.Add(1)
		go worker(wave+i, false)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range wave + late {
		key := personalKey("alice", fmt.Sprintf("conn%02d.bin", i))
		if sum, n, _ := objectSum(t, g.minio, g.personalBucket, key); n != size || sum != prngSum(uint64(i), size) {
			t.Errorf("%s: got %d bytes (sum %.12s), want %d bytes of stream %d", key, n, sum, size, i)
		}
	}
	if logs := g.logs(); strings.Contains(logs, "too many sessions") {
		t.Errorf("daemon log: a session was refused:\n%s", tail(logs, 20))
	}
}

// TestGatewayMaxFileSize: with maxFileSize 1 MiB, a 1-byte write at
// offset 1 MiB − 1 makes a sparse 1 MiB file; writes and truncates past
// the limit are refused (SFTP failure "file too large", EFBIG through the
// mount itself) and leave the size as it was.
func TestGatewayMaxFileSize(t *testing.T) {
	t.Parallel()
	const limit = 1 << 20
	g := startGateway(t, gwOptions{keys: map[string]any{"maxFileSize": "1MiB"}})
	tok := g.addUser("alice", personalWS)
	sc := g.mustSFTP("alice", tok)

	size := func(name string) int64 {
		t.Helper()
		fi, err := sc.Stat(name)
		if err != nil {
			t.Fatalf("stat %s: %v", name, err)
		}
		return fi.Size()
	}
	const name = "/personal-files/sparse.bin"
	f, err := sc.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), limit-1); err != nil {
		t.Fatalf("1-byte write at maxFileSize-1: %v", err)
	}
	if got := size(name); got != limit {
		t.Fatalf("size after the write ending at the limit: got %d, want %d", got, limit)
	}
	for _, tt := range []struct {
		what string
		off  int64
		n    int
	}{
		{"2 bytes at maxFileSize-1", limit - 1, 2},
		{"1 byte at maxFileSize", limit, 1},
		{"1 byte at 2^63-10", 1<<63 - 10, 1},
	} {
		_, err := f.WriteAt([]byte("yz")[:tt.n], tt.off)
		if err == nil || !strings.Contains(err.Error(), "file too large") {
			t.Errorf("write of %s: got %v, want file too large", tt.what, err)
		}
		if got := size(name); got != limit {
			t.Errorf("size after the refused write of %s: got %d, want %d", tt.what, got, limit)
		}
	}
	if err := sc.Truncate(name, limit+1); err == nil || !strings.Contains(err.Error(), "file too large") {
		t.Errorf("truncate past the limit: got %v, want file too large", err)
	}
	if got := size(name); got != limit {
		t.Errorf("size after the refused truncate: got %d, want %d", got, limit)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	want := sha256.New()
	io.Copy(want, io.LimitReader(zeros{}, limit-1))
	want.Write([]byte("x"))
	if sum, n, _ := objectSum(t, g.minio, g.personalBucket, personalKey("alice", "sparse.bin")); n != limit || sum != hex.EncodeToString(want.Sum(nil)) {
		t.Errorf("object: got %d bytes (sum %.12s), want %d zero bytes then \"x\"", n, sum, limit-1)
	}

	// The same limit in the file system, through the mount (the session
	// keeps it mounted).
	direct := filepath.Join(g.mounts, "alice", personalWS, "direct.bin")
	df, err := os.OpenFile(direct, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer df.Close()
	if _, err := df.WriteAt([]byte("x"), limit-1); err != nil {
		t.Fatalf("mount: 1-byte write at maxFileSize-1: %v", err)
	}
	// A write across the limit fails with EFBIG. The kernel sends it in
	// page-sized requests: the byte below the limit is a request of its
	// own that succeeds, the one at the limit fails (Linux 6.18 then
	// reports EFBIG for the whole write). The size stays at the limit.
	if _, err := df.WriteAt([]byte("yz"), limit-1); !errors.Is(err, syscall.EFBIG) {
		t.Errorf("mount: write of 2 bytes at maxFileSize-1: got %v, want EFBIG", err)
	}
	if fi, err := df.Stat(); err != nil || fi.Size() != limit {
		t.Errorf("mount: size after the write across the limit: got %v, %v, want %d", fi, err, limit)
	}
	for _, tt := range []struct {
		what string
		op   func() error
	}{
		{"write of 1 byte at maxFileSize", func() error { _, err := df.WriteAt([]byte("z"), limit); return err }},
		{"write of 1 byte at 2^62", func() error { _, err := df.WriteAt([]byte("z"), 1<<62); return err }},
		{"write of 1 byte at 2^63-10", func() error { _, err := df.WriteAt([]byte("z"), 1<<63-10); return err }},
		{"truncate to maxFileSize+1", func() error { return df.Truncate(limit + 1) }},
	} {
		if err := tt.op(); !errors.Is(err, syscall.EFBIG) {
			t.Errorf("mount: %s: got %v, want EFBIG", tt.what, err)
		}
		if fi, err := df.Stat(); err != nil {
			t.Errorf("mount: stat after the refused %s: %v", tt.what, err)
		} else if fi.Size() != limit {
			t.Errorf("mount: size after the refused %s: got %d, want %d", tt.what, fi.Size(), limit)
		}
	}
	// The handle's writes failed: its close fails the same way and
	// publishes nothing.
	if err := df.Close(); !errors.Is(err, syscall.EFBIG) {
		t.Errorf("mount: close after refused writes: got %v, want EFBIG", err)
	}
	if _, err := statObject(g.minio, g.personalBucket, personalKey("alice", "direct.bin")); !isNotFound(err) {
		t.Errorf("object after a close that failed: got %v, want none", err)
	}
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
