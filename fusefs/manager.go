package fusefs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sftpgate/sftpgate/fusefs/objstore"
)

// Manager mounts one view per user under the mount root, shares it among
// that user's sessions, unmounts it when idle, and owns the write-back
// cache and its janitor.
type Manager struct {
	o        Options
	log      *slog.Logger
	ob       *objects
	cache    *cache
	cacheDir string
	uid, gid uint32

	ctx    context.Context // background work: uploads, listings, janitor
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ops    opStats // FUSE operations of every view, by op and errno
	// live holds the mount points this manager serves (dir → struct{}),
	// which stale-mount cleaning never touches.
	live sync.Map

	// mu guards the fields below; never held across a mount, an unmount
	// or any call into a mount.
	mu         sync.Mutex
	closed     bool
	views      map[viewKey]*mount
	unmounting map[string]chan struct{}
}

type viewKey struct {
	user string
	ro   bool
}

// mount is one mounted (or mounting) view.
type mount struct {
	key    viewKey
	dir    string
	v      *view
	server *fuse.Server
	since  time.Time
	ready  chan struct{} // closed once mounted or failed
	stop   chan struct{} // closed at unmount: stops the notifier
	err    error         // set before ready is closed

	// guarded by Manager.mu
	holders   int
	idleSince time.Time
}

// NewManager validates the options, unmounts stale mounts under MountRoot,
// uploads the dirty local copies a crash left behind and starts the janitor.
func NewManager(ctx context.Context, o Options) (*Manager, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if err := os.MkdirAll(o.MountRoot, 0o755); err != nil {
		return nil, fmt.Errorf("mount root: %w", err)
	}
	root, err := openCacheDir(o.TmpDir)
	if err != nil {
		return nil, err
	}
	cacheDir := root.Name()
	if o.LegacyTmpDir != "" {
		adoptLegacy(root, o.LegacyTmpDir, log)
	}
	if err := cleanStale(o.MountRoot, nil, log); err != nil { // none is ours yet
		log.Warn("cannot look for stale mounts", "err", err)
	}
	bg, cancel := context.WithCancel(context.Background())
	m := &Manager{
		o: o, log: log, cacheDir: cacheDir,
		ob:  &objects{st: objstore.NewStore(o.Client), partSize: o.PartSize, concurrency: o.Concurrency, budget: newReadBudget(o.ReadAheadBudget)},
		uid: uint32(os.Getuid()), gid: uint32(os.Getgid()),
		ctx: bg, cancel: cancel,
		views: map[viewKey]*mount{}, unmounting: map[string]chan struct{}{},
	}
	if o.MaxUserCopyBytes == 0 {
		_, total, _, err := freeSpace(cacheDir)
		if err != nil {
			cancel()
			root.Close()
			return nil, err
		}
		o.MaxUserCopyBytes = int64(total / 4)
	}
	m.cache = &cache{dir: cacheDir, root: root, ob: m.ob, log: log, minFree: o.MinFree, lifespan: o.Lifespan, bg: bg,
		maxClean: o.MaxCleanFiles, maxUserCopies: o.MaxUserCopies, maxUserBytes: o.MaxUserCopyBytes,
		userBytes: map[string]int64{}, userFiles: map[string]int{},
		byKey: map[string]*entry{}, all: map[*entry]struct{}{}, inflight: map[string]int{},
		spares: newSpares(root, log)}
	if o.Quotas != nil {
		m.cache.qk = &quotaKeeper{q: o.Quotas, grants: o.Grants, ob: m.ob, log: log, ownerTTL: o.GrantsTTL}
	}
	if o.Staging != nil {
		m.cache.stg = newStaging(o.Staging, o.StagingLease, o.AttrTTL, log)
	}
	if err := m.recoverJournals(ctx); err != nil {
		cancel()
		m.cache.closeAll()
		root.Close()
		return nil, err
	}
	m.wg.Add(3)
	go m.janitor()
	go m.checkpointer()
	go m.spareFiller()
	return m, nil
}

