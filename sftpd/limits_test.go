package sftpd

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// mustOpenStatus opens name for writing and expects the open to be
// refused with a failure status whose message is want.
func mustRefuseOpen(t *testing.T, cl *sftp.Client, name, want string) {
	t.Helper()
	f, err := cl.OpenFile(name, os.O_WRONLY|os.O_CREATE)
	if err == nil {
		f.Close()
		t.Fatalf("open %s: got success, want %q", name, want)
	}
	var se *sftp.StatusError
	if !errors.As(err, &se) || se.Code != 4 || se.Error() == "" || !strings.Contains(err.Error(), want) {
		t.Fatalf("open %s: got %v, want failure %q", name, err, want)
	}
}

// Opens past the per-session and the per-user handle limits are refused
// with "too many open files" naming the limit; a close gives its slot
// back, another user is not affected, and a session that ends gives back
// all of its slots.
func TestHandleLimits(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.MaxHandlesPerSession = 3
		c.MaxHandlesPerUser = 5
	})
	ts.root(t)
	s1, s2 := ts.sftp(t), ts.sftp(t)
	// Listings and reads that end give their slot back.
	for range 5 {
		if _, err := s1.ReadDir("/"); err != nil {
			t.Fatalf("listing: %v", err)
		}
	}
	open := func(cl *sftp.Client, name string) *sftp.File {
		t.Helper()
		f, err := cl.OpenFile(name, os.O_WRONLY|os.O_CREATE)
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		return f
	}
	var first []*sftp.File
	for i := range 3 {
		first = append(first, open(s1, fmt.Sprintf("/a%d", i)))
	}
	mustRefuseOpen(t, s1, "/a3", "too many open files (limit 3 per session)")
	// Reads and directories count too.
	if _, err := s1.Open("/a0"); err == nil || !strings.Contains(err.Error(), "too many open files") {
		t.Errorf("open for reading past the limit: got %v, want too many open files", err)
	}
	if _, err := s1.ReadDir("/"); err == nil || !strings.Contains(err.Error(), "too many open files") {
		t.Errorf("opendir past the limit: got %v, want too many open files", err)
	}

	second := []*sftp.File{open(s2, "/b0"), open(s2, "/b1")}
	mustRefuseOpen(t, s2, "/b2", "too many open files (limit 5 per user)")

	bob, err := ssh.Dial("tcp", ts.addr, clientConfig("bob", ssh.Password("bob-token")))
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	bs, err := sftp.NewClient(bob)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	bf, err := bs.Create("/bob")
	if err != nil {
		t.Fatalf("bob's open while alice is at her limit: %v", err)
	}
	if _, err := bf.Write([]byte("bob")); err != nil {
		t.Fatal(err)
	}
	if err := bf.Close(); err != nil {
		t.Fatal(err)
	}

	// A close frees a slot of the session and of the user.
	if err := first[0].Close(); err != nil {
		t.Fatal(err)
	}
	second = append(second, open(s2, "/b2"))
	mustRefuseOpen(t, s1, "/a4", "too many open files (limit 5 per user)")

	// A session that ends with files open gives back their slots: alice
	// (3 open in s2) can open 2 more in a new session.
	s3 := ts.sftp(t)
	s1.Close()
	var third []*sftp.File
	waitFor(t, "the first session's handles to be released", 10*time.Second, func() bool {
		f, err := s3.OpenFile(fmt.Sprintf("/c%d", len(third)), os.O_WRONLY|os.O_CREATE)
		if err == nil {
			third = append(third, f)
		}
		return len(third) == 2
	})
	mustRefuseOpen(t, s3, "/c2", "too many open files (limit 5 per user)")
	for _, f := range append(second, third...) {
		if err := f.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	if !strings.Contains(ts.log.String(), "open refused") {
		t.Errorf("log: no \"open refused\" line:\n%s", ts.log.String())
	}
}

