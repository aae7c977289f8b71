package fusefs

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"syscall"
)

// view is the state of one mounted tree: one user, read-write or not.
type view struct {
	user     string
	readOnly bool
	grants   Grants
	ob       *objects
	cache    *cache
	log      *slog.Logger
	// errLog, the manager's logger, receives the causes of the errors
	// the view answers with EIO (errno).
	errLog   *slog.Logger
	attrTTL  time.Duration
	grantTTL time.Duration
	tmpDir   string
	maxSize  int64 // largest file size a write or truncate may make
	uid, gid uint32
	born     time.Time

	openFiles atomic.Int64
	// notify receives the slugs of revoked workspaces, whose kernel
	// entries the view's notifier invalidates; never blocked on.
	notify chan string

	// gmu guards the grant snapshot below; it is held across a Grants call
	// (never across a call into a mount).
	gmu     sync.Mutex
	gAt     time.Time
	gErr    error
	spaces  map[string]*workspace // every slug ever granted in this view
	current []string              // slugs granted now, sorted
}

// workspace is one granted workspace in a view. Its fields follow the
// grants: a revoked workspace keeps its object but refuses every operation.
type workspace struct {
	v    *view
	slug string

	// mu guards the fields below.
	mu       sync.Mutex
	bucket   string
	prefix   string
	readOnly bool
	revoked  bool
	bucketOK bool
}

// refresh asks the grants again when the snapshot is older than grantTTL.
func (v *view) refresh(ctx context.Context) error {
	v.gmu.Lock()
	defer v.gmu.Unlock()
	if !v.gAt.IsZero() && time.Since(v.gAt) < v.grantTTL {
		return v.gErr
	}
	wss, err := v.grants.Workspaces(ctx, v.user)
	v.gAt = time.Now()
	if err != nil {
		v.log.Warn("cannot read grants", "user", v.user, "err", err)
		v.gErr = fmt.Errorf("grants of %s: %w", v.user, err)
		if v.spaces == nil {
			return v.gErr
		}
		return nil // keep the last good snapshot
	}
	v.gErr = nil
	if v.spaces == nil {
		v.spaces = map[string]*workspace{}
	}
	seen := map[string]bool{}
	cur := make([]string, 0, len(wss))
	for _, w := range wss {
		if checkName(w.Slug) != nil || seen[w.Slug] || w.Bucket == "" {
			v.log.Warn("skipping workspace with an unusable slug or bucket", "user", v.user, "slug", w.Slug, "bucket", w.Bucket)
			continue
		}
		prefix, err := normPrefix(w.Prefix)
		if err != nil {
			v.log.Warn("skipping workspace with a bad prefix", "user", v.user, "slug", w.Slug, "err", err)
			continue
		}
		seen[w.Slug] = true
		cur = append(cur, w.Slug)
		ws := v.spaces[w.Slug]
		if ws == nil {
			ws = &workspace{v: v, slug: w.Slug}
			v.spaces[w.Slug] = ws
		}
		ws.mu.Lock()
		if ws.bucket != w.Bucket {
			ws.bucketOK = false
		}
		ws.bucket, ws.prefix, ws.readOnly, ws.revoked = w.Bucket, prefix, w.ReadOnly, false
		ws.mu.Unlock()
	}
	for slug, ws := range v.spaces {
		if !seen[slug] {
			ws.mu.Lock()
			was := !ws.revoked
			ws.revoked = true
			ws.mu.Unlock()
			if was && v.notify != nil {
				select {
				case v.notify <- slug:
				default: // the entry times out after AttrTTL anyway
				}
			}
		}
	}
	sort.Strings(cur)
	v.current = cur
	return nil
}

// workspaces returns the granted workspaces, sorted by slug.
func (v *view) workspaces(ctx context.Context) ([]*workspace, error) {
	if err := v.refresh(ctx); err != nil {
		return nil, err
	}
	v.gmu.Lock()
	defer v.gmu.Unlock()
	out := make([]*workspace, 0, len(v.current))
	for _, s := range v.current {
		out = append(out, v.spaces[s])
	}
	return out, nil
}

