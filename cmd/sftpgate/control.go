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
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/sftpgate/sftpgate/fusefs"
)

// The control socket: the running daemon answers the administration
// commands (mounts, mount, unmount, sessions) on <workdir>/sftpgate.sock, a
// unix socket of mode 0600 that only the daemon's own uid may use (checked
// with SO_PEERCRED on every connection). One JSON request per connection,
// one JSON response, then the daemon closes it.
const controlSocketName = "sftpgate.sock"

// Limits of the control protocol.
const (
	maxControlRequest   = 64 << 10 // bytes of one request
	maxControlResponse  = 16 << 20 // bytes of one response, as the client reads it
	controlIOTimeout    = 10 * time.Second
	controlOpTimeout    = 45 * time.Second // one request's work (a mount may take a while)
	controlClientWait   = controlOpTimeout + 2*controlIOTimeout
	maxControlConns     = 16 // handled at once; more are refused
	controlDialTimeout  = 5 * time.Second
	controlProbeTimeout = 2 * time.Second
	maxSocketPath       = len(unix.RawSockaddrUnix{}.Path) // with its final NUL
)

// Operations of the control protocol.
const (
	opPing     = "ping"
	opMounts   = "mounts"
	opMount    = "mount"
	opUnmount  = "unmount"
	opSessions = "sessions"
	opKill     = "kill"
)

// ctlRequest is one request on the control socket.
type ctlRequest struct {
	Op   string `json:"op"`
	User string `json:"user,omitempty"`
	ID   string `json:"id,omitempty"`
	For  string `json:"for,omitempty"` // a Go duration
	RW   bool   `json:"rw,omitempty"`
}

// ctlResponse is the answer: Error set when the request failed.
type ctlResponse struct {
	Error    string       `json:"error,omitempty"`
	Message  string       `json:"message,omitempty"`
	Mounts   []mountRow   `json:"mounts,omitempty"`
	Mount    *mountRow    `json:"mount,omitempty"`
	Sessions []sessionRow `json:"sessions,omitempty"`
}

// ctlHandler answers one request; ctx ends with the request's time budget
// or when the control server closes.
type ctlHandler func(ctx context.Context, req ctlRequest) ctlResponse

// controlPath is the control socket of a working directory.
func controlPath(workdir string) string { return filepath.Join(workdir, controlSocketName) }

// errDaemonRunning is returned by listenControl when a daemon answers on
// the socket already.
var errDaemonRunning = errors.New("another sftpgate is running")

// controlServer is the daemon's side of the control socket.
type controlServer struct {
	path string
	l    *net.UnixListener
	uid  int // the only uid allowed
	log  *slog.Logger

	ctx    context.Context // cancelled by close: ends the requests in progress
	cancel context.CancelFunc
	wg     sync.WaitGroup
	slots  chan struct{} // one per connection handled
	once   sync.Once     // close
}

// listenControl binds <workdir>/sftpgate.sock with mode 0600. A socket file
// left by a dead daemon is removed first: nothing listens on it, or the
// process that listens does not answer a ping and is exiting (killed,
// stuck on its own mounts); its pid is returned then, 0 otherwise. If a
// daemon answers, it fails with errDaemonRunning.
func listenControl(workdir string, log *slog.Logger) (s *controlServer, oldPid int, err error) {
	path := controlPath(workdir)
	if len(path) >= maxSocketPath {
		return nil, 0, fmt.Errorf("control socket %s: the path is too long for a unix socket (%d bytes, at most %d): use a shorter working directory", path, len(path), maxSocketPath-1)
	}
	oldPid, err = removeStaleSocket(path)
	if err != nil {
		if errors.Is(err, errDaemonRunning) {
			return nil, 0, fmt.Errorf("%w on %s (control socket %s answers)", err, workdir, path)
		}
		return nil, 0, err
	}
	if oldPid != 0 {
		log.Warn("control socket: removed the socket of a daemon that is exiting", "path", path, "pid", oldPid)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, 0, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, 0, fmt.Errorf("control socket: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &controlServer{
		path: path, l: l, uid: os.Getuid(), log: log,
		ctx: ctx, cancel: cancel, slots: make(chan struct{}, maxControlConns),
	}, oldPid, nil
}

// removeStaleSocket removes path if it is a socket nobody listens on, or
// one whose listener does not answer a ping and is exiting (its pid is
// returned then). A listener that answers is errDaemonRunning; one that
// does not answer but is not exiting is an error too.
func removeStaleSocket(path string) (oldPid int, err error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return 0, fmt.Errorf("control socket %s: exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, controlProbeTimeout)
	switch {
	case err == nil:
		// A killed daemon stuck in exit keeps its listening socket open
		// (connections are queued, never accepted) until it is freed:
		// no need to wait for its answer.
		uc := c.(*net.UnixConn)
		pid := listenerPid(uc)
		exiting := false
		if pid > 0 {
			st, serr := fusefs.ReadProcStat(pid)
			exiting = serr != nil || st.Exiting()
		}
		if !exiting && pingControl(uc) {
			c.Close()
			return 0, errDaemonRunning
		}
		c.Close()
		if !exiting && pid > 0 {
			return 0, fmt.Errorf("control socket %s: process %d listens on it but does not answer (%s): stop it first", path, pid, errDaemonRunning)
		}
		oldPid = pid
	case !errors.Is(err, syscall.ECONNREFUSED):
		return 0, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("control socket: remove stale %s: %w", path, err)
	}
	return oldPid, nil
}

// listenerPid returns the pid of the process that listens at the other
// end of c (0 if unknown).
func listenerPid(c *net.UnixConn) int {
	cred, err := peerCred(c)
	if err != nil {
		return 0
	}
	return int(cred.Pid)
}

// pingControl sends a ping on c and reports whether an answer came within
// controlProbeTimeout.
func pingControl(c *net.UnixConn) bool {
	c.SetDeadline(time.Now().Add(controlProbeTimeout))
	if err := json.NewEncoder(c).Encode(ctlRequest{Op: opPing}); err != nil {
		return false
	}
	var resp ctlResponse
	return json.NewDecoder(io.LimitReader(c, maxControlResponse)).Decode(&resp) == nil
}

// serve accepts connections in a goroutine that close stops.
func (s *controlServer) serve(h ctlHandler) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.l.AcceptUnix()
			if err != nil {
				if s.ctx.Err() == nil {
					s.log.Error("control socket: accept failed, control commands stop working", "err", err)
				}
				return
			}
			select {
			case s.slots <- struct{}{}:
			default:
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					s.reply(c, ctlResponse{Error: "control socket: too many requests at once, try again"})
					c.Close()
				}()
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() { <-s.slots }()
				defer c.Close()
				s.handle(c, h)
			}()
		}
	}()
}

