package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/fusefs"
	"github.com/sftpgate/sftpgate/internal/control"
	"github.com/sftpgate/sftpgate/sftpd"
)

// sessionAdmin is what the control commands need from the SSH server.
type sessionAdmin interface {
	Sessions() []sftpd.SessionInfo
	Kill(id string) error
}

// viewAdmin is what the control commands need from the mount manager.
type viewAdmin interface {
	AcquireWith(ctx context.Context, user string, o fusefs.MountOptions) (string, func(), error)
	Unmount(ctx context.Context, user string, o fusefs.MountOptions) error
	Stats() []fusefs.ViewStats
}

// userLookup tells whether a user exists (auth.Store).
type userLookup interface {
	User(ctx context.Context, login string) (auth.User, error)
}

var (
	_ sessionAdmin = (*sftpd.Server)(nil)
	_ viewAdmin    = (*fusefs.Manager)(nil)
	_ userLookup   = (*auth.Store)(nil)
)

// daemonControl answers the control requests in the daemon.
type daemonControl struct {
	sessions sessionAdmin
	views    viewAdmin
	users    userLookup
	holds    *adminMounts
	log      *slog.Logger
	// node is this daemon in its cluster when the store is shared
	// (PostgreSQL), nil with SQLite: then every answer is this daemon's
	// alone, as without a cluster.
	node *clusterNode
}

// handle implements controlHandler.
func (d *daemonControl) handle(ctx context.Context, req control.Request) control.Response {
	switch req.Op {
	case control.OpPing:
		return control.Response{Message: "pong"}
	case control.OpMounts:
		if d.node != nil {
			return d.clusterMounts(ctx)
		}
		return control.Response{Mounts: d.mounts()}
	case control.OpMount:
		return d.mount(ctx, req)
	case control.OpUnmount:
		return d.unmount(ctx, req)
	case control.OpSessions:
		if d.node != nil {
			return d.clusterSessions(ctx)
		}
		return control.Response{Sessions: sessionRows(d.sessions.Sessions())}
	case control.OpKill:
		return d.kill(ctx, req)
	case control.OpNodes:
		return d.nodes(ctx)
	}
	return control.Response{Error: fmt.Sprintf("control socket: unknown operation %q (is the daemon older than this command?)", req.Op)}
}

// sessionsPerUser counts the sessions of each user.
func sessionsPerUser(ss []sftpd.SessionInfo) map[string]int {
	n := map[string]int{}
	for _, s := range ss {
		n[s.User]++
	}
	return n
}

// mounts lists the views with their sessions and admin holds.
func (d *daemonControl) mounts() []control.MountRow {
	perUser := sessionsPerUser(d.sessions.Sessions())
	held := d.holds.list()
	var rows []control.MountRow
	for _, v := range d.views.Stats() {
		r := control.MountRow{
			User: v.User, Path: v.Dir, Mode: control.Mode(v.ReadOnly), Since: v.Since,
			OpenFiles: v.OpenFiles, DirtyBytes: v.DirtyBytes, UploadsInFlight: v.UploadsInFlight, CleanBytes: v.CleanBytes,
		}
		if !v.ReadOnly {
			r.Sessions = perUser[v.User]
		}
		if h, ok := held[v.User]; ok && h.rw == !v.ReadOnly {
			until := h.until
			r.HeldUntil = &until
		}
		rows = append(rows, r)
	}
	return rows
}

// holdRow is the row of an admin hold.
func holdRow(h adminHold) *control.MountRow {
	until := h.until
	return &control.MountRow{User: h.user, Path: h.dir, Mode: control.Mode(!h.rw), HeldUntil: &until}
}