// Acquire returns the mount directory of user's view, mounting it on first
// use; release (idempotent) ends this holder's use.
func (m *Manager) Acquire(ctx context.Context, user string) (dir string, release func(), err error) {
	return m.AcquireWith(ctx, user, MountOptions{})
}

// AcquireWith is Acquire with options; a read-only view is a separate
// mount at <MountRoot>/.readonly/<user>.
func (m *Manager) AcquireWith(ctx context.Context, user string, o MountOptions) (dir string, release func(), err error) {
	if err := checkUser(user); err != nil {
		return "", nil, err
	}
	k := viewKey{user: user, ro: o.ReadOnly}
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return "", nil, ErrClosed
		}
		if mt := m.views[k]; mt != nil {
			mt.holders++
			m.mu.Unlock()
			select {
			case <-mt.ready:
			case <-ctx.Done():
				m.release(mt)
				return "", nil, fmt.Errorf("acquire %s: %w", user, ctx.Err())
			}
			if mt.err != nil {
				return "", nil, mt.err
			}
			return mt.dir, m.releaseFunc(mt), nil
		}
		dir := mountDir(m.o.MountRoot, user, o.ReadOnly)
		if ch := m.unmounting[dir]; ch != nil {
			m.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return "", nil, fmt.Errorf("acquire %s: %w", user, ctx.Err())
			}
		}
		mt := &mount{key: k, dir: dir, holders: 1, ready: make(chan struct{}), since: time.Now()}
		m.views[k] = mt
		m.mu.Unlock()

		err := m.mount(ctx, mt)
		m.mu.Lock()
		if err != nil {
			mt.err = fmt.Errorf("mount %s: %w", user, err)
			delete(m.views, k)
		}
		close(mt.ready)
		m.mu.Unlock()
		if err != nil {
			return "", nil, mt.err
		}
		return mt.dir, m.releaseFunc(mt), nil
	}
}

func (m *Manager) releaseFunc(mt *mount) func() {
	var once sync.Once
	return func() { once.Do(func() { m.release(mt) }) }
}

func (m *Manager) release(mt *mount) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mt.holders--
	if mt.holders <= 0 {
		mt.holders = 0
		mt.idleSince = time.Now()
	}
}

