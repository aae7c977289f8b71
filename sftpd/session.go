package sftpd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// sftpOnlyMessage is written to stderr for shell and exec requests.
const sftpOnlyMessage = "This service allows SFTP connections only."

// session is one SSH session channel.
type session struct {
	id    string
	conn  *serverConn
	since time.Time
	log   *slog.Logger
	ch    ssh.Channel // set by addSession, before run starts and before Kill can see it
	user  *userState  // shared with the user's other sessions

	handles  atomic.Int64 // open file and directory handles
	refusals atomic.Int64 // opens refused by a handle limit, for the log

	bytesUp, bytesDown atomic.Int64
	op                 atomic.Pointer[string]
	lastActive         atomic.Int64 // unix nanoseconds of the last SFTP traffic
	busy               atomic.Int32 // operations that may run long without traffic (close)
}

func newSession(c *serverConn, us *userState, id string) *session {
	ss := &session{id: id, conn: c, user: us, since: time.Now(), log: c.log.With("session", id)}
	ss.touch()
	return ss
}

// acquireHandle takes one of the session's and the user's handle slots,
// or returns the "too many open files" status that names the limit.
func (ss *session) acquireHandle() error {
	cfg := &ss.conn.srv.cfg
	var msg string
	if !addBelow(&ss.handles, int64(cfg.MaxHandlesPerSession)) {
		msg = fmt.Sprintf("too many open files (limit %d per session)", cfg.MaxHandlesPerSession)
	} else if !addBelow(&ss.user.handles, int64(cfg.MaxHandlesPerUser)) {
		ss.handles.Add(-1)
		msg = fmt.Sprintf("too many open files (limit %d per user)", cfg.MaxHandlesPerUser)
	} else {
		return nil
	}
	// One line per session (and one per 1000 refusals after it), so that
	// a client looping on a refused open cannot flood the log.
	if n := ss.refusals.Add(1); n%1000 == 1 {
		ss.log.Warn("open refused", "reason", msg, "refusals", n,
			"session_handles", ss.handles.Load(), "user_handles", ss.user.handles.Load())
	}
	return &statusError{code: sftp.ErrSSHFxFailure, msg: msg}
}

// releaseHandle gives back a slot of acquireHandle.
func (ss *session) releaseHandle() {
	ss.handles.Add(-1)
	ss.user.handles.Add(-1)
}

func (ss *session) touch() { ss.lastActive.Store(time.Now().UnixNano()) }

func (ss *session) setOp(op string) { ss.op.Store(&op) }

func (ss *session) info() SessionInfo {
	si := SessionInfo{
		ID:        ss.id,
		User:      ss.conn.user,
		Remote:    ss.conn.remote,
		Since:     ss.since,
		BytesUp:   ss.bytesUp.Load(),
		BytesDown: ss.bytesDown.Load(),
	}
	if op := ss.op.Load(); op != nil {
		si.Op = *op
	}
	return si
}

// run answers the channel's requests until the channel closes or the
// session ends on our side (SFTP ended, shell refused). The server's
// WaitGroup was incremented for it by addSession.
func (ss *session) run(reqs <-chan *ssh.Request) {
	srv := ss.conn.srv
	defer srv.wg.Done()
	defer srv.endSession(ss)

	var sftpDone chan struct{} // nil until the SFTP server runs
	// A session that never starts SFTP is closed after IdleTimeout, so it
	// cannot hold one of the user's slots forever.
	var startBy <-chan time.Time
	if idle := srv.cfg.IdleTimeout; idle > 0 {
		t := time.NewTimer(idle)
		defer t.Stop()
		startBy = t.C
	}
	for {
		var req *ssh.Request
		var ok bool
		select {
		case req, ok = <-reqs:
		case <-sftpDone:
			ok = false
		case <-startBy:
			ss.log.Info("idle timeout, closing session that did not start sftp")
			ss.finish(reqs)
			return
		}
		if !ok {
			break
		}
		switch req.Type {
		case "subsystem":
			var p struct{ Name string }
			if sftpDone != nil || ssh.Unmarshal(req.Payload, &p) != nil || p.Name != "sftp" {
				ss.log.Info("subsystem refused", "name", p.Name)
				req.Reply(false, nil)
				continue
			}
			sftpDone = ss.startSFTP(req)
			startBy = nil
			if sftpDone == nil {
				ss.finish(reqs)
				return
			}
		case "shell", "exec":
			if sftpDone != nil {
				req.Reply(false, nil)
				continue
			}
			if c, ok := execChecksum(req); ok {
				ss.checksum(req, reqs, c)
				return
			}
			ss.log.Info("shell refused", "request", req.Type)
			req.Reply(true, nil)
			fmt.Fprintln(ss.ch.Stderr(), sftpOnlyMessage)
			ss.ch.CloseWrite()
			ss.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{1}))
			ss.finish(reqs)
			return
		default:
			// pty-req, x11-req, auth-agent-req@openssh.com, env, signal...
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
	if sftpDone != nil {
		<-sftpDone
	}
	ss.finish(reqs)
}

// execChecksum reports whether req is an exec of a checksum command.
func execChecksum(req *ssh.Request) (checksumCmd, bool) {
	var p struct{ Command string }
	if req.Type != "exec" || ssh.Unmarshal(req.Payload, &p) != nil {
		return checksumCmd{}, false
	}
	return parseChecksum(p.Command)
}