// close stops accepting, cancels the requests in progress, waits for them
// and removes the socket file.
// It may be called more than once.
func (s *controlServer) close() {
	s.once.Do(func() {
		s.cancel()
		s.l.Close() // unlinks the socket file
		s.wg.Wait()
	})
}

// handle serves one connection: peer check, one request, one response.
func (s *controlServer) handle(c *net.UnixConn, h ctlHandler) {
	cred, err := peerCred(c)
	if err != nil {
		s.log.Warn("control socket: cannot read the peer's credentials", "err", err)
		s.reply(c, ctlResponse{Error: "control socket: cannot check who is calling"})
		return
	}
	if err := checkPeer(cred, s.uid); err != nil {
		s.log.Warn("control socket: connection refused", "uid", cred.Uid, "pid", cred.Pid)
		s.reply(c, ctlResponse{Error: err.Error()})
		return
	}
	c.SetReadDeadline(time.Now().Add(controlIOTimeout))
	var req ctlRequest
	if err := json.NewDecoder(io.LimitReader(c, maxControlRequest)).Decode(&req); err != nil {
		s.reply(c, ctlResponse{Error: fmt.Sprintf("control socket: bad request: %v", err)})
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, controlOpTimeout)
	resp := h(ctx, req)
	cancel()
	s.reply(c, resp)
}

func (s *controlServer) reply(c net.Conn, resp ctlResponse) {
	c.SetWriteDeadline(time.Now().Add(controlIOTimeout))
	if err := json.NewEncoder(c).Encode(resp); err != nil {
		s.log.Debug("control socket: reply not sent", "err", err)
	}
}

// peerCred returns the credentials of the process at the other end.
func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	err = rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil {
		return nil, err
	}
	return cred, cerr
}

// checkPeer allows only the daemon's own uid.
func checkPeer(cred *unix.Ucred, uid int) error {
	if int(cred.Uid) == uid {
		return nil
	}
	return fmt.Errorf("control socket: uid %d may not use it: run the command as the daemon's user (uid %d)", cred.Uid, uid)
}

// ctlCall sends one request to the daemon of the command's working
// directory and returns its response, or an error: no daemon, permission
// denied, or the daemon's own error message.
func ctlCall(cmd *cobra.Command, req ctlRequest) (ctlResponse, error) {
	dir, err := workdir(cmd)
	if err != nil {
		return ctlResponse{}, err
	}
	return ctlCallPath(cmd.Context(), dir, controlPath(dir), req)
}

// ctlCallPath is ctlCall for the socket at path (of working directory dir).
func ctlCallPath(ctx context.Context, dir, path string, req ctlRequest) (ctlResponse, error) {
	d := net.Dialer{Timeout: controlDialTimeout}
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
			return ctlResponse{}, fmt.Errorf("no daemon is running on %s (socket %s)", dir, path)
		case errors.Is(err, os.ErrPermission):
			return ctlResponse{}, fmt.Errorf("control socket %s: permission denied: run the command as the daemon's user%s", path, socketOwner(path))
		}
		return ctlResponse{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(controlClientWait))
	// A refused client may find the connection closed before it sends:
	// the daemon's answer (why) is still there to read.
	sendErr := json.NewEncoder(c).Encode(req)
	var resp ctlResponse
	if err := json.NewDecoder(io.LimitReader(c, maxControlResponse)).Decode(&resp); err != nil {
		if sendErr != nil {
			return ctlResponse{}, fmt.Errorf("control socket %s: send: %w", path, sendErr)
		}
		return ctlResponse{}, fmt.Errorf("control socket %s: no answer from the daemon: %w", path, err)
	}
	if resp.Error != "" {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

// socketOwner says who owns the socket, when it can be seen: " (uid 998)".
func socketOwner(path string) string {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return ""
	}
	return fmt.Sprintf(" (uid %d)", st.Uid)
}