// mount mounts one view. Mount options, tuned for throughput:
//   - MaxWrite 256 KiB: the kernel sends writes (and READs) of up to
//     256 KiB. go-fuse holds a buffer of that size for every request in
//     flight and every idle reader of every mount: at 1 MiB, 20 users
//     uploading at once kept 77 MiB of them (a daemon at 370 MiB RSS),
//     at 256 KiB 21 MiB, for the same mount write rate (0.80× PutObject);
//   - MaxReadAhead 1 MiB, and the mount's kernel read-ahead raised to
//     kernelReadAheadKB through sysfs (root only; the kernel caps it at
//     128 KiB otherwise): buffered sequential reads come as several READs
//     in flight, on top of which they get our own parallel read-ahead
//     from the store;
//   - ExplicitDataCacheControl: the kernel keeps a file's cached pages
//     until an open drops them (fileNode.Open keeps them only for the
//     same object version), rather than drop them whenever the mtime it
//     sees changes, which a file's own writes do;
//   - MaxBackground 64: more asynchronous requests (read-ahead) in flight;
//   - DisableSplice: every read answers with bytes (ReadResultData), which
//     go-fuse would first try to splice through a pipe (wasted system
//     calls per READ; a large READ does not even fit a default pipe, and
//     each failure was logged), rather than write them at once;
//   - attribute and entry timeouts AttrTTL, negative entries AttrTTL too;
//   - READDIRPLUS on: listings carry attributes, no lookup per name;
//   - FsName "sftpgate:<user>", Name "sftpgate" (type fuse.sftpgate);
//   - DirectMount when root (mount(2)), fusermount3 otherwise;
//   - no allow_other: only the daemon's user (and root) can enter.
func (m *Manager) mount(ctx context.Context, mt *mount) error {
	if err := prepareMountPoint(mt.dir, &m.live, m.log); err != nil {
		return err
	}
	v := &view{
		notify: make(chan string, 64),
		user:   mt.key.user, readOnly: mt.key.ro, grants: m.o.Grants, ob: m.ob, cache: m.cache,
		log: m.log.With("user", mt.key.user), errLog: m.log, attrTTL: m.o.AttrTTL, grantTTL: m.o.GrantsTTL,
		tmpDir: m.cacheDir, maxSize: m.o.MaxFileSize, uid: m.uid, gid: m.gid, born: time.Now(),
	}
	if err := v.refresh(ctx); err != nil {
		return err
	}
	ttl := m.o.AttrTTL
	opts := &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName:                   "sftpgate:" + mt.key.user,
			Name:                     "sftpgate",
			MaxWrite:                 256 << 10,
			MaxReadAhead:             1 << 20,
			MaxBackground:            64,
			DisableSplice:            true,
			ExplicitDataCacheControl: true,
			DirectMount:              os.Geteuid() == 0,
			Logger:                   slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		},
		EntryTimeout:    &ttl,
		AttrTimeout:     &ttl,
		NegativeTimeout: &ttl,
		UID:             m.uid,
		GID:             m.gid,
		Logger:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
	}
	root := &rootNode{v: v}
	raw := countingFS{RawFileSystem: fs.NewNodeFS(root, opts), s: &m.ops}
	server, err := fuse.NewServer(getxattrOff{raw}, mt.dir, &opts.MountOptions)
	if err != nil {
		return err
	}
	go server.Serve() // ends at unmount; Unmount and Wait wait for it
	if err := server.WaitMount(); err != nil {
		// As fs.Mount: a failed mount ends the serve loop by itself.
		return err
	}
	if err := setKernelReadAhead(mt.dir, kernelReadAheadKB); err != nil {
		m.log.Debug("kernel read-ahead left at its default", "dir", mt.dir, "err", err)
	}
	mt.v, mt.server, mt.stop = v, server, make(chan struct{})
	m.live.Store(mt.dir, struct{}{})
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			select {
			case slug := <-v.notify:
				root.NotifyEntry(slug)
			case <-mt.stop:
				return
			}
		}
	}()
	m.log.Info("mounted", "user", mt.key.user, "dir", mt.dir, "read_only", mt.key.ro)
	return nil
}

// unmount takes a view down: plain unmount (retried), else a lazy one.
// It waits for the server to stop, at most until ctx is done.
func (m *Manager) unmount(ctx context.Context, mt *mount) error {
	defer close(mt.stop)
	defer m.live.Delete(mt.dir)
	if err := mt.server.Unmount(); err != nil {
		m.log.Warn("unmount busy, detaching", "dir", mt.dir, "err", err)
		if lerr := lazyUnmount(mt.dir); lerr != nil {
			return fmt.Errorf("unmount %s: %w", mt.dir, lerr)
		}
		// The detached tree is served until its last user leaves; the
		// mount point is free already.
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			mt.server.Wait()
			m.log.Info("detached view released", "user", mt.key.user, "dir", mt.dir)
		}()
		return nil
	}
	done := make(chan struct{})
	go func() {
		mt.server.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("unmount %s: %w", mt.dir, ctx.Err())
	}
	m.log.Info("unmounted", "user", mt.key.user, "dir", mt.dir)
	return nil
}

// unmountIdle takes down the views idle for longer than IdleDelay.
func (m *Manager) unmountIdle(now time.Time) {
	m.mu.Lock()
	var idle []*mount
	for k, mt := range m.views {
		select {
		case <-mt.ready:
		default:
			continue
		}
		if mt.err == nil && mt.holders == 0 && now.Sub(mt.idleSince) >= m.o.IdleDelay {
			delete(m.views, k)
			ch := make(chan struct{})
			m.unmounting[mt.dir] = ch
			idle = append(idle, mt)
		}
	}
	m.mu.Unlock()
	for _, mt := range idle {
		ctx, cancel := context.WithTimeout(m.ctx, 30*time.Second)
		if err := m.unmount(ctx, mt); err != nil {
			m.log.Warn("idle unmount failed", "dir", mt.dir, "err", err)
		}
		cancel()
		m.mu.Lock()
		close(m.unmounting[mt.dir])
		delete(m.unmounting, mt.dir)
		m.mu.Unlock()
	}
}

