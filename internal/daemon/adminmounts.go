package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sftpgate/sftpgate/fusefs"
)

// Bounds of an admin mount's duration ("sftpgate mount --for").
const (
	// DefaultAdminMountFor is how long an admin mount lasts by default.
	DefaultAdminMountFor = time.Hour
	// MaxAdminMountFor is the longest an admin mount may last.
	MaxAdminMountFor = 30 * 24 * time.Hour
)

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
		return adminHold{}, false, &heldError{hold: *old}
	}
	old.until = time.Now().Add(d)
	old.timer.Reset(d)
	return *old, true, nil
}

// heldError refuses an admin mount while the user's view is held in the
// other mode; the command line says until when, from hold.
type heldError struct{ hold adminHold }

// Error names the user; the hold itself is in the response, as data.
func (e *heldError) Error() string {
	return fmt.Sprintf("mount: %s's view is already held by an admin mount of the other mode", e.hold.user)
}

// errNoAdminMount refuses to end an admin mount that is not there.
var errNoAdminMount = errors.New("no such admin mount")

// inUseError refuses to end a read-write admin mount while SFTP sessions
// of the user use the view.
type inUseError struct {
	dir, user string
	sessions  int
}

// Error says how many sessions use which view.
func (e *inUseError) Error() string {
	return fmt.Sprintf("unmount: %s is in use by %d SFTP session(s) of %s", e.dir, e.sessions, e.user)
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
		return "", nil, fmt.Errorf("unmount: %s has no admin mount: %w", user, errNoAdminMount)
	}
	if h.rw && sessions > 0 {
		a.mu.Unlock()
		return "", nil, &inUseError{dir: h.dir, user: user, sessions: sessions}
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