// checksum runs a checksum command on the session and ends it; the
// command stops when the client goes away.
func (ss *session) checksum(req *ssh.Request, reqs <-chan *ssh.Request, c checksumCmd) {
	srv := ss.conn.srv
	req.Reply(true, nil)
	ss.setOp(c.name)
	ctx, cancel := context.WithCancel(srv.ctx)
	defer cancel()
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		ssh.DiscardRequests(reqs)
		cancel()
	}()
	ss.runChecksum(ctx, c)
	ss.ch.Close()
}

// finish closes the channel and answers (false) whatever requests still
// arrive on it until the client closes its side, without holding the
// session's slot meanwhile.
func (ss *session) finish(reqs <-chan *ssh.Request) {
	srv := ss.conn.srv
	ss.ch.Close()
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		ssh.DiscardRequests(reqs)
	}()
}

// startSFTP acquires the user's mount, opens it as the session root and
// starts the SFTP server on the channel. It returns a channel closed when
// the SFTP server has ended and the mount is released, or nil if the
// subsystem could not start (the request is then refused and the channel
// closed).
func (ss *session) startSFTP(req *ssh.Request) chan struct{} {
	srv := ss.conn.srv
	dir, release, err := srv.cfg.Mounts.Acquire(srv.ctx, ss.conn.user)
	if err != nil {
		return ss.refuseSFTP(req, "acquire mount", err)
	}
	var once sync.Once
	releaseOnce := func() {
		once.Do(func() {
			if release != nil {
				release()
			}
		})
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		releaseOnce()
		return ss.refuseSFTP(req, "open mount", err)
	}
	if err := req.Reply(true, nil); err != nil {
		root.Close()
		releaseOnce()
		return nil
	}
	ss.setOp("sftp")
	ss.log.Info("sftp session started")
	done := make(chan struct{})
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		defer close(done)
		defer releaseOnce()
		defer root.Close()
		defer func() {
			if v := recover(); v != nil {
				ss.log.Error("sftp session panic", "panic", fmt.Sprint(v))
				ss.ch.Close()
			}
		}()
		ss.serveSFTP(root)
	}()
	return done
}

func (ss *session) refuseSFTP(req *ssh.Request, what string, err error) chan struct{} {
	ss.log.Warn("sftp session not started", "step", what, "err", err)
	req.Reply(false, nil)
	fmt.Fprintln(ss.ch.Stderr(), "sftpgate: your files are not available right now, try again later")
	return nil
}

// serveSFTP runs the SFTP request server on the channel until it ends.
func (ss *session) serveSFTP(root *os.Root) {
	srv := ss.conn.srv
	h := &handlers{root: root, sess: ss}
	h.pending.limits = &gatherLimits{
		session:   srv.cfg.GatherPerSession / combineWindow,
		user:      &ss.user.windows,
		userLimit: srv.cfg.GatherPerUser / combineWindow,
	}
	h.pending.bufs = &srv.windows
	rwc := &activityChannel{Channel: ss.ch, sess: ss}
	rs := sftp.NewRequestServer(rwc, h.sftpHandlers(), sftp.WithStartDirectory("/"), sftp.WithRSMaxTxPacket(maxReadLength))

	stop := make(chan struct{})
	srv.wg.Add(1)
	go ss.watchGathered(h, stop)
	if srv.cfg.IdleTimeout > 0 {
		srv.wg.Add(1)
		go ss.watchIdle(stop)
	}
	err := rs.Serve()
	close(stop)
	rs.Close()
	ss.log.Info("sftp session ended", "bytes_up", ss.bytesUp.Load(), "bytes_down", ss.bytesDown.Load(), "err", err)
}

// watchIdle closes the session once it has seen no SFTP traffic for
// IdleTimeout while no long operation (a close that uploads) is running.
func (ss *session) watchIdle(stop <-chan struct{}) {
	srv := ss.conn.srv
	defer srv.wg.Done()
	idle := srv.cfg.IdleTimeout
	t := time.NewTimer(idle)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		since := time.Since(time.Unix(0, ss.lastActive.Load()))
		switch {
		case ss.busy.Load() > 0:
			t.Reset(idle)
		case since < idle:
			t.Reset(idle - since)
		default:
			ss.log.Info("idle timeout, closing session", "idle", since.Round(time.Millisecond))
			ss.ch.Close()
			return
		}
	}
}

// activityChannel is the session channel as the SFTP server sees it:
// every read and write marks the session active.
type activityChannel struct {
	ssh.Channel
	sess *session
}

// Read reads SFTP packets from the client.
func (a *activityChannel) Read(p []byte) (int, error) {
	n, err := a.Channel.Read(p)
	if n > 0 {
		a.sess.touch()
	}
	return n, err
}

// Write writes SFTP packets to the client.
func (a *activityChannel) Write(p []byte) (int, error) {
	n, err := a.Channel.Write(p)
	if n > 0 {
		a.sess.touch()
	}
	return n, err
}

// maxReadLength is the largest read the server answers in full, as
// OpenSSH's sftp-server: 256 KiB messages less room for the headers.
// Clients ask for 32 KiB unless told otherwise; larger reads cut the
// per-request cost of a download several times.
const maxReadLength = 256<<10 - 1024
