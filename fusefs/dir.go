package fusefs

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// dirNode is a directory inside a workspace: a key prefix.
type dirNode struct {
	fs.Inode
	refuser
	ws     *workspace
	wsRoot bool

	// mu guards the fields below.
	mu    sync.Mutex
	mtime time.Time
	// absent remembers the names a lookup found missing within the
	// attribute TTL, so that the create or mkdir the kernel sends right
	// after need not ask the store again.
	absent map[string]time.Time
	// sweep holds the marker times a listing read ahead for the
	// subdirectories it is about to show (see dirtimes.go).
	sweep *markerTimes
	// known is what this view knows of the directory's content, from a
	// mkdir or a complete listing (see dirknown.go); addGen counts the
	// names added through this view.
	known     *dirKnown
	addGen    uint64
	relisting bool
}

// maxAbsent bounds the negative lookups remembered per directory.
const maxAbsent = 1024

// noteAbsent remembers that name was missing from the store at at.
func (d *dirNode) noteAbsent(name string, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.absent == nil || len(d.absent) >= maxAbsent {
		d.absent = map[string]time.Time{}
	}
	d.absent[name] = at
}

// takeAbsent reports (and forgets) whether name was found missing within
// the attribute TTL, and when.
func (d *dirNode) takeAbsent(name string) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.absent[name]
	delete(d.absent, name)
	return at, ok && time.Since(at) < d.ws.v.attrTTL
}

// resolveNew is resolve for a name about to be created: a name a lookup
// has just found missing is only checked against the local copies. It
// also returns when the answer was established.
func (d *dirNode) resolveNew(ctx context.Context, bucket, key, name string) (int, objInfo, time.Time, error) {
	if at, ok := d.takeAbsent(name); ok {
		if e := d.ws.v.cache.lookup(bucket, key); e == nil {
			return kindNone, objInfo{}, at, nil
		}
	}
	at := time.Now()
	kind, info, err := d.ws.v.resolve(ctx, bucket, key)
	return kind, info, at, err
}

var (
	_ fs.NodeLookuper       = (*dirNode)(nil)
	_ fs.NodeOpendirHandler = (*dirNode)(nil)
	_ fs.NodeGetattrer      = (*dirNode)(nil)
	_ fs.NodeSetattrer      = (*dirNode)(nil)
	_ fs.NodeStatfser       = (*dirNode)(nil)
	_ fs.NodeMkdirer        = (*dirNode)(nil)
	_ fs.NodeCreater        = (*dirNode)(nil)
	_ fs.NodeUnlinker       = (*dirNode)(nil)
	_ fs.NodeRmdirer        = (*dirNode)(nil)
	_ fs.NodeRenamer        = (*dirNode)(nil)
)

// Kinds of names resolved in the store.
const (
	kindNone = iota
	kindFile
	kindDir
)

// relPath returns the path of n below its workspace directory ("" for
// the workspace itself); ErrNotFound when n was removed from the tree.
func relPath(n *fs.Inode) (string, error) {
	var segs []string
	for {
		if d, ok := n.Operations().(*dirNode); ok && d.wsRoot {
			break
		}
		name, p := n.Parent()
		if p == nil {
			return "", fmt.Errorf("path: %w", ErrNotFound)
		}
		segs = append(segs, name)
		n = p
	}
	slices.Reverse(segs)
	return strings.Join(segs, "/"), nil
}

// where returns the workspace location and this directory's key prefix.
func (d *dirNode) where(ctx context.Context, write bool) (loc, string, error) {
	var (
		l   loc
		err error
	)
	if write {
		l, err = d.ws.writable(ctx)
	} else {
		l, err = d.ws.where(ctx)
	}
	if err != nil {
		return l, "", err
	}
	rel, err := relPath(&d.Inode)
	if err != nil {
		return l, "", err
	}
	prefix := l.prefix
	if rel != "" {
		prefix += rel + "/"
	}
	return l, prefix, nil
}

