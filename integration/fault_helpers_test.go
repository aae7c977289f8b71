package integration

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Helpers of the durability fault tests: kill -9 and restart, connections
// that can be dropped (TCP reset), the size a view shows for a path, and
// resuming an interrupted upload from that size.

// Bounds of a kill -9.
const (
	killExitTimeout  = 5 * time.Second  // SIGKILL → the process is gone
	abortExitTimeout = 30 * time.Second // after aborting its FUSE connections
)

// kill9 sends SIGKILL to the daemon and waits for it to be gone. A killed
// daemon that does not exit within killExitTimeout (a thread stuck in a
// request to its own mount) gets its FUSE connections aborted through
// fusectl as a fallback, which is logged: the tests' assertions never
// depend on it. It returns whether that fallback was needed.
func (g *gateway) kill9() (aborted bool) {
	t := g.t
	t.Helper()
	select {
	case <-g.done:
		t.Fatalf("kill -9: the daemon had already exited with %d:\n%s", g.exit, tail(g.logs(), 40))
	default:
	}
	if err := g.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", g.pid(), err)
	}
	select {
	case <-g.done:
		return false
	case <-time.After(killExitTimeout):
	}
	t.Logf("FALLBACK: killed daemon %d still running %v after SIGKILL (stuck on its own mount?): aborting its FUSE connections",
		g.pid(), killExitTimeout)
	abortFUSEUnder(t, g.mounts)
	select {
	case <-g.done:
	case <-time.After(abortExitTimeout):
		t.Fatalf("killed daemon %d still running after its FUSE connections were aborted", g.pid())
	}
	return true
}

// killRestart kills the daemon with SIGKILL and starts it again on the
// same working directory; the new daemon clears the stale mounts.
func (g *gateway) killRestart() (aborted bool) {
	g.t.Helper()
	aborted = g.kill9()
	g.start()
	g.waitReady()
	return aborted
}

// abortFUSEUnder aborts, through /sys/fs/fuse/connections, the FUSE
// connection of every mount under root.
func abortFUSEUnder(t testing.TB, root string) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Errorf("read mountinfo: %v", err)
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts ... - fstype source super
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		mp := strings.ReplaceAll(fields[4], `\040`, " ")
		if mp != root && !strings.HasPrefix(mp, root+"/") {
			continue
		}
		fstype := ""
		for i, fl := range fields {
			if fl == "-" && i+1 < len(fields) {
				fstype = fields[i+1]
			}
		}
		if !strings.HasPrefix(fstype, "fuse") {
			continue
		}
		_, minor, _ := strings.Cut(fields[2], ":")
		conn := filepath.Join("/sys/fs/fuse/connections", minor)
		if _, err := os.Stat(conn); err != nil {
			exec.Command("mount", "-t", "fusectl", "fusectl", "/sys/fs/fuse/connections").Run()
		}
		if err := os.WriteFile(filepath.Join(conn, "abort"), []byte("1"), 0o200); err != nil {
			t.Errorf("abort FUSE connection %s of %s: %v", minor, mp, err)
		} else {
			t.Logf("aborted FUSE connection %s of %s", minor, mp)
		}
	}
}

// droppable is an SFTP session whose TCP connection can be dropped (reset)
// without any SFTP close or SSH disconnect, as when a client's network
// goes away.
type droppable struct {
	conn *net.TCPConn
	ssh  *ssh.Client
	sftp *sftp.Client
}

// drop resets the TCP connection.
func (d *droppable) drop() {
	d.conn.SetLinger(0)
	d.conn.Close()
}

// mustDroppable logs in over a TCP connection the test can reset and
// starts an SFTP session on it; cleanup closes it.
func (g *gateway) mustDroppable(user, token string) *droppable {
	g.t.Helper()
	g.secret(token)
	conn, err := net.DialTimeout("tcp", g.addr, dialTimeout)
	if err != nil {
		g.t.Fatalf("dial %s: %v", g.addr, err)
	}
	conn.SetDeadline(time.Now().Add(dialTimeout))
	cfg := &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.Password(token)},
		HostKeyCallback: ssh.FixedHostKey(g.hostKey),
		Timeout:         dialTimeout,
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, g.addr, cfg)
	if err != nil {
		conn.Close()
		g.t.Fatalf("ssh login as %s: %v", user, err)
	}
	conn.SetDeadline(time.Time{})
	d := &droppable{conn: conn.(*net.TCPConn), ssh: ssh.NewClient(c, chans, reqs)}
	g.t.Cleanup(func() { d.ssh.Close() })
	d.sftp = newSFTP(g.t, d.ssh)
	return d
}