// Writes and truncates past MaxFileSize are refused before the file is
// touched; a sparse write ending exactly at the limit is allowed.
func TestMaxFileSize(t *testing.T) {
	const limit = 1 << 20
	ts := startServer(t, func(c *Config) { c.MaxFileSize = limit })
	dir := ts.root(t)
	cl := ts.sftp(t)
	f, err := cl.OpenFile("/big", os.O_RDWR|os.O_CREATE)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("x"), limit-1); err != nil {
		t.Fatalf("1-byte write at maxFileSize-1: %v", err)
	}
	size := func() int64 {
		t.Helper()
		fi, err := cl.Stat("/big")
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	if got := size(); got != limit {
		t.Fatalf("size after the write at the limit: got %d, want %d", got, limit)
	}
	for _, tt := range []struct {
		name string
		off  int64
		n    int
	}{
		{"one byte past", limit - 1, 2},
		{"at the limit", limit, 1},
		{"huge offset", 1<<63 - 10, 1},
	} {
		_, err := f.WriteAt(make([]byte, tt.n), tt.off)
		if err == nil || !strings.Contains(err.Error(), "file too large") {
			t.Errorf("%s: write of %d bytes at %d: got %v, want file too large", tt.name, tt.n, tt.off, err)
		}
		if got := size(); got != limit {
			t.Errorf("%s: size after the refused write: got %d, want %d", tt.name, got, limit)
		}
	}
	if err := cl.Truncate("/big", limit+1); err == nil || !strings.Contains(err.Error(), "file too large") {
		t.Errorf("truncate past the limit: got %v, want file too large", err)
	}
	if err := cl.Truncate("/big", limit); err != nil {
		t.Errorf("truncate to the limit: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "big")); err != nil || fi.Size() != limit {
		t.Errorf("file on disk: got %v, %v, want size %d", fi, err, limit)
	}
}

// Many sessions of two users write out of order at once: the windows
// held never go past a session's or a user's budget (the writes beyond
// go straight to the file), and every file ends up with what was written.
func TestGatherBudgetManySessions(t *testing.T) {
	const (
		users, sessions, handles = 2, 3, 2
		size, chunk              = 2 * combineWindow, 32 << 10
		perSession, perUser      = 2, 5
	)
	want := make([]byte, size)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	var userWins [users]atomic.Int64
	type sess struct {
		pw *pendingWrites
		u  int
	}
	var all []sess
	var peakSession, peakUser atomic.Int64
	observe := func() {
		for _, s := range all {
			peak(&peakSession, s.pw.windows.Load())
		}
		for u := range userWins {
			peak(&peakUser, userWins[u].Load())
		}
	}
	for u := range users {
		for range sessions {
			pw := &pendingWrites{limits: &gatherLimits{session: perSession, user: &userWins[u], userLimit: perUser}}
			all = append(all, sess{pw, u})
		}
	}
	var wg sync.WaitGroup
	dsts := make([]*recordingFile, 0, len(all)*handles)
	errs := make(chan error, len(all)*handles)
	for _, s := range all {
		for h := range handles {
			dst := &recordingFile{}
			dsts = append(dsts, dst)
			c := &combiner{dst: dst, pending: s.pw}
			s.pw.register(c)
			wg.Add(1)
			go func(seed uint64) {
				defer wg.Done()
				// Chunks in a shuffled order within 1.5 MiB runs: windows
				// are held open across each other, as with parallel
				// workers far out of order.
				r := rand.New(rand.NewPCG(seed, 9))
				var offs []int
				for off := 0; off < size; off += chunk {
					offs = append(offs, off)
				}
				const run = 48
				for i := 0; i < len(offs); i += run {
					part := offs[i:min(i+run, len(offs))]
					r.Shuffle(len(part), func(a, b int) { part[a], part[b] = part[b], part[a] })
				}
				for _, off := range offs {
					if err := c.write(want[off:off+chunk], int64(off)); err != nil {
						errs <- err
						return
					}
					observe()
				}
				if err := c.flush(); err != nil {
					errs <- err
				}
				s.pw.unregister(c)
			}(uint64(len(dsts)*10 + h))
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if p := peakSession.Load(); p > perSession || p == 0 {
		t.Errorf("peak windows of one session: got %d, want 1..%d", p, perSession)
	}
	if p := peakUser.Load(); p > perUser || p == 0 {
		t.Errorf("peak windows of one user: got %d, want 1..%d", p, perUser)
	}
	t.Logf("peak windows: %d per session (limit %d), %d per user (limit %d)", peakSession.Load(), perSession, peakUser.Load(), perUser)
	for i, d := range dsts {
		if !bytes.Equal(d.data, want) {
			t.Fatalf("file %d: content differs from what was written (first difference at %d)", i, firstDiff(d.data, want))
		}
	}
	for _, s := range all {
		if n := s.pw.windows.Load(); n != 0 {
			t.Errorf("session windows after every flush: got %d, want 0", n)
		}
	}
	for u := range userWins {
		if n := userWins[u].Load(); n != 0 {
			t.Errorf("user %d windows after every flush: got %d, want 0", u, n)
		}
	}
}

// peak raises p to v if v is larger.
func peak(p *atomic.Int64, v int64) {
	for {
		old := p.Load()
		if v <= old || p.CompareAndSwap(old, v) {
			return
		}
	}
}

// Opens racing in several sessions of one user get exactly the slots
// there are: never more than a session's or the user's limit, and every
// slot is used.
func TestHandleLimitsConcurrent(t *testing.T) {
	const sessions, tries, perSession, perUser = 3, 12, 8, 20
	ts := startServer(t, func(c *Config) {
		c.MaxHandlesPerSession = perSession
		c.MaxHandlesPerUser = perUser
	})
	ts.root(t)
	var (
		mu     sync.Mutex
		opened [sessions][]*sftp.File
		wg     sync.WaitGroup
	)
	clients := make([]*sftp.Client, sessions)
	for i := range clients {
		clients[i] = ts.sftp(t)
	}
	for s := range sessions {
		for i := range tries {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, err := clients[s].OpenFile(fmt.Sprintf("/s%d-%d", s, i), os.O_WRONLY|os.O_CREATE)
				if err != nil {
					if !strings.Contains(err.Error(), "too many open files") {
						t.Errorf("open: got %v, want success or too many open files", err)
					}
					return
				}
				mu.Lock()
				opened[s] = append(opened[s], f)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	total := 0
	for s := range sessions {
		if n := len(opened[s]); n > perSession {
			t.Errorf("session %d: got %d handles, want at most %d", s, n, perSession)
		}
		total += len(opened[s])
		for _, f := range opened[s] {
			f.Close()
		}
	}
	if total != perUser {
		t.Errorf("handles over the sessions: got %d, want exactly %d", total, perUser)
	}
}