// Unmount takes user's view (the read-only one when o.ReadOnly) down now,
// without waiting for the idle delay. It fails with ErrBusy while the view
// is held (Acquire not released yet, or still mounting) and with
// ErrNotMounted when there is no such view. An unmount already under way
// (idle, or another Unmount) is waited for, and then there is no view.
func (m *Manager) Unmount(ctx context.Context, user string, o MountOptions) error {
	if err := checkUser(user); err != nil {
		return err
	}
	k := viewKey{user: user, ro: o.ReadOnly}
	dir := mountDir(m.o.MountRoot, user, o.ReadOnly)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	mt := m.views[k]
	if mt == nil {
		ch := m.unmounting[dir]
		m.mu.Unlock()
		if ch != nil {
			select {
			case <-ch:
			case <-ctx.Done():
				return fmt.Errorf("unmount %s: %w", dir, ctx.Err())
			}
		}
		return fmt.Errorf("unmount %s: %w", dir, ErrNotMounted)
	}
	if mt.holders > 0 {
		n := mt.holders
		m.mu.Unlock()
		return fmt.Errorf("unmount %s: held by %d holder(s): %w", dir, n, ErrBusy)
	}
	// holders is 0, so the mount is ready (the mounter holds it until then)
	// and succeeded (a failed one leaves the map).
	delete(m.views, k)
	ch := make(chan struct{})
	m.unmounting[dir] = ch
	m.mu.Unlock()

	err := m.unmount(ctx, mt)
	m.mu.Lock()
	close(ch)
	delete(m.unmounting, dir)
	m.mu.Unlock()
	return err
}

// Stats describes the mounted views, sorted by directory.
func (m *Manager) Stats() []ViewStats {
	m.mu.Lock()
	var out []ViewStats
	var views []*view
	for _, mt := range m.views {
		select {
		case <-mt.ready:
		default:
			continue
		}
		if mt.err != nil {
			continue
		}
		out = append(out, ViewStats{User: mt.key.user, Dir: mt.dir, Since: mt.since, Holders: mt.holders, ReadOnly: mt.key.ro})
		views = append(views, mt.v)
	}
	m.mu.Unlock()
	for i := range out {
		out[i].OpenFiles = int(views[i].openFiles.Load())
		if !out[i].ReadOnly {
			cs := m.cache.stats(out[i].User)
			out[i].DirtyFiles, out[i].DirtyBytes = cs.dirtyFiles, cs.dirtyBytes
			out[i].CleanFiles, out[i].CleanBytes = cs.cleanFiles, cs.cleanBytes
			out[i].UploadsInFlight = cs.inflight
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out
}

// Shutdown unmounts every view, stops the janitor and waits for the
// background goroutines, at most until ctx is done. It publishes nothing:
// copies still being written wait in their journals for a resume.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	var mts []*mount
	var waits []chan struct{}
	for _, mt := range m.views {
		mts = append(mts, mt)
	}
	for _, ch := range m.unmounting {
		waits = append(waits, ch)
	}
	m.views = map[viewKey]*mount{}
	m.mu.Unlock()

	var firstErr error
	for _, ch := range waits {
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
	// Nothing is uploaded here: every close published already, and a copy
	// still open or interrupted waits in its journal for a resume.
	for _, mt := range mts {
		select {
		case <-mt.ready:
		case <-ctx.Done():
			continue
		}
		if mt.err != nil {
			continue
		}
		if err := m.unmount(ctx, mt); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	m.cancel()
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		if firstErr == nil {
			firstErr = fmt.Errorf("shutdown: %w", ctx.Err())
		}
	}
	m.cache.closeAll()
	m.cache.root.Close()
	m.ob.budget.close()
	return firstErr
}
