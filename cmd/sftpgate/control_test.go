package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sftpgate/sftpgate/internal/control"
)

func call(t *testing.T, dir string, req control.Request) (control.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return ctlCallPath(ctx, dir, control.Path(dir), req)
}

func TestControlNoDaemon(t *testing.T) {
	dir := t.TempDir()
	_, err := call(t, dir, control.Request{Op: control.OpPing})
	want := fmt.Sprintf("no daemon is running on %s (socket %s)", dir, control.Path(dir))
	if err == nil || err.Error() != want {
		t.Errorf("no socket: got %v, want %q", err, want)
	}

	// A socket left by a dead daemon: same message.
	leaveStaleSocket(t, control.Path(dir))
	_, err = call(t, dir, control.Request{Op: control.OpPing})
	if err == nil || err.Error() != want {
		t.Errorf("stale socket: got %v, want %q", err, want)
	}
}

// leaveStaleSocket creates a socket file at path that nobody listens on,
// as a killed daemon leaves it.
func leaveStaleSocket(t *testing.T, path string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
}

// fakeDaemon answers the control socket of dir with h, as the daemon
// would: one request, one response per connection.
func fakeDaemon(t *testing.T, dir string, h func(control.Request) control.Response) {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: control.Path(dir), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			var req control.Request
			if err := json.NewDecoder(c).Decode(&req); err == nil {
				json.NewEncoder(c).Encode(h(req))
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
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
	want := fmt.Sprintf("sftpgate: no daemon is running on %s (socket %s)\n", dir, control.Path(dir))
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
	since := time.Now().Add(-time.Minute)
	until := time.Now().Add(10 * time.Minute)
	dir := t.TempDir()
	fakeDaemon(t, dir, func(req control.Request) control.Response {
		switch req.Op {
		case control.OpMounts:
			return control.Response{Mounts: []control.MountRow{{User: "bob", Path: "/mnt/bob", Mode: "rw", Since: since, Sessions: 1, OpenFiles: 1, DirtyBytes: 3 << 20}}}
		case control.OpSessions:
			return control.Response{Sessions: []control.SessionRow{{ID: "ab12-1", User: "bob", Remote: "127.0.0.1:5555", Since: since, BytesUp: 3 << 20, Op: "upload /files/a"}}}
		case control.OpKill:
			if req.ID == "ab12-1" {
				return control.Response{}
			}
			return control.Response{Error: fmt.Sprintf("kill: no session %q", req.ID), Reason: control.ReasonNoSession}
		case control.OpMount:
			if req.User == "carol" {
				return control.Response{Error: "mount: held", Reason: control.ReasonHeld, Mount: &control.MountRow{User: "carol", Path: "/mnt/carol", Mode: "rw", HeldUntil: &until}}
			}
			return control.Response{Mount: &control.MountRow{User: "bob", Path: "/mnt/.readonly/bob", Mode: "ro", HeldUntil: &until}, Mounted: &control.Mounted{}}
		case control.OpUnmount:
			switch req.User {
			case "carol":
				return control.Response{Error: "unmount: in use", Reason: control.ReasonInUse, Mount: &control.MountRow{User: "carol", Path: "/mnt/carol", Mode: "rw", Sessions: 2}}
			case "dave":
				return control.Response{Error: "unmount: no", Reason: control.ReasonNoAdminMount}
			}
			return control.Response{Unmounted: &control.Unmounted{Dir: "/mnt/.readonly/bob", User: "bob"}}
		}
		return control.Response{Error: "unexpected " + req.Op}
	})

	code, stdout, stderr := runCLI(t, "--workdir", dir, "mounts", "--json")
	var rows []control.MountRow
	if err := json.Unmarshal([]byte(stdout), &rows); code != 0 || err != nil || len(rows) != 1 || rows[0].DirtyBytes != 3<<20 || rows[0].Sessions != 1 {
		t.Errorf("mounts --json: got exit %d, %v, rows %+v (stderr %q), want one row with 3 MiB dirty and 1 session", code, err, rows, stderr)
	}
	code, stdout, _ = runCLI(t, "--workdir", dir, "mounts")
	if code != 0 || !strings.HasPrefix(stdout, "USER ") || !strings.Contains(stdout, "/mnt/bob") || !strings.Contains(stdout, "3.0 MiB") {
		t.Errorf("mounts: got exit %d, %q, want a table with /mnt/bob and 3.0 MiB", code, stdout)
	}
	code, stdout, _ = runCLI(t, "--workdir", dir, "sessions", "--json")
	var srows []control.SessionRow
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
	want := "bob's view mounted (read-only) until " + formatTime(until) + "; end it with: sftpgate unmount -u bob\n"
	if code != 0 || stdout != "/mnt/.readonly/bob\n" || stderr != want {
		t.Errorf("mount: got exit %d, stdout %q, stderr %q, want the path and %q", code, stdout, stderr, want)
	}
	code, _, stderr = runCLI(t, "--workdir", dir, "mount", "-u", "carol", "--rw")
	want = "sftpgate: mount: carol's view is already mounted read-write by an admin until " + formatTime(until) + ": end it first with: sftpgate unmount -u carol\n"
	if code != exitFailure || stderr != want {
		t.Errorf("mount carol held: got exit %d, stderr %q, want %q", code, stderr, want)
	}
	code, _, stderr = runCLI(t, "--workdir", dir, "mount", "-u", "bob", "--for", "0s")
	if code != exitUsage || !strings.Contains(stderr, "--for") {
		t.Errorf("mount --for 0s: got exit %d, stderr %q, want a usage error", code, stderr)
	}
	for _, tt := range []struct{ user, want string }{
		{"carol", "sftpgate: unmount: /mnt/carol is in use by 2 SFTP session(s) of carol: wait for them to end or end them (sftpgate sessions, sftpgate sessions kill ID)\n"},
		{"dave", "sftpgate: unmount: dave has no admin mount (see sftpgate mounts)\n"},
	} {
		if code, _, stderr := runCLI(t, "--workdir", dir, "unmount", "-u", tt.user); code != exitFailure || stderr != tt.want {
			t.Errorf("unmount %s: got exit %d, stderr %q, want %q", tt.user, code, stderr, tt.want)
		}
	}
	code, stdout, _ = runCLI(t, "--workdir", dir, "unmount", "-u", "bob")
	if code != 0 || stdout != "/mnt/.readonly/bob: admin mount of bob ended, view unmounted\n" {
		t.Errorf("unmount: got exit %d, %q", code, stdout)
	}
}

// TestMountedMessage checks the sentence "sftpgate mount" prints.
func TestMountedMessage(t *testing.T) {
	until := time.Date(2026, 12, 8, 1, 0, 0, 0, time.Local)
	tests := []struct {
		name string
		row  control.MountRow
		res  control.Mounted
		want string
	}{
		{"read-only", control.MountRow{User: "bob", Mode: "ro"}, control.Mounted{}, "bob's view mounted (read-only) until 2026-12-08 01:00:00; end it with: sftpgate unmount -u bob"},
		{"extended, shared", control.MountRow{User: "carol", Mode: "rw"}, control.Mounted{Extended: true, Sessions: 2}, "carol's view admin mount extended (read-write, shared with 2 open SFTP session(s)) until 2026-12-08 01:00:00; end it with: sftpgate unmount -u carol"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.row.HeldUntil = &until
			if got := mountedMessage(&tt.row, &tt.res); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
