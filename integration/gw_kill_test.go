package integration

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Promises of a kill -9 of the daemon (README, "What happens on kill -9").
const (
	killPortFreeWithin = 5 * time.Second  // kill → SSH port refuses connections
	killLoginWithin    = 10 * time.Second // kill → a new serve accepts a login
	killRounds         = 3
)

// TestGatewayKill9 kills the daemon with SIGKILL while one client uploads
// a large file with 64 writes in flight and another is in the middle of a
// download, killRounds times on the same working directory: each time the
// SSH port refuses connections within killPortFreeWithin, both clients get
// an error (not a hang), the daemon is reaped, no mount is left under
// mountRoot, and a new serve accepts a login within killLoginWithin of
// the kill.
//
// Without the FUSE watchdog the killed daemon stays stuck in exit,
// flushing the files its own sessions had open on its own mount.
// Not parallel: its timings are the point.
func TestGatewayKill9(t *testing.T) {
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)
	const downSize = 64 * mib
	uploadSFTP(t, g.mustSFTP("alice", tok), "/personal-files/down.bin", 900, downSize)

	var toPort, toLogin []time.Duration
	for i := range killRounds {
		port, login := killRound(t, g, tok, i)
		t.Logf("round %d: kill → port refused %v, kill → first login %v", i+1, port.Round(time.Millisecond), login.Round(time.Millisecond))
		toPort = append(toPort, port)
		toLogin = append(toLogin, login)
		if t.Failed() {
			break
		}
	}
	t.Logf("kill → port refused: %s; kill → first login: %s", minMedMax(toPort), minMedMax(toLogin))
}

// watchdogFreedMsg is what the FUSE watchdog logs when it frees a killed
// daemon.
const watchdogFreedMsg = "the daemon died, aborting its FUSE connections"

// killRound is one round of TestGatewayKill9; it returns the times from
// the kill to the port refusing connections and to the first login.
func killRound(t *testing.T, g *gateway, tok string, round int) (toPort, toLogin time.Duration) {
	t.Helper()
	up := g.mustSFTP("alice", tok)
	down := g.mustSFTP("alice", tok)
	// Before the clients' cleanup, which hangs while the daemon is stuck.
	t.Cleanup(func() {
		if t.Failed() {
			abortStuckMounts(t, g.mounts)
		}
	})
	upPath := fmt.Sprintf("/personal-files/up-%d.bin", round)

	var sent, read atomic.Int64
	upErr := make(chan error, 1)
	go func() {
		f, err := up.Create(upPath)
		if err != nil {
			upErr <- err
			return
		}
		_, err = f.ReadFromWithConcurrency(&countingReader{r: prng(uint64(910+round), 4<<30), n: &sent}, 64)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		upErr <- err
	}()
	downErr := make(chan error, 1)
	go func() {
		f, err := down.Open("/personal-files/down.bin")
		if err != nil {
			downErr <- err
			return
		}
		defer f.Close()
		// 4 MiB/s: 64 MiB last 16 s, much longer than the round.
		_, err = io.Copy(io.Discard, &countingReader{r: f, n: &read, rate: 4 * mib, start: time.Now()})
		if err == nil {
			err = errors.New("the download ended before the kill")
		}
		downErr <- err
	}()
	if !waitFor(time.Minute, 10*time.Millisecond, func() bool { return sent.Load() >= 32*mib && read.Load() >= mib }) {
		t.Fatalf("round %d: after a minute only %d bytes uploaded and %d downloaded", round+1, sent.Load(), read.Load())
	}

	pid := g.pid()
	kill := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}

	// The port: refused (not accepted, not timing out).
	refused := waitFor(30*time.Second, 20*time.Millisecond, func() bool {
		c, err := net.DialTimeout("tcp", g.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return false
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	})
	toPort = time.Since(kill)
	if !refused {
		t.Errorf("round %d: port %s still not refusing connections %v after kill -9:\n%s", round+1, g.addr, toPort, processState(pid))
	} else if toPort > killPortFreeWithin {
		t.Errorf("round %d: port refused %v after kill -9, want within %v", round+1, toPort, killPortFreeWithin)
	}

	// The clients: an error, not a hang.
	for _, c := range []struct {
		name string
		ch   chan error
	}{{"upload", upErr}, {"download", downErr}} {
		select {
		case err := <-c.ch:
			if err == nil {
				t.Errorf("round %d: %s: got success after kill -9, want an error", round+1, c.name)
			}
		case <-time.After(killPortFreeWithin):
			t.Errorf("round %d: %s client still hanging %v after kill -9", round+1, c.name, time.Since(kill))
		}
	}

	// The process: reaped, by its parent (the test).
	select {
	case <-g.done:
		if g.exit != -1 {
			t.Errorf("round %d: daemon exit: got %d, want -1 (killed)", round+1, g.exit)
		}
	case <-time.After(killPortFreeWithin):
		t.Fatalf("round %d: daemon not reaped %v after kill -9:\n%s", round+1, time.Since(kill), processState(pid))
	}
	if !waitFor(killPortFreeWithin, 20*time.Millisecond, func() bool { return len(mountsUnder(t, g.mounts)) == 0 }) {
		t.Errorf("round %d: mounts %v after kill -9, want none", round+1, time.Since(kill))
	}

	// Whether this kill left the daemon stuck (the usual case) for the
	// watchdog to free, or it died by itself.
	freed := strings.Contains(g.logs(), watchdogFreedMsg)
	// A new daemon on the same working directory.
	g.start()
	toLogin = firstLogin(t, g, tok, kill)
	t.Logf("round %d: freed by the watchdog: %v", round+1, freed)
	if toLogin > killLoginWithin {
		t.Errorf("round %d: first login %v after kill -9, want within %v", round+1, toLogin, killLoginWithin)
	}
	// What becomes of the unclosed upload is the crash recovery's
	// business (fusefs/recover.go), not this test's: logged only.
	if _, err := statObject(g.minio, g.personalBucket, personalKey("alice", upPath)); !isNotFound(err) {
		t.Logf("round %d: %s, never closed by its client, exists after the restart (stat: %v)", round+1, upPath, err)
	}
	return toPort, toLogin
}

