package daemon

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

	"github.com/sftpgate/sftpgate/internal/control"
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
		_, err := callPath(ctx, path, control.Request{Op: control.OpPing})
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
func startControl(t *testing.T, h controlHandler) (dir string, s *controlServer) {
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

func call(t *testing.T, dir string, req control.Request) (control.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return callPath(ctx, control.Path(dir), req)
}

// callPath is a bare control client: one request to the socket at path,
// its response, and the response's error as an error.
func callPath(ctx context.Context, path string, req control.Request) (control.Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return control.Response{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(control.ClientWait))
	sendErr := json.NewEncoder(c).Encode(req)
	var resp control.Response
	if err := json.NewDecoder(io.LimitReader(c, control.MaxResponse)).Decode(&resp); err != nil {
		return control.Response{}, fmt.Errorf("no answer (send: %v): %w", sendErr, err)
	}
	if resp.Error != "" {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

func TestControlRoundTrip(t *testing.T) {
	dir, _ := startControl(t, func(_ context.Context, req control.Request) control.Response {
		switch req.Op {
		case control.OpPing:
			return control.Response{Message: "pong"}
		case control.OpKill:
			return control.Response{Message: "killed " + req.ID}
		}
		return control.Response{Error: "nope: " + req.Op}
	})
	fi, err := os.Stat(control.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("socket mode: got %v, want 0600", got)
	}
	resp, err := call(t, dir, control.Request{Op: control.OpKill, ID: "abc-1"})
	if err != nil || resp.Message != "killed abc-1" {
		t.Errorf("kill: got %+v, %v, want message %q", resp, err, "killed abc-1")
	}
	_, err = call(t, dir, control.Request{Op: "bogus"})
	if err == nil || err.Error() != "nope: bogus" {
		t.Errorf("bogus: got %v, want the daemon's error %q", err, "nope: bogus")
	}
}

func TestControlBadRequest(t *testing.T) {
	dir, _ := startControl(t, func(context.Context, control.Request) control.Response { return control.Response{Message: "ok"} })
	tests := []struct {
		name string
		send string
		want string
	}{
		{name: "not json", send: "hello\n", want: "bad request"},
		{name: "too large", send: `{"op":"` + strings.Repeat("a", control.MaxRequest) + `"}`, want: "bad request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("unix", control.Path(dir))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			go func() { io.WriteString(c, tt.send) }() // the server may stop reading early
			var resp control.Response
			if err := json.NewDecoder(c).Decode(&resp); err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if !strings.Contains(resp.Error, tt.want) {
				t.Errorf("got error %q, want it to contain %q", resp.Error, tt.want)
			}
		})
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
		leaveStaleSocket(t, control.Path(dir))
		s, _, err := listenControl(dir, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("listenControl over a stale socket: got %v, want nil", err)
		}
		s.serve(func(context.Context, control.Request) control.Response { return control.Response{Message: "pong"} })
		if _, err := call(t, dir, control.Request{Op: control.OpPing}); err != nil {
			t.Errorf("ping: got %v, want nil", err)
		}
		s.close()
		if _, err := os.Lstat(control.Path(dir)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket after close: got %v, want it removed", err)
		}
	})
	t.Run("live daemon refuses a second one", func(t *testing.T) {
		dir, _ := startControl(t, func(context.Context, control.Request) control.Response { return control.Response{} })
		_, _, err := listenControl(dir, slog.New(slog.DiscardHandler))
		want := "another sftpgate is running on " + dir
		if !errors.Is(err, errDaemonRunning) || !strings.Contains(err.Error(), want) {
			t.Errorf("second listenControl: got %v, want %q", err, want)
		}
		if _, err := call(t, dir, control.Request{Op: control.OpPing}); err != nil {
			t.Errorf("first daemon after the refusal: got %v, want it still answering", err)
		}
	})
	t.Run("a live listener that does not answer is not removed", func(t *testing.T) {
		dir := t.TempDir()
		// Listening (connections queue up) but never accepting: this
		// process is alive and not exiting, so it is not a dead daemon.
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: control.Path(dir), Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		_, _, err = listenControl(dir, slog.New(slog.DiscardHandler))
		want := fmt.Sprintf("process %d listens on it but does not answer", os.Getpid())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want an error containing %q", err, want)
		}
		if _, err := os.Lstat(control.Path(dir)); err != nil {
			t.Errorf("socket: got %v, want it left in place", err)
		}
	})
	t.Run("not a socket", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(control.Path(dir), []byte("x"), 0o600); err != nil {
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
	s.serve(func(context.Context, control.Request) control.Response {
		called.Store(true)
		return control.Response{Message: "pong"}
	})
	t.Cleanup(s.close)
	if err := os.Chmod(control.Path(dir), 0o666); err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(publicDir(t), "client.test")
	copyExecutable(t, bin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = []string{peerHelperEnv + "=" + control.Path(dir)}
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

func TestListenControlLongPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	_, _, err := listenControl(dir, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "too long for a unix socket") {
		t.Errorf("listenControl in a deep directory: got %v, want a 'too long' error", err)
	}
}
