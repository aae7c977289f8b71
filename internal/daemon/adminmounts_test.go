package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/fusefs"
	"github.com/sftpgate/sftpgate/internal/control"
	"github.com/sftpgate/sftpgate/sftpd"
)

// fakeViews is a viewAdmin that counts holders per (user, read-only) and
// which views are mounted.
type fakeViews struct {
	mu       sync.Mutex
	holders  map[fusefs.ViewStats]int  // key: User, ReadOnly only
	mounted  map[fusefs.ViewStats]bool // same key
	acquires int
	unmounts int
	stats    []fusefs.ViewStats
}

func newFakeViews() *fakeViews {
	return &fakeViews{holders: map[fusefs.ViewStats]int{}, mounted: map[fusefs.ViewStats]bool{}}
}

func (f *fakeViews) AcquireWith(_ context.Context, user string, o fusefs.MountOptions) (string, func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := fusefs.ViewStats{User: user, ReadOnly: o.ReadOnly}
	f.holders[k]++
	f.mounted[k] = true
	f.acquires++
	dir := "/mnt/" + user
	if o.ReadOnly {
		dir = "/mnt/.readonly/" + user
	}
	var once sync.Once
	return dir, func() {
		once.Do(func() {
			f.mu.Lock()
			f.holders[k]--
			f.mu.Unlock()
		})
	}, nil
}

func (f *fakeViews) Unmount(_ context.Context, user string, o fusefs.MountOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := fusefs.ViewStats{User: user, ReadOnly: o.ReadOnly}
	switch {
	case !f.mounted[k]:
		return fmt.Errorf("unmount %s: %w", user, fusefs.ErrNotMounted)
	case f.holders[k] > 0:
		return fmt.Errorf("unmount %s: held by %d holder(s): %w", user, f.holders[k], fusefs.ErrBusy)
	}
	f.mounted[k] = false
	f.unmounts++
	return nil
}

// isMounted reports whether the view is mounted.
func (f *fakeViews) isMounted(user string, ro bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mounted[fusefs.ViewStats{User: user, ReadOnly: ro}]
}

func (f *fakeViews) Stats() []fusefs.ViewStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

func (f *fakeViews) held(user string, ro bool) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.holders[fusefs.ViewStats{User: user, ReadOnly: ro}]
}

type fakeSessions struct {
	list   []sftpd.SessionInfo
	killed []string
}

func (f *fakeSessions) Sessions() []sftpd.SessionInfo { return f.list }

func (f *fakeSessions) Kill(id string) error {
	for _, s := range f.list {
		if s.ID == id {
			f.killed = append(f.killed, id)
			return nil
		}
	}
	return sftpd.ErrNoSession
}

type fakeUsers map[string]bool

func (f fakeUsers) User(_ context.Context, login string) (auth.User, error) {
	if !f[login] {
		return auth.User{}, auth.ErrNotFound
	}
	return auth.User{Login: login}, nil
}

func newTestControl(t *testing.T) (*daemonControl, *fakeViews, *fakeSessions) {
	t.Helper()
	views := newFakeViews()
	sess := &fakeSessions{}
	log := slog.New(slog.DiscardHandler)
	holds := newAdminMounts(views, log)
	t.Cleanup(holds.close)
	return &daemonControl{sessions: sess, views: views, users: fakeUsers{"bob": true, "carol": true}, holds: holds, log: log}, views, sess
}