// TestGatewayWatchdog: the watchdog of a daemon survives a SIGTERM sent to
// it alone and is started again when killed. When both it and the daemon
// are killed, the daemon stays stuck on its own mount with the port and
// the control socket, and a new serve unsticks it (stale socket, stale
// mount, old process, busy port). A clean stop ends the watchdog; a stale
// control socket file does not block a start either.
func TestGatewayWatchdog(t *testing.T) {
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)

	wd := watchdogOf(t, g.pid(), 0)
	if err := syscall.Kill(wd, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM to the watchdog %d: %v", wd, err)
	}
	time.Sleep(500 * time.Millisecond)
	if got := watchdogOf(t, g.pid(), 0); got != wd {
		t.Fatalf("watchdog after SIGTERM: got pid %d, want %d still running", got, wd)
	}
	if err := syscall.Kill(wd, syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL to the watchdog %d: %v", wd, err)
	}
	wd = watchdogOf(t, g.pid(), wd)
	t.Logf("watchdog restarted as pid %d", wd)

	// Both killed, with an upload in flight: the daemon is left stuck.
	sc := g.mustSFTP("alice", tok)
	t.Cleanup(func() {
		if t.Failed() {
			abortStuckMounts(t, g.mounts)
		}
	})
	var sent atomic.Int64
	upErr := make(chan error, 1)
	go func() {
		f, err := sc.Create("/personal-files/stuck.bin")
		if err != nil {
			upErr <- err
			return
		}
		_, err = f.ReadFromWithConcurrency(&countingReader{r: prng(920, 4<<30), n: &sent}, 64)
		f.Close()
		upErr <- err
	}()
	if !waitFor(time.Minute, 10*time.Millisecond, func() bool { return sent.Load() >= 16*mib }) {
		t.Fatalf("after a minute only %d bytes uploaded", sent.Load())
	}
	pid := g.pid()
	syscall.Kill(wd, syscall.SIGKILL)
	kill := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	time.Sleep(time.Second)
	t.Logf("daemon 1 s after kill -9 with its watchdog killed: %s", processState(pid))

	// Until it is freed, the old daemon's listening socket still takes
	// connections (and never answers them): log in, not just connect.
	g.start()
	toLogin := firstLogin(t, g, tok, kill)
	t.Logf("kill → new serve accepts a login: %v", toLogin.Round(time.Millisecond))
	if toLogin > oldDaemonBound {
		t.Errorf("first login %v after kill -9, want within %v", toLogin, oldDaemonBound)
	}
	// The crash recovery's business (fusefs/recover.go): logged only.
	if _, err := statObject(g.minio, g.personalBucket, personalKey("alice", "stuck.bin")); !isNotFound(err) {
		t.Logf("stuck.bin, never closed by its client, exists after the restart (stat: %v)", err)
	}
	select {
	case err := <-upErr:
		if err == nil {
			t.Errorf("upload: got success after kill -9, want an error")
		}
	case <-time.After(10 * time.Second):
		t.Errorf("upload client still hanging %v after kill -9", time.Since(kill))
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		if st := processState(pid); !strings.Contains(st, "State:\tZ") {
			t.Errorf("old daemon still running after the new serve started: %s", st)
		}
	}

	// A clean stop ends the watchdog too.
	wd = watchdogOf(t, g.pid(), 0)
	if code := g.stop(); code != 0 {
		t.Fatalf("serve: exit %d after SIGTERM, want 0", code)
	}
	if !waitFor(5*time.Second, 20*time.Millisecond, func() bool { return syscall.Kill(wd, 0) == syscall.ESRCH }) {
		t.Errorf("watchdog %d still running 5 s after the daemon stopped: %s", wd, processState(wd))
	}

	// A stale control socket file: nothing listens on it.
	staleSocket(t, filepath.Join(g.work, "sftpgate.sock"))
	g.start()
	g.waitReady()
	if _, err := g.login("alice", tok); err != nil {
		t.Fatalf("login after a start over a stale control socket: %v", err)
	}
}

