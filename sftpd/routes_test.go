package sftpd

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pkg/sftp"

	"github.com/sftpgate/sftpgate/internal/authapi"
)

// SFTP open flags (draft-ietf-secsh-filexfer-02 6.3).
const (
	fxfRead  = 0x01
	fxfWrite = 0x02
	fxfCreat = 0x08
)

// newRouteHandlers returns the handlers of a session rooted in dir, outside
// any SSH connection.
func newRouteHandlers(t *testing.T, dir string, scopes authapi.Scopes) *handlers {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	srv := &Server{cfg: Config{MaxHandlesPerSession: 16, MaxHandlesPerUser: 16, MaxFileSize: DefaultMaxFileSize}}
	conn := &serverConn{srv: srv, log: discardLogger(), scopes: scopes}
	return &handlers{root: root, sess: newSession(conn, &userState{}, "t")}
}

// Every entry point of the request server runs the prologue: whatever the
// request, the session's gathered writes are on disk before its handler
// runs, and the request shows in Sessions as the operation it is. The
// table must name every method the request server can call, so a new one
// cannot be added without being checked here.
func TestEveryRouteRunsThePrologue(t *testing.T) {
	type call struct {
		method string // of sftpServer
		req    string // sftp.Request.Method
		path   string
		target string
		flags  uint32
		op     string // what Sessions shows after; "" the previous op
	}
	calls := []call{
		{method: "Fileread", req: "Get", path: "/a.txt", op: "download /a.txt"},
		{method: "Filewrite", req: "Put", path: "/new.txt", flags: fxfWrite | fxfCreat, op: "upload /new.txt"},
		{method: "OpenFile", req: "Open", path: "/rw.txt", flags: fxfRead | fxfWrite | fxfCreat, op: "upload /rw.txt"},
		{method: "Filecmd", req: "Setstat", path: "/a.txt", op: "setstat /a.txt"},
		{method: "Filecmd", req: "Mkdir", path: "/d", op: "mkdir /d"},
		{method: "Filecmd", req: "Rename", path: "/a.txt", target: "/b.txt", op: "rename /a.txt"},
		{method: "PosixRename", req: "PosixRename", path: "/b.txt", target: "/a.txt", op: "rename /b.txt"},
		{method: "Filecmd", req: "Link", path: "/l", target: "/a.txt"},
		{method: "Filecmd", req: "Symlink", path: "/s", target: "/a.txt"},
		{method: "Filecmd", req: "Rmdir", path: "/d", op: "rmdir /d"},
		{method: "Filecmd", req: "Remove", path: "/new.txt", op: "delete /new.txt"},
		{method: "StatVFS", req: "StatVFS", path: "/"},
		{method: "Filelist", req: "List", path: "/", op: "list /"},
		{method: "Filelist", req: "Stat", path: "/a.txt"},
		{method: "Filelist", req: "Readlink", path: "/a.txt"},
		{method: "Lstat", req: "Lstat", path: "/a.txt"},
	}
	// RealPath and Readlink(string) take no request and touch no file.
	noFile := []string{"RealPath", "Readlink"}
	typ := reflect.TypeFor[sftpServer]()
	for i := range typ.NumMethod() {
		name := typ.Method(i).Name
		if !slices.Contains(noFile, name) && !slices.ContainsFunc(calls, func(c call) bool { return c.method == name }) {
			t.Errorf("sftpServer.%s is not in the table", name)
		}
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "held.bin"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h := newRouteHandlers(t, dir, nil)
	srv := sftpServer{h}
	held, err := h.root.OpenFile("held.bin", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	comb := &combiner{dst: held, pending: &h.pending}
	h.pending.register(comb)

	for i, c := range calls {
		// A gathered write, less than a window: it stays in memory until
		// something flushes it.
		if err := comb.write([]byte{byte('a' + i)}, int64(i)); err != nil {
			t.Fatal(err)
		}
		if h.pending.windows.Load() == 0 {
			t.Fatal("the write was not gathered")
		}
		h.sess.setOp("before")
		r := sftp.NewRequest(c.req, c.path)
		r.Target, r.Flags = c.target, c.flags
		var res any
		m := reflect.ValueOf(srv).MethodByName(c.method)
		out := m.Call([]reflect.Value{reflect.ValueOf(r)})
		if len(out) == 2 {
			res = out[0].Interface()
		}
		if cl, ok := res.(io.Closer); ok {
			defer cl.Close()
		}
		if n := h.pending.windows.Load(); n != 0 {
			t.Errorf("%s %s: %d gathered windows still held when it returned", c.method, c.req, n)
		}
		onDisk, err := os.ReadFile(filepath.Join(dir, "held.bin"))
		if err != nil || len(onDisk) != i+1 || onDisk[i] != byte('a'+i) {
			t.Errorf("%s %s: held.bin is %q (%v), want the gathered byte %q at %d", c.method, c.req, onDisk, err, byte('a'+i), i)
		}
		want := c.op
		if want == "" {
			want = "before"
		}
		if got := h.sess.info().Op; got != want {
			t.Errorf("%s %s: Sessions shows %q, want %q", c.method, c.req, got, want)
		}
	}
}

// A request the scopes refuse is answered with the status of the check
// before the prologue goes on: nothing flushed, no operation shown.
func TestRouteRefusedTouchesNothing(t *testing.T) {
	scopes := authapi.Scopes{{Workspace: "ws", Path: "pub", Read: true}}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "ws", "pub"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := newRouteHandlers(t, dir, scopes)
	srv := sftpServer{h}
	held, err := os.Create(filepath.Join(dir, "ws", "pub", "held.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	comb := &combiner{dst: held, pending: &h.pending}
	h.pending.register(comb)
	if err := comb.write([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	h.sess.setOp("before")
	for _, tt := range []struct {
		name string
		run  func() error
		want error
	}{
		{"read hidden", func() error { _, err := srv.Fileread(sftp.NewRequest("Get", "/ws/secret")); return err }, sftp.ErrSSHFxNoSuchFile},
		{"write read-only", func() error {
			r := sftp.NewRequest("Put", "/ws/pub/x")
			r.Flags = fxfWrite | fxfCreat
			_, err := srv.Filewrite(r)
			return err
		}, sftp.ErrSSHFxPermissionDenied},
		{"rename out of scope", func() error {
			r := sftp.NewRequest("Rename", "/ws/pub/x")
			r.Target = "/ws/y"
			return srv.Filecmd(r)
		}, sftp.ErrSSHFxPermissionDenied},
		{"list hidden", func() error { _, err := srv.Filelist(sftp.NewRequest("List", "/other")); return err }, sftp.ErrSSHFxNoSuchFile},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if code := sftpCode(err); code != tt.want {
				t.Errorf("got %v, want %v", err, tt.want)
			}
			if got := h.sess.info().Op; got != "before" {
				t.Errorf("Sessions shows %q for a refused request, want the previous operation", got)
			}
			if n := h.pending.windows.Load(); n != 1 {
				t.Errorf("%d gathered windows held after a refused request, want the 1 held before", n)
			}
		})
	}
}

// A panic in a handler fails that request with "internal error" and is
// logged; the session goes on.
func TestServeRecoversPanic(t *testing.T) {
	h := newRouteHandlers(t, t.TempDir(), nil)
	var buf syncBuffer
	h.sess.log = slog.New(slog.NewTextHandler(&buf, nil))
	_, err := serve(h, sftp.NewRequest("Stat", "/x"), route{op: "stat", need: needStat}, func(*request) (int, error) {
		panic("boom")
	})
	if code := sftpCode(err); code != sftp.ErrSSHFxFailure || err.Error() != "internal error" {
		t.Errorf("got %v, want SSH_FX_FAILURE \"internal error\"", err)
	}
	if log := buf.String(); !strings.Contains(log, "sftp handler panic") || !strings.Contains(log, "panic=boom") {
		t.Errorf("log %q lacks the panic", log)
	}
	if _, err := (sftpServer{h}).Lstat(sftp.NewRequest("Lstat", "/")); err != nil {
		t.Errorf("the next request: %v", err)
	}
}
