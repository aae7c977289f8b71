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
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sftpgate/sftpgate/fusefs"
	"github.com/sftpgate/sftpgate/internal/control"
)

// maxSocketPath is the longest path of a unix socket, with its final NUL.
const maxSocketPath = len(unix.RawSockaddrUnix{}.Path)

// controlHandler answers one request; ctx ends with the request's time
// budget or when the control server closes.
type controlHandler func(ctx context.Context, req control.Request) control.Response

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
	path := control.Path(workdir)
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
		ctx: ctx, cancel: cancel, slots: make(chan struct{}, control.MaxConns),
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
	c, err := net.DialTimeout("unix", path, control.ProbeTimeout)
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
// control.ProbeTimeout.
func pingControl(c *net.UnixConn) bool {
	c.SetDeadline(time.Now().Add(control.ProbeTimeout))
	if err := json.NewEncoder(c).Encode(control.Request{Op: control.OpPing}); err != nil {
		return false
	}
	var resp control.Response
	return json.NewDecoder(io.LimitReader(c, control.MaxResponse)).Decode(&resp) == nil
}

// serve accepts connections in a goroutine that close stops.
func (s *controlServer) serve(h controlHandler) {
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
					s.reply(c, control.Response{Error: "control socket: too many requests at once, try again"})
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
func (s *controlServer) handle(c *net.UnixConn, h controlHandler) {
	cred, err := peerCred(c)
	if err != nil {
		s.log.Warn("control socket: cannot read the peer's credentials", "err", err)
		s.reply(c, control.Response{Error: "control socket: cannot check who is calling"})
		return
	}
	if err := checkPeer(cred, s.uid); err != nil {
		s.log.Warn("control socket: connection refused", "uid", cred.Uid, "pid", cred.Pid)
		s.reply(c, control.Response{Error: err.Error()})
		return
	}
	c.SetReadDeadline(time.Now().Add(control.IOTimeout))
	var req control.Request
	if err := json.NewDecoder(io.LimitReader(c, control.MaxRequest)).Decode(&req); err != nil {
		s.reply(c, control.Response{Error: fmt.Sprintf("control socket: bad request: %v", err)})
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, control.OpTimeout)
	resp := h(ctx, req)
	cancel()
	s.reply(c, resp)
}

func (s *controlServer) reply(c net.Conn, resp control.Response) {
	c.SetWriteDeadline(time.Now().Add(control.IOTimeout))
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