// mount takes or extends an admin hold on a user's view.
func (d *daemonControl) mount(ctx context.Context, req control.Request) control.Response {
	dur, err := time.ParseDuration(req.For)
	if err != nil || dur <= 0 || dur > MaxAdminMountFor {
		return control.Response{Error: fmt.Sprintf("mount: bad duration %q", req.For)}
	}
	if _, err := d.users.User(ctx, req.User); err != nil {
		if errors.Is(err, auth.ErrNotFound) {
			return control.Response{Error: fmt.Sprintf("mount: no user %q", req.User)}
		}
		return control.Response{Error: fmt.Sprintf("mount: %v", err)}
	}
	h, extended, err := d.holds.mount(ctx, req.User, req.RW, dur)
	var held *heldError
	if errors.As(err, &held) {
		return control.Response{Error: err.Error(), Reason: control.ReasonHeld, Mount: holdRow(held.hold)}
	}
	if err != nil {
		return control.Response{Error: err.Error()}
	}
	res := &control.Mounted{Extended: extended}
	if h.rw {
		res.Sessions = sessionsPerUser(d.sessions.Sessions())[req.User]
	}
	d.log.Info("admin mount", "user", req.User, "dir", h.dir, "rw", h.rw, "until", h.until, "extended", extended)
	return control.Response{Mount: holdRow(h), Mounted: res}
}

// unmount ends an admin hold, unless sessions use the view, and takes the
// view down at once when nothing else holds it.
func (d *daemonControl) unmount(ctx context.Context, req control.Request) control.Response {
	n := sessionsPerUser(d.sessions.Sessions())[req.User]
	dir, down, err := d.holds.unmount(ctx, req.User, n)
	var inUse *inUseError
	switch {
	case errors.As(err, &inUse):
		return control.Response{Error: err.Error(), Reason: control.ReasonInUse,
			Mount: &control.MountRow{User: inUse.user, Path: inUse.dir, Mode: control.ModeRW, Sessions: inUse.sessions}}
	case errors.Is(err, errNoAdminMount):
		return control.Response{Error: err.Error(), Reason: control.ReasonNoAdminMount}
	case err != nil:
		return control.Response{Error: err.Error()}
	}
	switch {
	case down == nil:
		d.log.Info("admin mount ended, view unmounted", "user", req.User, "dir", dir)
		return control.Response{Unmounted: &control.Unmounted{Dir: dir, User: req.User}}
	case errors.Is(down, fusefs.ErrBusy):
		d.log.Info("admin mount ended, view still in use", "user", req.User, "dir", dir, "err", down)
		return control.Response{Unmounted: &control.Unmounted{Dir: dir, User: req.User, InUse: down.Error()}}
	default:
		d.log.Warn("admin mount ended, unmount failed", "user", req.User, "dir", dir, "err", down)
		return control.Response{Error: fmt.Sprintf("unmount: admin mount of %s ended, but its view could not be taken down: %v", req.User, down)}
	}
}

// kill closes a session for the control socket: one of this daemon's, or,
// in a cluster, one of the node that holds it (see clusterKill).
func (d *daemonControl) kill(ctx context.Context, req control.Request) control.Response {
	noSession := control.Response{Error: fmt.Sprintf("kill: no session %q", req.ID), Reason: control.ReasonNoSession}
	if d.node != nil {
		return d.clusterKill(ctx, req, noSession)
	}
	if req.Node != "" {
		return control.Response{Error: fmt.Sprintf("kill: node %q: this daemon is not part of a cluster: its identity store is SQLite", req.Node)}
	}
	return d.localKill(req.ID, noSession)
}

// localKill closes session id of this daemon, or answers noSession.
func (d *daemonControl) localKill(id string, noSession control.Response) control.Response {
	if err := d.sessions.Kill(id); err != nil {
		if isNoSession(err) {
			return noSession
		}
		return control.Response{Error: fmt.Sprintf("kill: %v", err)}
	}
	d.log.Info("session killed by an admin", "session", id)
	return control.Response{}
}

// isNoSession reports whether err says that no session has the id.
func isNoSession(err error) bool { return errors.Is(err, sftpd.ErrNoSession) }

// sessionRows are the rows of the sessions ss.
func sessionRows(ss []sftpd.SessionInfo) []control.SessionRow {
	rows := make([]control.SessionRow, 0, len(ss))
	for _, s := range ss {
		rows = append(rows, control.SessionRow{ID: s.ID, User: s.User, Remote: s.Remote, Since: s.Since, BytesUp: s.BytesUp, BytesDown: s.BytesDown, Op: s.Op})
	}
	return rows
}