// workspace returns a granted workspace by slug, nil when not granted.
func (v *view) workspace(ctx context.Context, slug string) (*workspace, error) {
	if err := v.refresh(ctx); err != nil {
		return nil, err
	}
	v.gmu.Lock()
	ws := v.spaces[slug]
	v.gmu.Unlock()
	if ws == nil {
		return nil, nil
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.revoked {
		return nil, nil
	}
	return ws, nil
}

// loc is where a workspace is in the store, as of now.
type loc struct {
	bucket, prefix string
	readOnly       bool
}

// where returns the workspace's bucket and prefix, refreshing the grants
// when stale; ErrRevoked when the grant is gone.
func (ws *workspace) where(ctx context.Context) (loc, error) {
	_ = ws.v.refresh(ctx)
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.revoked {
		return loc{}, fmt.Errorf("workspace %s: %w", ws.slug, ErrRevoked)
	}
	return loc{bucket: ws.bucket, prefix: ws.prefix, readOnly: ws.readOnly || ws.v.readOnly}, nil
}

// writable returns the location for a change, ErrReadOnly when refused,
// creating the bucket on first use.
func (ws *workspace) writable(ctx context.Context) (loc, error) {
	l, err := ws.where(ctx)
	if err != nil {
		return l, err
	}
	if l.readOnly {
		return l, fmt.Errorf("workspace %s: %w", ws.slug, ErrReadOnly)
	}
	ws.mu.Lock()
	ok := ws.bucketOK
	ws.mu.Unlock()
	if !ok {
		if err := ws.v.ob.st.EnsureBucket(ctx, l.bucket); err != nil {
			return l, err
		}
		ws.mu.Lock()
		ws.bucketOK = true
		ws.mu.Unlock()
	}
	return l, nil
}

// fillDirAttr fills the attributes of a directory.
func (v *view) fillDirAttr(a *fuse.Attr, mtime time.Time, ro bool) {
	a.Mode = fuse.S_IFDIR | 0o755
	if ro {
		a.Mode = fuse.S_IFDIR | 0o555
	}
	a.Nlink = 2
	a.Size = 4096
	a.Blocks = 8
	a.Blksize = 4096
	a.Uid, a.Gid = v.uid, v.gid
	a.SetTimes(&mtime, &mtime, &mtime)
}

// fillFileAttr fills the attributes of a file.
func (v *view) fillFileAttr(a *fuse.Attr, size int64, mtime time.Time, mode uint32, ro bool) {
	perm := mode & 0o777
	if perm == 0 {
		perm = 0o644
	}
	if ro {
		perm &^= 0o222
	}
	a.Mode = fuse.S_IFREG | perm
	a.Nlink = 1
	a.Size = uint64(size)
	a.Blocks = (uint64(size) + 511) / 512
	a.Blksize = 128 << 10
	a.Uid, a.Gid = v.uid, v.gid
	a.SetTimes(&mtime, &mtime, &mtime)
}

// statfs reports the user's quota when they have one (total = the limit,
// free = what is left), else the space of the cache directory.
func (v *view) statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	avail, total, bsize, err := freeSpace(v.tmpDir)
	if err != nil || bsize <= 0 {
		bsize = 4096
		avail, total = 1<<50, 1<<50
	}
	out.Bsize = uint32(bsize)
	out.Frsize = uint32(bsize)
	out.Blocks = total / uint64(bsize)
	out.Bfree = avail / uint64(bsize)
	out.Bavail = avail / uint64(bsize)
	out.Files = 1 << 30
	out.Ffree = 1 << 30
	out.NameLen = maxNameLen
	if v.readOnly {
		return 0
	}
	q := v.cache.qk.limit(ctx, v.user)
	if !q.Limited() {
		return 0
	}
	if q.MaxBytes > 0 {
		const bs = 4096
		out.Bsize, out.Frsize = bs, bs
		out.Blocks = uint64(q.MaxBytes+bs-1) / bs
		free := max(0, q.MaxBytes-q.UsedBytes) / bs
		out.Bfree, out.Bavail = uint64(free), uint64(free)
	}
	if q.MaxFiles > 0 {
		out.Files = uint64(q.MaxFiles)
		out.Ffree = uint64(max(0, q.MaxFiles-q.UsedFiles))
	}
	return 0
}