// resolve finds what key is: a file (an object, or a local copy being
// written), a directory (a marker or deeper keys; it wins over a file of
// the same name) or nothing.
func (v *view) resolve(ctx context.Context, bucket, key string) (int, objInfo, error) {
	if e := v.copyOf(ctx, bucket, key); e != nil {
		if info, live := e.live(0); live {
			return kindFile, info, nil
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type dirRes struct {
		ok    bool
		mtime time.Time
		err   error
	}
	dch := make(chan dirRes, 1)
	go func() {
		ok, mt, err := v.ob.dirMarker(ctx, bucket, key+"/")
		dch <- dirRes{ok, mt, err}
	}()
	info, serr := v.ob.stat(ctx, bucket, key)
	dr := <-dch
	switch {
	case dr.err == nil && dr.ok:
		if dr.mtime.IsZero() {
			dr.mtime = v.born
		}
		return kindDir, objInfo{Key: key + "/", Mtime: dr.mtime}, nil
	case serr == nil:
		return kindFile, info, nil
	case isNotFound(serr) && dr.err == nil:
		return kindNone, objInfo{}, nil
	case !isNotFound(serr):
		return kindNone, objInfo{}, serr
	default:
		return kindNone, objInfo{}, dr.err
	}
}

// child returns the inode of a name known to exist, reusing the tree's
// inode when its kind did not change, and fills out.
func (d *dirNode) child(ctx context.Context, name string, kind int, info objInfo, ro bool, out *fuse.EntryOut) *fs.Inode {
	if kind == kindDir {
		return d.dirChild(ctx, name, info, ro, out)
	}
	v := d.ws.v
	now := time.Now()
	v.fillFileAttr(&out.Attr, info.Size, info.Mtime, info.Mode, ro)
	out.SetEntryTimeout(v.attrTTL)
	out.SetAttrTimeout(v.attrTTL)
	if ch := d.GetChild(name); ch != nil {
		if op, ok := ch.Operations().(*fileNode); ok && op.ws == d.ws {
			op.setInfo(info, now)
			return ch
		}
	}
	return d.NewInode(ctx, &fileNode{ws: d.ws, info: info, infoAt: now}, fs.StableAttr{Mode: fuse.S_IFREG})
}

// Lookup finds a child in the store (or among the local copies).
func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if err := checkName(name); err != nil {
		if e := errno(err); e == syscall.ENAMETOOLONG {
			return nil, e
		}
		return nil, syscall.ENOENT
	}
	l, prefix, err := d.where(ctx, false)
	if err != nil {
		return nil, d.errno(err)
	}
	key := prefix + name
	if checkKey(key+"/") != nil {
		return nil, syscall.ENAMETOOLONG
	}
	if absent, at := d.lookupAbsent(ctx, l.bucket, prefix, name, key); absent {
		d.noteAbsent(name, at)
		return nil, syscall.ENOENT
	}
	at := time.Now()
	kind, info, err := d.ws.v.resolve(ctx, l.bucket, key)
	if err != nil {
		return nil, d.errno(err)
	}
	if kind == kindNone {
		d.noteAbsent(name, at)
		return nil, syscall.ENOENT
	}
	d.found(name)
	return d.child(ctx, name, kind, info, l.readOnly, out), 0
}

// Getattr reports the directory.
func (d *dirNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	l, err := d.ws.where(ctx)
	if err != nil {
		return d.errno(err)
	}
	d.mu.Lock()
	mt := d.mtime
	d.mu.Unlock()
	d.ws.v.fillDirAttr(&out.Attr, mt, l.readOnly)
	out.SetTimeout(d.ws.v.attrTTL)
	return 0
}

// Setattr stores a directory's mtime on its marker (see dirtimes.go) and
// accepts chmod without storing it (a prefix has no mode); chown to
// another owner is EPERM.
func (d *dirNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	v := d.ws.v
	l, err := d.ws.where(ctx)
	if err != nil {
		return d.errno(err)
	}
	if l.readOnly {
		return syscall.EROFS
	}
	if uid, ok := in.GetUID(); ok && uid != v.uid {
		return syscall.EPERM
	}
	if gid, ok := in.GetGID(); ok && gid != v.gid {
		return syscall.EPERM
	}
	if mt, ok := in.GetMTime(); ok {
		if err := d.storeMtime(ctx, mt); err != nil {
			return d.errno(err)
		}
		d.mu.Lock()
		d.mtime = mt
		d.mu.Unlock()
	}
	return d.Getattr(ctx, f, out)
}

// Statfs reports the cache directory's space.
func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	return d.ws.v.statfs(ctx, out)
}

// Mkdir writes a zero-byte marker "name/".
func (d *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	l, prefix, err := d.where(ctx, true)
	if err != nil {
		return nil, d.errno(err)
	}
	if err := checkName(name); err != nil {
		return nil, d.errno(err)
	}
	key := prefix + name
	if err := checkKey(key + "/"); err != nil {
		return nil, d.errno(err)
	}
	d.adding(name)
	kind, _, at, err := d.resolveNew(ctx, l.bucket, key, name)
	if err != nil {
		return nil, d.errno(err)
	}
	if kind != kindNone {
		return nil, syscall.EEXIST
	}
	now := time.Now()
	if err := d.ws.v.ob.putMarker(ctx, l.bucket, key+"/", now); err != nil {
		return nil, d.errno(err)
	}
	ch := d.child(ctx, name, kindDir, objInfo{Mtime: now}, false, out)
	if cd, ok := ch.Operations().(*dirNode); ok {
		// Nothing was under the new directory when resolve looked.
		cd.setKnown(at, cd.knownGen(), l.bucket, key+"/", map[string]struct{}{}, true)
	}
	return ch, 0
}