// waitSessions waits until the daemon lists n sessions.
func (g *gateway) waitSessions(n int) {
	g.t.Helper()
	var rows []opsSessionRow
	if !waitFor(30*time.Second, 100*time.Millisecond, func() bool { rows = g.sessionRows(); return len(rows) == n }) {
		g.t.Fatalf("sessions: got %d (%v), want %d", len(rows), rows, n)
	}
}

// version is the content of a file as the stream segments it was written
// from, in order: its bytes are never held in memory.
type version []segment

// segment is n bytes of the stream for seed.
type segment struct {
	seed uint64
	n    int64
}

// size is the length of the content.
func (v version) size() int64 {
	var n int64
	for _, s := range v {
		n += s.n
	}
	return n
}

// reader yields the content.
func (v version) reader() io.Reader {
	rs := make([]io.Reader, len(v))
	for i, s := range v {
		rs[i] = prng(s.seed, s.n)
	}
	return io.MultiReader(rs...)
}

// sum is the hex SHA-256 of the content.
func (v version) sum() string {
	s, _, _ := sumOf(v.reader())
	return s
}

// from yields the content from offset off.
func (v version) from(off int64) io.Reader {
	r := v.reader()
	io.CopyN(io.Discard, r, off)
	return r
}

// appended is v followed by seg.
func (v version) appended(seg segment) version {
	return append(append(version(nil), v...), seg)
}

// resumeFrom writes v from offset off to path, opened without truncation
// (what `reput` and WinSCP resume do), and closes it.
func resumeFrom(sc *sftp.Client, path string, v version, off int64) error {
	f, err := sc.OpenFile(path, os.O_WRONLY)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("seek %s: %w", path, err)
	}
	if _, err := f.ReadFromWithConcurrency(v.from(off), 64); err != nil {
		f.Close()
		return fmt.Errorf("write %s from %d: %w", path, off, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// objectState is what MinIO holds at a key: absent, or the SHA-256 and
// size of the object.
type objectState struct {
	exists bool
	sum    string
	size   int64
}

// String describes the state for failure messages.
func (s objectState) String() string {
	if !s.exists {
		return "absent"
	}
	return fmt.Sprintf("%d bytes sha256 %.12s", s.size, s.sum)
}

// stateOf reads the object at bucket/key.
func (g *gateway) stateOf(bucket, key string) objectState {
	g.t.Helper()
	if _, err := statObject(g.minio, bucket, key); isNotFound(err) {
		return objectState{}
	} else if err != nil {
		g.t.Fatalf("stat %s/%s: %v", bucket, key, err)
	}
	sum, n, _ := objectSum(g.t, g.minio, bucket, key)
	return objectState{exists: true, sum: sum, size: n}
}

// stateOfVersion is the state of an object holding v (nil: absent).
func stateOfVersion(v version) objectState {
	if v == nil {
		return objectState{}
	}
	return objectState{exists: true, sum: v.sum(), size: v.size()}
}

// viewSize is the size path (under /personal-files etc.) shows both over
// SFTP and in login's mount on the server, which must agree.
func (g *gateway) viewSize(t testing.TB, sc *sftp.Client, login, path string) int64 {
	t.Helper()
	fi, err := sc.Stat(path)
	if err != nil {
		t.Fatalf("sftp stat %s: %v", path, err)
	}
	mfi, err := os.Stat(filepath.Join(g.mounts, login, filepath.FromSlash(strings.TrimPrefix(path, "/"))))
	if err != nil {
		t.Fatalf("stat %s in the mount: %v", path, err)
	}
	if mfi.Size() != fi.Size() {
		t.Errorf("%s: SFTP stat shows %d bytes, the mount %d", path, fi.Size(), mfi.Size())
	}
	return fi.Size()
}

// conflicts lists the files under <tmpDir>/sftpgate/conflicts.
func (g *gateway) conflicts() []string {
	ents, err := os.ReadDir(filepath.Join(g.tmp, "sftpgate", "conflicts"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		g.t.Fatalf("read conflicts: %v", err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// processGone reports whether no process with pid exists any more (a
// zombie counts as gone).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(after, "Z")
}
