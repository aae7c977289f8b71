package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/fusefs"
	"github.com/sftpgate/sftpgate/sftpd"
)

// Bounds of "mount --for".
const (
	defaultAdminMountFor = time.Hour
	maxAdminMountFor     = 30 * 24 * time.Hour
)

// mountRow is one mounted view, as "mounts" prints it (and its --json).
type mountRow struct {
	User            string     `json:"user"`
	Path            string     `json:"path"`
	Mode            string     `json:"mode"` // "rw" (the user's own view) or "ro" (read-only admin view)
	Since           time.Time  `json:"since"`
	Sessions        int        `json:"sessions"` // SFTP sessions of the user using this view
	OpenFiles       int        `json:"open_files"`
	DirtyBytes      int64      `json:"dirty_bytes"` // written, waiting for upload
	UploadsInFlight int        `json:"uploads_in_flight"`
	CleanBytes      int64      `json:"clean_bytes"`          // cached, uploaded
	HeldUntil       *time.Time `json:"held_until,omitempty"` // end of an admin mount ("sftpgate mount")
}

// newMountsCmd is "sftpgate mounts".
func newMountsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "mounts",
		Short: "List the mounted views of the running daemon",
		Long: `List the FUSE views the running daemon has mounted: user, mode (rw: the
user's own view, shared by their SFTP sessions; ro: a read-only admin view),
path, mounted since, open SFTP sessions, open files, bytes written and
waiting for upload (DIRTY), uploads in flight, cached clean bytes, and the
end of an admin mount ("sftpgate mount").`,
		Example: `  sftpgate mounts
  sftpgate --workdir /var/lib/sftpgate mounts --json`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			resp, err := ctlCall(cmd, ctlRequest{Op: opMounts})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), nonNil(resp.Mounts))
			}
			tw := newTable(cmd.OutOrStdout(), "USER", "MODE", "PATH", "SINCE", "SESSIONS", "FILES", "DIRTY", "UPLOADING", "CLEAN", "HELD UNTIL")
			for _, m := range resp.Mounts {
				held := "-"
				if m.HeldUntil != nil {
					held = formatTime(*m.HeldUntil)
				}
				row(tw, m.User, m.Mode, m.Path, formatTime(m.Since), fmt.Sprint(m.Sessions), fmt.Sprint(m.OpenFiles),
					formatBytes(m.DirtyBytes), fmt.Sprint(m.UploadsInFlight), formatBytes(m.CleanBytes), held)
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array (sizes in bytes, times in RFC 3339)")
	return cmd
}

// newMountCmd is "sftpgate mount".
func newMountCmd() *cobra.Command {
	var (
		login string
		dur   time.Duration
		rw    bool
	)
	cmd := &cobra.Command{
		Use:   "mount -u LOGIN [--for 1h] [--rw]",
		Short: "Mount a user's view without a session, for inspection",
		Long: `Ask the running daemon to mount the view of a user and keep it mounted
for a while (--for, 1h by default), or until "sftpgate unmount -u LOGIN".
It prints the path.

The view is read-only unless --rw. A read-only view is a separate mount at
<mountRoot>/.readonly/LOGIN, beside the user's own view: it can be asked for
while the user has sessions, and changes nothing for them. With --rw the
path is the user's own view <mountRoot>/LOGIN, the very mount their SFTP
sessions use (shared if it is mounted already); changes made there are
uploaded like theirs.

A user has at most one admin mount: asking again in the same mode extends
it, asking in the other mode is refused until it is unmounted.`,
		Example: `  sftpgate mount -u alice
  ls -l "$(sftpgate mount -u alice --for 10m)"
  sftpgate mount -u alice --rw --for 2h`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			if dur <= 0 || dur > maxAdminMountFor {
				return usagef("--for: want a duration between 1s and %v, got %v", maxAdminMountFor, dur)
			}
			resp, err := ctlCall(cmd, ctlRequest{Op: opMount, User: login, For: dur.String(), RW: rw})
			if err != nil {
				return err
			}
			if resp.Mount == nil {
				return errors.New("the daemon sent no mount in its answer")
			}
			if resp.Message != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), resp.Message)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), resp.Mount.Path)
			return err
		}),
	}
	addLoginFlag(cmd, &login, "login of the user whose view to mount")
	cmd.Flags().DurationVar(&dur, "for", defaultAdminMountFor, "how long the daemon keeps the view mounted")
	cmd.Flags().BoolVar(&rw, "rw", false, "mount the user's own read-write view instead of a read-only one")
	return cmd
}