func TestAdminMount(t *testing.T) {
	ctx := context.Background()
	d, views, sess := newTestControl(t)

	resp := d.handle(ctx, control.Request{Op: control.OpMount, User: "bob", For: "1h"})
	if resp.Error != "" || resp.Mount == nil || resp.Mount.Path != "/mnt/.readonly/bob" || resp.Mount.Mode != "ro" {
		t.Fatalf("mount bob: got %+v, want the read-only view /mnt/.readonly/bob", resp)
	}
	if got := views.held("bob", true); got != 1 {
		t.Errorf("read-only holders of bob: got %d, want 1", got)
	}

	// Same mode again: extended, no second acquisition.
	resp = d.handle(ctx, control.Request{Op: control.OpMount, User: "bob", For: "2h"})
	if resp.Error != "" || resp.Mounted == nil || !resp.Mounted.Extended {
		t.Errorf("mount bob again: got %+v, want it extended", resp)
	}
	if until := *resp.Mount.HeldUntil; until.Before(time.Now().Add(119 * time.Minute)) {
		t.Errorf("held until: got %v, want about 2h from now", until)
	}
	if got := views.held("bob", true); got != 1 {
		t.Errorf("read-only holders of bob after extension: got %d, want 1", got)
	}

	// Other mode: refused.
	resp = d.handle(ctx, control.Request{Op: control.OpMount, User: "bob", For: "1h", RW: true})
	if resp.Error == "" || resp.Reason != control.ReasonHeld || resp.Mount == nil || resp.Mount.Mode != "ro" || resp.Mount.HeldUntil == nil {
		t.Errorf("mount bob --rw: got %+v, want a refusal", resp)
	}

	// Unknown user, bad duration.
	if resp := d.handle(ctx, control.Request{Op: control.OpMount, User: "eve", For: "1h"}); resp.Error != `mount: no user "eve"` {
		t.Errorf("mount eve: got %+v, want no such user", resp)
	}
	if resp := d.handle(ctx, control.Request{Op: control.OpMount, User: "bob", For: "-1s"}); !strings.Contains(resp.Error, "bad duration") {
		t.Errorf("mount --for -1s: got %+v, want bad duration", resp)
	}

	// A read-write hold shares the user's view and cannot be ended while
	// the user has sessions.
	sess.list = []sftpd.SessionInfo{{ID: "c1-1", User: "carol"}}
	resp = d.handle(ctx, control.Request{Op: control.OpMount, User: "carol", For: "1h", RW: true})
	if resp.Error != "" || resp.Mount.Path != "/mnt/carol" || resp.Mounted == nil || resp.Mounted.Sessions != 1 {
		t.Errorf("mount carol --rw: got %+v, want /mnt/carol shared with 1 session", resp)
	}
	resp = d.handle(ctx, control.Request{Op: control.OpUnmount, User: "carol"})
	if !strings.Contains(resp.Error, "in use by 1 SFTP session(s)") || resp.Reason != control.ReasonInUse || resp.Mount == nil || resp.Mount.Sessions != 1 {
		t.Errorf("unmount carol with a session: got %+v, want a refusal", resp)
	}
	if got := views.held("carol", false); got != 1 {
		t.Errorf("carol's holders after the refusal: got %d, want 1", got)
	}
	sess.list = nil
	if resp := d.handle(ctx, control.Request{Op: control.OpUnmount, User: "carol"}); resp.Error != "" || resp.Unmounted == nil || resp.Unmounted.InUse != "" {
		t.Errorf("unmount carol: got %+v, want success and the view unmounted", resp)
	}
	if got := views.held("carol", false); got != 0 {
		t.Errorf("carol's holders after unmount: got %d, want 0", got)
	}
	if views.isMounted("carol", false) {
		t.Errorf("carol's view after unmount: got mounted, want unmounted at once")
	}
	if resp := d.handle(ctx, control.Request{Op: control.OpUnmount, User: "carol"}); !strings.Contains(resp.Error, "no admin mount") || resp.Reason != control.ReasonNoAdminMount {
		t.Errorf("unmount carol twice: got %+v, want no admin mount", resp)
	}

	// A read-only hold ends even while the user has sessions.
	sess.list = []sftpd.SessionInfo{{ID: "b1-1", User: "bob"}}
	if resp := d.handle(ctx, control.Request{Op: control.OpUnmount, User: "bob"}); resp.Error != "" || resp.Unmounted == nil || resp.Unmounted.InUse != "" {
		t.Errorf("unmount bob (read-only) with a session: got %+v, want success and the view unmounted", resp)
	}
	if views.isMounted("bob", true) {
		t.Errorf("bob's read-only view after unmount: got mounted, want unmounted at once")
	}
	if got := views.acquires; got != 2 {
		t.Errorf("acquisitions: got %d, want 2", got)
	}
}

// TestAdminUnmountBusy checks that ending a hold on a view something else
// holds succeeds and leaves the view to the idle unmount.
func TestAdminUnmountBusy(t *testing.T) {
	ctx := context.Background()
	d, views, _ := newTestControl(t)
	if resp := d.handle(ctx, control.Request{Op: control.OpMount, User: "bob", For: "1h", RW: true}); resp.Error != "" {
		t.Fatalf("mount bob --rw: %s", resp.Error)
	}
	_, release, _ := views.AcquireWith(ctx, "bob", fusefs.MountOptions{}) // a session logging in
	defer release()
	resp := d.handle(ctx, control.Request{Op: control.OpUnmount, User: "bob"})
	if resp.Error != "" || resp.Unmounted == nil || !strings.Contains(resp.Unmounted.InUse, "1 holder") {
		t.Errorf("unmount bob while held elsewhere: got %+v, want success saying the view is still in use by 1 holder", resp)
	}
	if got := views.held("bob", false); got != 1 {
		t.Errorf("bob's holders after unmount: got %d, want 1 (the other holder)", got)
	}
	if !views.isMounted("bob", false) {
		t.Errorf("bob's view after unmount: got unmounted, want it kept for its other holder")
	}
}