// oldDaemonBound is how long a start may take over a daemon killed with
// its watchdog: the wait for the old daemon (15 s) and the port retry
// (10 s) at most, plus a start.
const oldDaemonBound = 30 * time.Second

// firstLogin logs in as alice on the (re)started daemon until it works
// (for 40 s at most) and returns the time since kill.
func firstLogin(t *testing.T, g *gateway, tok string, kill time.Time) time.Duration {
	t.Helper()
	var lerr error
	logged := waitFor(40*time.Second, 50*time.Millisecond, func() bool {
		select {
		case <-g.done:
			return true
		default:
		}
		c, err := g.login("alice", tok)
		if err != nil {
			lerr = err
			return false
		}
		c.Close()
		return true
	})
	since := time.Since(kill)
	select {
	case <-g.done:
		t.Fatalf("the new serve exited with %d:\n%s", g.exit, tail(g.logs(), 40))
	default:
	}
	if !logged {
		t.Fatalf("no login %v after kill -9: %v", since, lerr)
	}
	return since
}

// watchdogOf waits (10 s at most) for the FUSE watchdog child of the
// daemon pid, other than not, and returns its pid.
func watchdogOf(t *testing.T, pid, not int) int {
	t.Helper()
	found := 0
	waitFor(10*time.Second, 20*time.Millisecond, func() bool {
		for _, c := range childrenOf(pid) {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", c))
			if c != not && strings.Contains(string(cmdline), "internal-fuse-watchdog") {
				found = c
				return true
			}
		}
		return false
	})
	if found == 0 {
		t.Fatalf("no watchdog process (other than %d) under the daemon %d", not, pid)
	}
	return found
}

// childrenOf lists the child processes of pid.
func childrenOf(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, p := range tasks {
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// processState describes a process for a failure message: its state and
// where its threads wait.
func processState(pid int) string {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return fmt.Sprintf("pid %d: %v", pid, err)
	}
	var sb strings.Builder
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "State:") || strings.HasPrefix(l, "Threads:") {
			sb.WriteString(l + "; ")
		}
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/wchan", pid))
	for _, p := range tasks {
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 && string(b) != "0" {
			fmt.Fprintf(&sb, "%s=%s ", filepath.Base(filepath.Dir(p)), b)
		}
	}
	return sb.String()
}

// staleSocket leaves a unix socket file at path that nothing listens on,
// as a killed daemon does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatalf("bind %s: %v", path, err)
	}
}

// minMedMax formats the minimum, median and maximum of ds.
func minMedMax(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no sample"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("min %v, median %v, max %v (%d rounds)", r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]), len(s))
}

// abortStuckMounts aborts the FUSE connections of the mounts under root
// and detaches them: a failed test must not leave a process stuck on them.
func abortStuckMounts(t *testing.T, root string) {
	t.Helper()
	f, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(f), "\n") {
		fields := strings.Fields(l)
		if len(fields) < 5 || !(fields[4] == root || strings.HasPrefix(fields[4], root+"/")) {
			continue
		}
		_, minor, _ := strings.Cut(fields[2], ":")
		t.Logf("cleanup: aborting FUSE connection %s of %s", minor, fields[4])
		if _, err := os.Stat("/sys/fs/fuse/connections/" + minor); err != nil {
			syscall.Mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, "")
		}
		os.WriteFile("/sys/fs/fuse/connections/"+minor+"/abort", []byte("1"), 0)
		syscall.Unmount(fields[4], syscall.MNT_DETACH)
	}
}
