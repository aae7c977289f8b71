package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sftpgate/sftpgate/fusefs"
	"github.com/sftpgate/sftpgate/sftpd"
)

// peerHelperEnv makes the test binary act as a control client on the
// socket it names (see TestMain), for the other-uid test.
const peerHelperEnv = "SFTPGATE_TEST_CONTROL_CLIENT"

// TestMain lets the test binary run as a bare control client when
// peerHelperEnv is set: it sends a ping and prints the error it gets.
func TestMain(m *testing.M) {
	if path := os.Getenv(peerHelperEnv); path != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := ctlCallPath(ctx, filepath.Dir(path), path, ctlRequest{Op: opPing})
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("pong")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestCheckPeer(t *testing.T) {
	tests := []struct {
		name    string
		peerUID uint32
		uid     int
		wantErr string
	}{
		{name: "same uid", peerUID: 1000, uid: 1000},
		{name: "root daemon, root client", peerUID: 0, uid: 0},
		{name: "other uid", peerUID: 65534, uid: 0, wantErr: "control socket: uid 65534 may not use it: run the command as the daemon's user (uid 0)"},
		{name: "root client, non-root daemon", peerUID: 0, uid: 998, wantErr: "uid 0 may not use it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPeer(&unix.Ucred{Pid: 42, Uid: tt.peerUID, Gid: tt.peerUID}, tt.uid)
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("checkPeer: got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("checkPeer: got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// startControl serves h on a control socket in a new directory.
func startControl(t *testing.T, h ctlHandler) (dir string, s *controlServer) {
	t.Helper()
	dir = t.TempDir()
	s, _, err := listenControl(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("listenControl: %v", err)
	}
	s.serve(h)
	t.Cleanup(s.close)
	return dir, s
}

func call(t *testing.T, dir string, req ctlRequest) (ctlResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return ctlCallPath(ctx, dir, controlPath(dir), req)
}

func TestControlRoundTrip(t *testing.T) {
	dir, _ := startControl(t, func(_ context.Context, req ctlRequest) ctlResponse {
		switch req.Op {
		case opPing:
			return ctlResponse{Message: "pong"}
		case opKill:
			return ctlResponse{Message: "killed " + req.ID}
		}
		return ctlResponse{Error: "nope: " + req.Op}
	})
	fi, err := os.Stat(controlPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("socket mode: got %v, want 0600", got)
	}
	resp, err := call(t, dir, ctlRequest{Op: opKill, ID: "abc-1"})
	if err != nil || resp.Message != "killed abc-1" {
		t.Errorf("kill: got %+v, %v, want message %q", resp, err, "killed abc-1")
	}
	_, err = call(t, dir, ctlRequest{Op: "bogus"})
	if err == nil || err.Error() != "nope: bogus" {
		t.Errorf("bogus: got %v, want the daemon's error %q", err, "nope: bogus")
	}
}

func TestControlBadRequest(t *testing.T) {
	dir, _ := startControl(t, func(context.Context, ctlRequest) ctlResponse { return ctlResponse{Message: "ok"} })
	tests := []struct {
		name string
		send string
		want string
	}{
		{name: "not json", send: "hello\n", want: "bad request"},
		{name: "too large", send: `{"op":"` + strings.Repeat("a", maxControlRequest) + `"}`, want: "bad request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("unix", controlPath(dir))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			go func() { io.WriteString(c, tt.send) }() // the server may stop reading early
			var resp ctlResponse
			if err := json.NewDecoder(c).Decode(&resp); err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if !strings.Contains(resp.Error, tt.want) {
				t.Errorf("got error %q, want it to contain %q", resp.Error, tt.want)
			}
		})
	}
}

func TestControlNoDaemon(t *testing.T) {
	dir := t.TempDir()
	_, err := call(t, dir, ctlRequest{Op: opPing})
	want := fmt.Sprintf("no daemon is running on %s (socket %s)", dir, controlPath(dir))
	if err == nil || err.Error() != want {
		t.Errorf("no socket: got %v, want %q", err, want)
	}

	// A socket left by a dead daemon: same message.
	leaveStaleSocket(t, controlPath(dir))
	_, err = call(t, dir, ctlRequest{Op: opPing})
	if err == nil || err.Error() != want {
		t.Errorf("stale socket: got %v, want %q", err, want)
	}
}

// leaveStaleSocket creates a socket file at path that nobody listens on.
func leaveStaleSocket(t *testing.T, path string) {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
}

func TestListenControlStale(t *testing.T) {
	t.Run("stale socket is replaced", func(t *testing.T) {
		dir := t.TempDir()
		leaveStaleSocket(t, controlPath(dir))
		s, _, err := listenControl(dir, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("listenControl over a stale socket: got %v, want nil", err)
		}
		s.serve(func(context.Context, ctlRequest) ctlResponse { return ctlResponse{Message: "pong"} })
		if _, err := call(t, dir, ctlRequest{Op: opPing}); err != nil {
			t.Errorf("ping: got %v, want nil", err)
		}
		s.close()
		if _, err := os.Lstat(controlPath(dir)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket after close: got %v, want it removed", err)
		}
	})
	t.Run("live daemon refuses a second one", func(t *testing.T) {
		dir, _ := startControl(t, func(context.Context, ctlRequest) ctlResponse { return ctlResponse{} })
		_, _, err := listenControl(dir, slog.New(slog.DiscardHandler))
		want := "another sftpgate is running on " + dir
		if !errors.Is(err, errDaemonRunning) || !strings.Contains(err.Error(), want) {
			t.Errorf("second listenControl: got %v, want %q", err, want)
		}
		if _, err := call(t, dir, ctlRequest{Op: opPing}); err != nil {
			t.Errorf("first daemon after the refusal: got %v, want it still answering", err)
		}
	})
	t.Run("a live listener that does not answer is not removed", func(t *testing.T) {
		dir := t.TempDir()
		// Listening (connections queue up) but never accepting: this
		// process is alive and not exiting, so it is not a dead daemon.
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: controlPath(dir), Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		_, _, err = listenControl(dir, slog.New(slog.DiscardHandler))
		want := fmt.Sprintf("process %d listens on it but does not answer", os.Getpid())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want an error containing %q", err, want)
		}
		if _, err := os.Lstat(controlPath(dir)); err != nil {
			t.Errorf("socket: got %v, want it left in place", err)
		}
	})
	t.Run("not a socket", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(controlPath(dir), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := listenControl(dir, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("got %v, want a 'not a socket' error", err)
		}
	})
}

// TestControlRefusesOtherUID opens the socket to everybody (0666 in a
// 0755 directory), so that only the SO_PEERCRED check stands, and runs a
// client as nobody.
func TestControlRefusesOtherUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another uid; TestCheckPeer covers the check")
	}
	var called atomic.Bool
	dir := publicDir(t)
	s, _, err := listenControl(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.serve(func(context.Context, ctlRequest) ctlResponse { called.Store(true); return ctlResponse{Message: "pong"} })
	t.Cleanup(s.close)
	if err := os.Chmod(controlPath(dir), 0o666); err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(publicDir(t), "client.test")
	copyExecutable(t, bin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = []string{peerHelperEnv + "=" + controlPath(dir)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("client as nobody: got %v, output %q, want exit 1", err, out)
	}
	want := "control socket: uid 65534 may not use it: run the command as the daemon's user (uid 0)\n"
	if string(out) != want {
		t.Errorf("client as nobody: got %q, want %q", out, want)
	}
	if called.Load() {
		t.Errorf("the handler ran for a refused client")
	}
}

// publicDir is a new directory that every user may enter, removed at the
// end of the test.
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sftpgate-ctl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyExecutable copies the running test binary to dst, mode 0755.
func copyExecutable(t *testing.T, dst string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// runCLI runs the command line in-process and returns its exit code,
// stdout and stderr.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code = run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestControlCommandsNoDaemon(t *testing.T) {
	dir := t.TempDir()
	want := fmt.Sprintf("sftpgate: no daemon is running on %s (socket %s)\n", dir, controlPath(dir))
	for _, args := range [][]string{
		{"mounts"}, {"mounts", "--json"}, {"mount", "-u", "bob"}, {"unmount", "-u", "bob"},
		{"sessions"}, {"sessions", "kill", "x-1"},
	} {
		code, stdout, stderr := runCLI(t, append([]string{"--workdir", dir}, args...)...)
		if code != exitFailure || stdout != "" || stderr != want {
			t.Errorf("%s: got exit %d, stdout %q, stderr %q, want exit 1 and %q", strings.Join(args, " "), code, stdout, stderr, want)
		}
	}
}

func TestControlCommandsOutput(t *testing.T) {
	d, views, sess := newTestControl(t)
	since := time.Now().Add(-time.Minute)
	views.stats = []fusefs.ViewStats{{User: "bob", Dir: "/mnt/bob", Since: since, Holders: 1, OpenFiles: 1, DirtyBytes: 3 << 20}}
	sess.list = []sftpd.SessionInfo{{ID: "ab12-1", User: "bob", Remote: "127.0.0.1:5555", Since: since, BytesUp: 3 << 20, Op: "upload /files/a"}}
	dir := t.TempDir()
	s, _, err := listenControl(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.serve(d.handle)
	t.Cleanup(s.close)

	code, stdout, stderr := runCLI(t, "--workdir", dir, "mounts", "--json")
	var rows []mountRow
	if err := json.Unmarshal([]byte(stdout), &rows); code != 0 || err != nil || len(rows) != 1 || rows[0].DirtyBytes != 3<<20 || rows[0].Sessions != 1 {
		t.Errorf("mounts --json: got exit %d, %v, rows %+v (stderr %q), want one row with 3 MiB dirty and 1 session", code, err, rows, stderr)
	}
	code, stdout, _ = runCLI(t, "--workdir", dir, "mounts")
	if code != 0 || !strings.HasPrefix(stdout, "USER ") || !strings.Contains(stdout, "/mnt/bob") || !strings.Contains(stdout, "3.0 MiB") {
		t.Errorf("mounts: got exit %d, %q, want a table with /mnt/bob and 3.0 MiB", code, stdout)
	}
	code, stdout, _ = runCLI(t, "--workdir", dir, "sessions", "--json")
	var srows []sessionRow
	if err := json.Unmarshal([]byte(stdout), &srows); code != 0 || err != nil || len(srows) != 1 || srows[0].ID != "ab12-1" || srows[0].BytesUp != 3<<20 || srows[0].Op != "upload /files/a" {
		t.Errorf("sessions --json: got exit %d, %v, %+v", code, err, srows)
	}
	code, stdout, _ = runCLI(t, "--workdir", dir, "sessions")
	if code != 0 || !strings.Contains(stdout, "ab12-1") || !strings.Contains(stdout, "127.0.0.1:5555") {
		t.Errorf("sessions: got exit %d, %q, want the session's row", code, stdout)
	}
	code, stdout, _ = runCLI(t, "--workdir", dir, "sessions", "kill", "ab12-1")
	if code != 0 || stdout != "session ab12-1 closed\n" {
		t.Errorf("sessions kill: got exit %d, %q", code, stdout)
	}
	code, _, stderr = runCLI(t, "--workdir", dir, "sessions", "kill", "zz-9")
	if code != exitFailure || stderr != "sftpgate: kill: no session \"zz-9\" (see sftpgate sessions)\n" {
		t.Errorf("sessions kill zz-9: got exit %d, stderr %q", code, stderr)
	}
	code, stdout, stderr = runCLI(t, "--workdir", dir, "mount", "-u", "bob", "--for", "10m")
	if code != 0 || stdout != "/mnt/.readonly/bob\n" || !strings.Contains(stderr, "read-only") {
		t.Errorf("mount: got exit %d, stdout %q, stderr %q, want the path", code, stdout, stderr)
	}
	code, _, stderr = runCLI(t, "--workdir", dir, "mount", "-u", "bob", "--for", "0s")
	if code != exitUsage || !strings.Contains(stderr, "--for") {
		t.Errorf("mount --for 0s: got exit %d, stderr %q, want a usage error", code, stderr)
	}
	code, stdout, _ = runCLI(t, "--workdir", dir, "unmount", "-u", "bob")
	if code != 0 || !strings.Contains(stdout, "admin mount of bob ended") {
		t.Errorf("unmount: got exit %d, %q", code, stdout)
	}
}

func TestListenControlLongPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	_, _, err := listenControl(dir, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "too long for a unix socket") {
		t.Errorf("listenControl in a deep directory: got %v, want a 'too long' error", err)
	}
}