func TestAdminMountExpires(t *testing.T) {
	d, views, _ := newTestControl(t)
	resp := d.handle(context.Background(), control.Request{Op: control.OpMount, User: "bob", For: "50ms"})
	if resp.Error != "" {
		t.Fatalf("mount: %s", resp.Error)
	}
	deadline := time.Now().Add(5 * time.Second)
	for views.held("bob", true) != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := views.held("bob", true); got != 0 {
		t.Fatalf("holders 5s after a 50ms mount: got %d, want 0", got)
	}
	for views.isMounted("bob", true) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if views.isMounted("bob", true) {
		t.Errorf("view 5s after a 50ms mount: got mounted, want unmounted when the mount expired")
	}
	if got := d.holds.list(); len(got) != 0 {
		t.Errorf("holds after expiry: got %v, want none", got)
	}
}

func TestAdminMountsClose(t *testing.T) {
	d, views, _ := newTestControl(t)
	ctx := context.Background()
	d.handle(ctx, control.Request{Op: control.OpMount, User: "bob", For: "1h"})
	d.handle(ctx, control.Request{Op: control.OpMount, User: "carol", For: "1h", RW: true})
	d.holds.close()
	if a, b := views.held("bob", true), views.held("carol", false); a != 0 || b != 0 {
		t.Errorf("holders after close: got bob %d, carol %d, want 0 and 0", a, b)
	}
	if resp := d.handle(ctx, control.Request{Op: control.OpMount, User: "bob", For: "1h"}); resp.Error != errAdminClosed.Error() {
		t.Errorf("mount after close: got %+v, want %q", resp, errAdminClosed)
	}
}

func TestControlMountsRows(t *testing.T) {
	d, views, sess := newTestControl(t)
	since := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	views.stats = []fusefs.ViewStats{
		{User: "bob", Dir: "/mnt/.readonly/bob", Since: since, Holders: 1, ReadOnly: true},
		{User: "bob", Dir: "/mnt/bob", Since: since, Holders: 2, OpenFiles: 1, DirtyBytes: 5 << 20, CleanBytes: 7, UploadsInFlight: 1},
	}
	sess.list = []sftpd.SessionInfo{{ID: "x-1", User: "bob"}, {ID: "x-2", User: "bob"}, {ID: "y-1", User: "carol"}}
	d.handle(context.Background(), control.Request{Op: control.OpMount, User: "bob", For: "1h"})
	rows := d.handle(context.Background(), control.Request{Op: control.OpMounts}).Mounts
	if len(rows) != 2 {
		t.Fatalf("rows: got %d, want 2", len(rows))
	}
	ro, rw := rows[0], rows[1]
	if ro.Mode != "ro" || ro.Sessions != 0 || ro.HeldUntil == nil {
		t.Errorf("read-only row: got %+v, want mode ro, 0 sessions, held", ro)
	}
	if rw.Mode != "rw" || rw.Sessions != 2 || rw.HeldUntil != nil || rw.DirtyBytes != 5<<20 || rw.OpenFiles != 1 || rw.UploadsInFlight != 1 || rw.CleanBytes != 7 {
		t.Errorf("read-write row: got %+v, want mode rw, 2 sessions, not held, the view's counts", rw)
	}
}

func TestControlKill(t *testing.T) {
	d, _, sess := newTestControl(t)
	sess.list = []sftpd.SessionInfo{{ID: "x-1", User: "bob"}}
	if resp := d.handle(context.Background(), control.Request{Op: control.OpKill, ID: "x-1"}); resp.Error != "" || len(sess.killed) != 1 {
		t.Errorf("kill x-1: got %+v, killed %v, want success", resp, sess.killed)
	}
	if resp := d.handle(context.Background(), control.Request{Op: control.OpKill, ID: "nope"}); !strings.Contains(resp.Error, `no session "nope"`) || resp.Reason != control.ReasonNoSession {
		t.Errorf("kill nope: got %+v, want no such session", resp)
	}
	if resp := d.handle(context.Background(), control.Request{Op: "dance"}); !strings.Contains(resp.Error, `unknown operation "dance"`) {
		t.Errorf("unknown op: got %+v, want unknown operation", resp)
	}
}