// Create creates (or, when it appeared meanwhile, opens) a file for
// writing. The object is written at the last close.
func (d *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	v := d.ws.v
	l, prefix, err := d.where(ctx, true)
	if err != nil {
		return nil, nil, 0, d.errno(err)
	}
	if err := checkName(name); err != nil {
		return nil, nil, 0, d.errno(err)
	}
	key := prefix + name
	if err := checkKey(key); err != nil {
		return nil, nil, 0, d.errno(err)
	}
	d.adding(name)
	kind, info, _, err := d.resolveNew(ctx, l.bucket, key, name)
	if err != nil {
		return nil, nil, 0, d.errno(err)
	}
	var e *entry
	switch kind {
	case kindDir:
		return nil, nil, 0, syscall.EISDIR
	case kindFile:
		if flags&syscall.O_EXCL != 0 {
			return nil, nil, 0, syscall.EEXIST
		}
		if err := v.cache.mayWrite(l.bucket, key, v.user); err != nil {
			return nil, nil, 0, d.errno(err)
		}
		e, err = v.cache.open(l.bucket, key, v.user, &info, flags&syscall.O_TRUNC != 0)
	default:
		if err := v.cache.mayWrite(l.bucket, key, v.user); err != nil {
			return nil, nil, 0, d.errno(err)
		}
		e, err = v.cache.open(l.bucket, key, v.user, nil, true)
		if err == nil && mode&0o777 != 0o644 && mode&0o777 != 0 {
			m := mode & 0o777
			e.setMeta(nil, &m)
		}
	}
	if err != nil {
		return nil, nil, 0, d.errno(err)
	}
	size, mtime, fmode := e.attr()
	ch := d.child(ctx, name, kindFile, objInfo{Key: key, Size: size, Mtime: mtime, Mode: fmode}, false, out)
	h := newWriteHandle(v, e, flags)
	if fn, ok := ch.Operations().(*fileNode); ok {
		h.n = fn
		fn.swapPageETag("")
	}
	return ch, h, 0, 0
}

// Unlink removes a file: its object and any local copy.
func (d *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	l, prefix, err := d.where(ctx, true)
	if err != nil {
		return d.errno(err)
	}
	key := prefix + name
	v := d.ws.v
	if ch := d.GetChild(name); ch != nil {
		if fn, ok := ch.Operations().(*fileNode); ok {
			fn.gone.Store(true)
		}
	}
	// A counted object's size is asked first, to take it off the quota.
	qk := v.cache.qk
	qUser, gone := qk.owner(ctx, l.bucket, key), int64(-1)
	if qUser != "" && qk.counting(ctx, qUser) {
		if info, err := v.ob.stat(ctx, l.bucket, key); err == nil {
			gone = info.Size
		} else if !isNotFound(err) {
			return d.errno(err)
		}
	}
	if e := v.cache.lookup(l.bucket, key); e != nil {
		e.upMu.Lock()
		v.cache.forget(e)
		e.upMu.Unlock()
	}
	if err := v.ob.st.Remove(ctx, l.bucket, key); err != nil {
		return d.errno(err)
	}
	if gone >= 0 {
		qk.add(ctx, qUser, -gone, -1)
	}
	return 0
}

// Rmdir removes an empty directory's marker; ENOTEMPTY otherwise.
func (d *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	l, prefix, err := d.where(ctx, true)
	if err != nil {
		return d.errno(err)
	}
	v := d.ws.v
	p := prefix + name + "/"
	stale := v.cache.under(l.bucket, p)
	for _, e := range stale {
		if _, live := e.live(0); live {
			return syscall.ENOTEMPTY
		}
	}
	has, err := v.ob.st.HasChildren(ctx, l.bucket, p, true)
	if err != nil {
		return d.errno(err)
	}
	if has {
		return syscall.ENOTEMPTY
	}
	if err := v.ob.st.Remove(ctx, l.bucket, p); err != nil {
		return d.errno(err)
	}
	for _, e := range stale {
		v.cache.forget(e)
	}
	return 0
}

// OpendirHandle starts a streamed listing.
func (d *dirNode) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	l, prefix, err := d.where(ctx, false)
	if err != nil {
		return nil, 0, d.errno(err)
	}
	return newDirHandle(d, l, prefix), 0, 0
}