// newUnmountCmd is "sftpgate unmount".
func newUnmountCmd() *cobra.Command {
	var login string
	cmd := &cobra.Command{
		Use:   "unmount -u LOGIN",
		Short: `End an admin mount made with "sftpgate mount"`,
		Long: `End the admin mount of a user before its time and unmount its view: the
view is gone when the command returns. It is refused while SFTP sessions of
the user use the view (a --rw admin mount is the user's own view): see
"sftpgate sessions". If something else still holds the view (a session just
logging in), the hold ends and the daemon takes the view down once nothing
uses it any more (after the idle delay of the mounts, 30s).`,
		Example: "  sftpgate unmount -u alice",
		Args:    noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			resp, err := ctlCall(cmd, ctlRequest{Op: opUnmount, User: login})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), resp.Message)
			return err
		}),
	}
	addLoginFlag(cmd, &login, "login of the user whose admin mount to end")
	return cmd
}

// printJSON writes v indented, with a final newline.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// nonNil makes an empty list print as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// formatBytes is a size for tables: "0", "512 B", "12.3 MiB".
func formatBytes(n int64) string {
	if n == 0 {
		return "0"
	}
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}
	f := float64(n) / 1024
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

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
}

// handle implements ctlHandler.
func (d *daemonControl) handle(ctx context.Context, req ctlRequest) ctlResponse {
	switch req.Op {
	case opPing:
		return ctlResponse{Message: "pong"}
	case opMounts:
		return ctlResponse{Mounts: d.mounts()}
	case opMount:
		return d.mount(ctx, req)
	case opUnmount:
		return d.unmount(ctx, req)
	case opSessions:
		return ctlResponse{Sessions: sessionRows(d.sessions.Sessions())}
	case opKill:
		return d.kill(req)
	}
	return ctlResponse{Error: fmt.Sprintf("control socket: unknown operation %q (is the daemon older than this command?)", req.Op)}
}

// mounts lists the views with their sessions and admin holds.
func (d *daemonControl) mounts() []mountRow {
	perUser := map[string]int{}
	for _, s := range d.sessions.Sessions() {
		perUser[s.User]++
	}
	held := d.holds.list()
	var rows []mountRow
	for _, v := range d.views.Stats() {
		r := mountRow{
			User: v.User, Path: v.Dir, Mode: mode(v.ReadOnly), Since: v.Since,
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

// mount takes or extends an admin hold on a user's view.
func (d *daemonControl) mount(ctx context.Context, req ctlRequest) ctlResponse {
	dur, err := time.ParseDuration(req.For)
	if err != nil || dur <= 0 || dur > maxAdminMountFor {
		return ctlResponse{Error: fmt.Sprintf("mount: bad duration %q", req.For)}
	}
	if _, err := d.users.User(ctx, req.User); err != nil {
		if errors.Is(err, auth.ErrNotFound) {
			return ctlResponse{Error: fmt.Sprintf("mount: no user %q", req.User)}
		}
		return ctlResponse{Error: fmt.Sprintf("mount: %v", err)}
	}
	h, extended, err := d.holds.mount(ctx, req.User, req.RW, dur)
	if err != nil {
		return ctlResponse{Error: err.Error()}
	}
	what := "read-only"
	if h.rw {
		what = "read-write"
		n := 0
		for _, s := range d.sessions.Sessions() {
			if s.User == req.User {
				n++
			}
		}
		if n > 0 {
			what += fmt.Sprintf(", shared with %d open SFTP session(s)", n)
		}
	}
	verb := "mounted"
	if extended {
		verb = "admin mount extended"
	}
	d.log.Info("admin mount", "user", req.User, "dir", h.dir, "rw", h.rw, "until", h.until, "extended", extended)
	until := h.until
	return ctlResponse{
		Mount:   &mountRow{User: req.User, Path: h.dir, Mode: mode(!h.rw), HeldUntil: &until},
		Message: fmt.Sprintf("%s's view %s (%s) until %s; end it with: sftpgate unmount -u %s", req.User, verb, what, formatTime(until), req.User),
	}
}

// unmount ends an admin hold, unless sessions use the view, and takes the
// view down at once when nothing else holds it.
func (d *daemonControl) unmount(ctx context.Context, req ctlRequest) ctlResponse {
	n := 0
	for _, s := range d.sessions.Sessions() {
		if s.User == req.User {
			n++
		}
	}
	dir, down, err := d.holds.unmount(ctx, req.User, n)
	if err != nil {
		return ctlResponse{Error: err.Error()}
	}
	switch {
	case down == nil:
		d.log.Info("admin mount ended, view unmounted", "user", req.User, "dir", dir)
		return ctlResponse{Message: fmt.Sprintf("%s: admin mount of %s ended, view unmounted", dir, req.User)}
	case errors.Is(down, fusefs.ErrBusy):
		d.log.Info("admin mount ended, view still in use", "user", req.User, "dir", dir, "err", down)
		return ctlResponse{Message: fmt.Sprintf("%s: admin mount of %s ended; the view is still in use (%v) and is taken down once nothing uses it any more", dir, req.User, down)}
	default:
		d.log.Warn("admin mount ended, unmount failed", "user", req.User, "dir", dir, "err", down)
		return ctlResponse{Error: fmt.Sprintf("unmount: admin mount of %s ended, but its view could not be taken down: %v", req.User, down)}
	}
}

// adminMounts holds the views mounted by "sftpgate mount", one per user,
// until their time is up, "unmount", or close.
type adminMounts struct {
	views viewAdmin
	log   *slog.Logger
	// expiring counts the expiries taking a view down; close waits for them.
	expiring sync.WaitGroup

	// mu guards the fields below; never held across AcquireWith, Unmount
	// or a release (they may mount or unmount).
	mu     sync.Mutex
	closed bool
	holds  map[string]*adminHold
}

// adminHold is one admin mount.
type adminHold struct {
	user    string
	dir     string
	rw      bool
	until   time.Time
	release func()
	timer   *time.Timer
}

func newAdminMounts(views viewAdmin, log *slog.Logger) *adminMounts {
	return &adminMounts{views: views, log: log, holds: map[string]*adminHold{}}
}

// errAdminClosed is returned once the daemon is stopping.
var errAdminClosed = errors.New("mount: the daemon is stopping")

// mount mounts user's view (read-only unless rw) and holds it for d, or
// extends the hold already there in the same mode. It returns a copy of
// the hold.
func (a *adminMounts) mount(ctx context.Context, user string, rw bool, d time.Duration) (h adminHold, extended bool, err error) {
	if h, ok, err := a.extend(user, rw, d); ok || err != nil {
		return h, ok, err
	}
	dir, release, err := a.views.AcquireWith(ctx, user, fusefs.MountOptions{ReadOnly: !rw})
	if err != nil {
		return adminHold{}, false, err // "mount bob: …" already
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		release()
		return adminHold{}, false, errAdminClosed
	}
	if a.holds[user] != nil { // a concurrent request won
		a.mu.Unlock()
		release()
		return a.extend(user, rw, d)
	}
	nh := &adminHold{user: user, dir: dir, rw: rw, until: time.Now().Add(d), release: release}
	nh.timer = time.AfterFunc(d, func() { a.expire(nh) })
	a.holds[user] = nh
	out := *nh
	a.mu.Unlock()
	return out, false, nil
}

// extend pushes the end of user's hold to now+d; ok is false when there is
// no hold; a hold of the other mode is an error.
func (a *adminMounts) extend(user string, rw bool, d time.Duration) (h adminHold, ok bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return adminHold{}, false, errAdminClosed
	}
	old := a.holds[user]
	if old == nil {
		return adminHold{}, false, nil
	}
	if old.rw != rw {
		return adminHold{}, false, fmt.Errorf("mount: %s's view is already mounted %s by an admin until %s: end it first with: sftpgate unmount -u %s",
			user, modeWord(old.rw), formatTime(old.until), user)
	}
	old.until = time.Now().Add(d)
	old.timer.Reset(d)
	return *old, true, nil
}

func modeWord(rw bool) string {
	if rw {
		return "read-write"
	}
	return "read-only"
}

// expireUnmountTimeout bounds the unmount of a view whose admin mount
// expired.
const expireUnmountTimeout = 30 * time.Second

// expire ends a hold whose time is up and takes its view down when nothing
// else holds it.
func (a *adminMounts) expire(h *adminHold) {
	a.mu.Lock()
	if a.holds[h.user] != h || time.Now().Before(h.until) {
		a.mu.Unlock() // ended meanwhile, or extended just now (the timer was reset)
		return
	}
	delete(a.holds, h.user)
	a.expiring.Add(1) // before close can wait: it takes mu first
	a.mu.Unlock()
	defer a.expiring.Done()
	ctx, cancel := context.WithTimeout(context.Background(), expireUnmountTimeout)
	defer cancel()
	switch err := a.end(ctx, h); {
	case err == nil:
		a.log.Info("admin mount expired, view unmounted", "user", h.user, "dir", h.dir)
	case errors.Is(err, fusefs.ErrBusy):
		a.log.Info("admin mount expired, view still in use", "user", h.user, "dir", h.dir, "err", err)
	default:
		a.log.Warn("admin mount expired, unmount failed", "user", h.user, "dir", h.dir, "err", err)
	}
}

// end releases a hold taken out of holds and unmounts its view. It returns
// nil when the view is gone, an error wrapping fusefs.ErrBusy when
// something else still holds it.
func (a *adminMounts) end(ctx context.Context, h *adminHold) error {
	h.release()
	err := a.views.Unmount(ctx, h.user, fusefs.MountOptions{ReadOnly: !h.rw})
	if errors.Is(err, fusefs.ErrNotMounted) {
		return nil // taken down meanwhile (idle, or at shutdown)
	}
	return err
}

// unmount ends user's hold and unmounts its view; sessions is the number
// of SFTP sessions of the user, which refuses ending a read-write hold
// (the view is theirs). err is set when the hold was not ended; down is
// the result of taking the view down (see end).
func (a *adminMounts) unmount(ctx context.Context, user string, sessions int) (dir string, down, err error) {
	a.mu.Lock()
	h := a.holds[user]
	if h == nil {
		a.mu.Unlock()
		return "", nil, fmt.Errorf("unmount: %s has no admin mount (see sftpgate mounts)", user)
	}
	if h.rw && sessions > 0 {
		a.mu.Unlock()
		return "", nil, fmt.Errorf("unmount: %s is in use by %d SFTP session(s) of %s: wait for them to end or end them (sftpgate sessions, sftpgate sessions kill ID)", h.dir, sessions, user)
	}
	delete(a.holds, user)
	h.timer.Stop()
	a.mu.Unlock()
	return h.dir, a.end(ctx, h), nil
}

// list returns a copy of the holds by user.
func (a *adminMounts) list() map[string]adminHold {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]adminHold, len(a.holds))
	for u, h := range a.holds {
		out[u] = *h
	}
	return out
}

// close ends every hold (the manager's shutdown unmounts the views) and
// waits for the expiries under way; later mounts fail.
func (a *adminMounts) close() {
	a.mu.Lock()
	a.closed = true
	hs := a.holds
	a.holds = map[string]*adminHold{}
	a.mu.Unlock()
	for _, h := range hs {
		h.timer.Stop()
		h.release()
	}
	a.expiring.Wait()
}
