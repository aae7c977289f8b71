package fusefs

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/sftpgate/sftpgate/internal/fsapi"
)

// fileNode is a file inside a workspace: an object, or a local copy being
// written.
type fileNode struct {
	fs.Inode
	refuser
	ws *workspace
	// gone is set once the name was unlinked or renamed over.
	gone atomic.Bool

	// mu guards info and infoAt, the object as last seen in the store,
	// and pageETag: the version of the content the kernel may hold in its
	// page cache for this inode, "" when unknown (see Open).
	mu       sync.Mutex
	info     objInfo
	infoAt   time.Time
	pageETag string
}

var (
	_ fs.NodeGetattrer = (*fileNode)(nil)
	_ fs.NodeSetattrer = (*fileNode)(nil)
	_ fs.NodeOpener    = (*fileNode)(nil)
	_ fs.NodeFsyncer   = (*fileNode)(nil)
)

func (f *fileNode) setInfo(info objInfo, at time.Time) {
	f.mu.Lock()
	f.info, f.infoAt = info, at
	f.mu.Unlock()
}

// swapPageETag records that the kernel's page cache now holds content of
// version etag ("" unknown) and reports whether it already did, in which
// case an open may keep the cache.
func (f *fileNode) swapPageETag(etag string) (same bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	same = etag != "" && f.pageETag == etag
	f.pageETag = etag
	return same
}

// where returns the workspace location and the file's key.
func (f *fileNode) where(ctx context.Context, write bool) (loc, string, error) {
	var (
		l   loc
		err error
	)
	if write {
		l, err = f.ws.writable(ctx)
	} else {
		l, err = f.ws.where(ctx)
	}
	if err != nil {
		return l, "", err
	}
	rel, err := relPath(&f.Inode)
	if err != nil {
		return l, "", err
	}
	return l, l.prefix + rel, nil
}

var _ fs.NodeSetxattrer = (*fileNode)(nil)

// Setxattr: extended attributes are not supported.
func (f *fileNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.ENOTSUP
}

// liveAttr returns the attributes of a local copy that is open or dirty
// (or was used within the attribute TTL), ok false when there is none.
func (v *view) liveAttr(e *entry) (objInfo, bool) {
	if e == nil {
		return objInfo{}, false
	}
	return e.live(v.attrTTL)
}

// Getattr reports the file, from its local copy when it has a live one
// (or the handle's, even once unlinked), else from the store (asked again
// once the attribute TTL has passed).
func (f *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	v := f.ws.v
	wl, err := f.ws.where(ctx)
	if err != nil {
		return f.errno(err)
	}
	h, _ := fh.(*fileHandle)
	if h != nil && h.e != nil {
		info, gone := h.e.info()
		v.fillFileAttr(&out.Attr, info.Size, info.Mtime, info.Mode, wl.readOnly)
		if gone || f.gone.Load() {
			out.Nlink = 0
		}
		out.SetTimeout(v.attrTTL)
		return 0
	}
	f.mu.Lock()
	info, fresh := f.info, time.Since(f.infoAt) < v.attrTTL
	f.mu.Unlock()
	if h != nil && (fresh || f.gone.Load()) {
		v.fillFileAttr(&out.Attr, info.Size, info.Mtime, info.Mode, wl.readOnly)
		if f.gone.Load() {
			out.Nlink = 0
		}
		out.SetTimeout(v.attrTTL)
		return 0
	}
	l, key, err := f.where(ctx, false)
	if err != nil {
		return f.errno(err)
	}
	if info, ok := v.liveAttr(v.copyOf(ctx, l.bucket, key)); ok {
		v.fillFileAttr(&out.Attr, info.Size, info.Mtime, info.Mode, l.readOnly)
		out.SetTimeout(v.attrTTL)
		return 0
	}
	if !fresh {
		got, err := v.ob.stat(ctx, l.bucket, key)
		switch {
		case err == nil:
			info = got
			f.setInfo(got, time.Now())
		case isNotFound(err) && h != nil:
			// Removed in the store while open here: keep what we knew.
		default:
			return f.errno(err)
		}
	}
	v.fillFileAttr(&out.Attr, info.Size, info.Mtime, info.Mode, l.readOnly)
	out.SetTimeout(v.attrTTL)
	return 0
}

// openEntry returns the local copy of key with one open taken, for
// writing (creating it from the object when needed; the old bytes are
// fetched lazily) or, when forRead, only if a usable one exists (nil
// otherwise). remote is the object's info when it was asked.
func (v *view) openEntry(ctx context.Context, bucket, key string, trunc, forRead bool) (*entry, *objInfo, error) {
	if e := v.copyOf(ctx, bucket, key); e != nil && e.openLive() && v.cache.takeStaged(ctx, e, forRead) {
		if trunc {
			if err := e.truncate(0); err != nil {
				v.cache.release(e)
				return nil, nil, err
			}
		}
		return e, nil, nil
	}
	info, err := v.ob.stat(ctx, bucket, key)
	var remote *objInfo
	switch {
	case err == nil:
		remote = &info
	case isNotFound(err):
		if forRead {
			return nil, nil, err
		}
	default:
		return nil, nil, err
	}
	if forRead {
		e := v.cache.lookup(bucket, key)
		if e == nil {
			return nil, remote, nil
		}
		if !e.holdsAll(remote.ETag) {
			return nil, remote, nil
		}
	}
	e, err := v.cache.open(bucket, key, v.user, remote, trunc)
	return e, remote, err
}

// Open opens the file. Writing (or O_TRUNC) goes to the local copy;
// reading uses the local copy when there is a current one, else the store
// with read-ahead.
func (f *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	v := f.ws.v
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0
	l, key, err := f.where(ctx, write)
	if err != nil {
		return nil, 0, f.errno(err)
	}
	if write {
		if err := v.cache.mayWrite(l.bucket, key, v.user); err != nil {
			return nil, 0, f.errno(err)
		}
	}
	e, remote, err := v.openEntry(ctx, l.bucket, key, flags&syscall.O_TRUNC != 0, !write)
	if err != nil {
		return nil, 0, f.errno(err)
	}
	if remote != nil {
		f.setInfo(*remote, time.Now())
	}
	// The kernel drops the inode's cached pages at every open that does
	// not say FOPEN_KEEP_CACHE. A read open keeps them when they are of
	// the version being opened: pages read through an earlier open of the
	// same object version, or written through this inode before the upload
	// that made the version (see uploadNow). Every write open drops them.
	var (
		h       *fileHandle
		version string
	)
	switch {
	case write:
		h = newWriteHandle(v, e, flags)
	case e != nil:
		h = newLocalReadHandle(v, e)
		version = e.cleanETag()
	default:
		h = newRemoteHandle(v, newRemoteReader(v.cache.bg, v.ob, l.bucket, key, *remote))
		version = remote.ETag
	}
	h.n = f
	var openFlags uint32
	if f.swapPageETag(version) {
		openFlags = fuse.FOPEN_KEEP_CACHE
	}
	return h, openFlags, 0
}

// Fsync uploads the local copy now.
func (f *fileNode) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	h, ok := fh.(*fileHandle)
	if !ok || h.e == nil {
		return 0
	}
	return h.Fsync(ctx, flags)
}

// Setattr changes size (through the local copy), mtime and mode (stored
// as metadata: with the next upload when a local copy is live, else by a
// server-side copy onto itself). chown to another owner and the setuid,
// setgid and sticky bits are EPERM.
func (f *fileNode) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	v := f.ws.v
	if uid, ok := in.GetUID(); ok && uid != v.uid {
		return syscall.EPERM
	}
	if gid, ok := in.GetGID(); ok && gid != v.gid {
		return syscall.EPERM
	}
	mode, hasMode := in.GetMode()
	size, hasSize := in.GetSize()
	mtime, hasMtime := in.GetMTime()
	if !hasMode && !hasSize && !hasMtime {
		return f.Getattr(ctx, fh, out)
	}
	if hasMode && mode&0o7000 != 0 {
		return syscall.EPERM
	}
	mode &= 0o777
	if err := f.setattr(ctx, fh, hasSize, int64(size), hasMtime, mtime, hasMode, mode); err != nil {
		return f.errno(err)
	}
	return f.Getattr(ctx, fh, out)
}

func (f *fileNode) setattr(ctx context.Context, fh fs.FileHandle, hasSize bool, size int64, hasMtime bool, mtime time.Time, hasMode bool, mode uint32) error {
	v := f.ws.v
	if hasSize && (size < 0 || size > v.maxSize) {
		return fmt.Errorf("truncate: %w", syscall.EFBIG)
	}
	l, key, err := f.where(ctx, true)
	if err != nil {
		return err
	}
	var e *entry
	own := false
	if h, ok := fh.(*fileHandle); ok && h.e != nil {
		if hasSize && !h.write {
			return fmt.Errorf("truncate: %w", syscall.EBADF)
		}
		if hasSize {
			h.activate()
		}
		e = h.e
	} else if hasSize {
		if err := v.cache.mayWrite(l.bucket, key, v.user); err != nil {
			return err
		}
		if e, _, err = v.openEntry(ctx, l.bucket, key, size == 0, false); err != nil {
			return err
		}
		own = true
	} else if ce := v.copyOf(ctx, l.bucket, key); ce != nil && ce.openLive() {
		e, own = ce, true
	}
	if e != nil {
		if own {
			defer v.cache.release(e)
			// On a path with no writer and no interrupted upload, the
			// change is an open, a change and a close: it publishes.
			if e.held() {
				own = false
			} else {
				v.cache.openWriter(e)
				defer v.cache.closeWriter(e)
			}
		}
		if hasSize {
			if err := e.truncate(size); err != nil {
				return err
			}
		}
		if hasMtime || hasMode {
			var mt *time.Time
			var md *uint32
			if hasMtime {
				mt = &mtime
			}
			if hasMode {
				md = &mode
			}
			e.setMeta(mt, md)
		}
		if own {
			return v.cache.upload(e)
		}
		return nil
	}
	// No local copy: rewrite the metadata with a copy onto itself.
	info, err := v.ob.stat(ctx, l.bucket, key)
	if err != nil {
		return err
	}
	newMtime, newMode := info.Mtime, info.Mode
	if hasMtime {
		newMtime = mtime
	}
	if hasMode {
		newMode = mode
	}
	etag, err := v.ob.st.Copy(ctx, l.bucket, key, l.bucket, key, info.Size, userMeta(newMtime, newMode))
	if err != nil {
		return err
	}
	if ce := v.cache.lookup(l.bucket, key); ce != nil {
		ce.metaCopied(info.ETag, etag, newMtime, newMode)
	}
	info.ETag, info.Mtime, info.Mode = etag, newMtime, newMode
	f.setInfo(info, time.Now())
	return nil
}

// fileHandle is one open file: on the local copy (writes, and reads of a
// current local copy) or on the store (reads with read-ahead).
type fileHandle struct {
	v      *view
	n      *fileNode
	e      *entry
	r      *remoteReader
	write  bool
	append bool
	// interrupted: the writer went away without closing
	// (fsapi.InterruptIoctl); the handle publishes nothing.
	interrupted atomic.Bool

	// mu guards the fields below. poison is the error of a failed write
	// (no space, too big): the handle's close returns it and publishes
	// nothing. active: the handle counts as a writer of the copy (from its
	// open or a write until its next flush: close(2) returns at the flush,
	// the release comes later, asynchronously). counted: the handle counts
	// in the view's open files (until its first flush or its release).
	mu      sync.Mutex
	poison  error
	active  bool
	counted bool
}

// activate makes the handle a writer of the copy again (a write after a
// flush, as through a dup'ed descriptor).
func (h *fileHandle) activate() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.active {
		h.active = true
		h.v.cache.openWriter(h.e)
	}
}

// deactivate ends the handle's part as a writer, once per activation.
func (h *fileHandle) deactivate() {
	h.mu.Lock()
	active := h.active
	h.active = false
	h.mu.Unlock()
	if active {
		h.v.cache.closeWriter(h.e)
	}
}

// uncount removes the handle from the view's open files, once.
func (h *fileHandle) uncount() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.counted {
		h.counted = false
		h.v.openFiles.Add(-1)
	}
}

var (
	_ fs.FileAllocater = (*fileHandle)(nil)
	_ fs.FileReader    = (*fileHandle)(nil)
	_ fs.FileWriter    = (*fileHandle)(nil)
	_ fs.FileFlusher   = (*fileHandle)(nil)
	_ fs.FileFsyncer   = (*fileHandle)(nil)
	_ fs.FileReleaser  = (*fileHandle)(nil)
	_ fs.FileIoctler   = (*fileHandle)(nil)
)

// Ioctl takes fsapi.InterruptIoctl on a handle open for writing: its
// writer went away without closing the file.
func (h *fileHandle) Ioctl(ctx context.Context, cmd uint32, arg uint64, input []byte, output []byte) (int32, syscall.Errno) {
	if cmd != fsapi.InterruptIoctl {
		return 0, syscall.ENOTTY
	}
	if !h.write || h.e == nil {
		return 0, syscall.EBADF
	}
	h.interrupted.Store(true)
	return 0, 0
}

func newWriteHandle(v *view, e *entry, flags uint32) *fileHandle {
	v.openFiles.Add(1)
	v.cache.openWriter(e)
	e.setQuotaOwner(v.cache.bg, v.cache.qk)
	return &fileHandle{v: v, e: e, write: true, append: flags&syscall.O_APPEND != 0, active: true, counted: true}
}

func newLocalReadHandle(v *view, e *entry) *fileHandle {
	v.openFiles.Add(1)
	return &fileHandle{v: v, e: e, counted: true}
}

func newRemoteHandle(v *view, r *remoteReader) *fileHandle {
	v.openFiles.Add(1)
	return &fileHandle{v: v, r: r, counted: true}
}

// Read reads from the local copy or the store.
func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h.r != nil {
		res, err := h.r.read(ctx, dest, off)
		if err != nil {
			return nil, h.errno(err)
		}
		return res, 0
	}
	n, err := h.e.readAt(ctx, dest, off)
	if err != nil {
		return nil, h.errno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// Write writes to the local copy.
func (h *fileHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !h.write {
		return 0, syscall.EBADF
	}
	if h.interrupted.Load() {
		return 0, syscall.EIO
	}
	h.activate()
	if !h.append && off > h.v.maxSize-int64(len(data)) {
		h.poisonWith(syscall.EFBIG)
		return 0, syscall.EFBIG
	}
	if err := h.v.cache.qk.checkGrow(ctx, h.e, off+int64(len(data)), h.append); err != nil {
		h.poisonWith(err)
		return 0, h.errno(err)
	}
	if h.append {
		off = appendOffset // at the end, decided under the entry's lock
	}
	n, err := h.e.writeAt(ctx, data, off)
	if err != nil {
		h.poisonWith(err)
		return uint32(n), h.errno(err)
	}
	return uint32(n), 0
}

// poisonWith records a failed write that leaves the file short of what the
// client sent (no space, too big, over quota): the handle's close returns
// it and publishes nothing.
func (h *fileHandle) poisonWith(err error) {
	switch errno(err) {
	case syscall.ENOSPC, syscall.EFBIG, syscall.EDQUOT:
		h.mu.Lock()
		if h.poison == nil {
			h.poison = err
		}
		h.mu.Unlock()
	}
}

// blocked returns why the handle's close or fsync may not publish:
// nil when it may.
func (h *fileHandle) blocked() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.poison
}

// uploadNow uploads the local copy and refreshes the node's attributes.
func (h *fileHandle) uploadNow() error {
	if err := h.v.cache.upload(h.e); err != nil {
		return err
	}
	if h.n != nil {
		info, _ := h.e.info()
		h.n.setInfo(info, time.Now())
		// Every byte of this version went through this inode (a write
		// open dropped the older pages), so what the kernel cached is it.
		h.n.swapPageETag(h.e.cleanETag())
	}
	return nil
}

// Flush is a close(2) of the handle: a writer's publishes the copy as it
// stands and returns the upload's error. An interrupted handle publishes
// nothing; a poisoned one returns its write's error.
func (h *fileHandle) Flush(ctx context.Context) syscall.Errno {
	defer h.uncount()
	errno := h.publish()
	if h.write {
		// close(2) returns now: the next operation on the path must not
		// find this handle a writer still (its release comes later).
		h.deactivate()
	}
	return errno
}

// Fsync publishes the copy now, as a close does.
func (h *fileHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if h.e == nil {
		return 0
	}
	return h.publish()
}

func (h *fileHandle) publish() syscall.Errno {
	if !h.write || h.interrupted.Load() {
		return 0
	}
	if err := h.blocked(); err != nil {
		return h.errno(err)
	}
	return h.errno(h.uploadNow())
}

// Release ends the handle. It publishes nothing: a writer that goes with
// changes no close published leaves an interrupted upload (closeWriter).
func (h *fileHandle) Release(ctx context.Context) syscall.Errno {
	defer h.uncount()
	if h.r != nil {
		h.r.close()
		return 0
	}
	if h.write {
		h.deactivate()
	}
	h.v.cache.release(h.e)
	return 0
}

// Allocate supports mode 0 (reserve and extend) and FALLOC_FL_KEEP_SIZE
// on the local copy; other modes are EOPNOTSUPP.
func (h *fileHandle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	if !h.write {
		return syscall.EBADF
	}
	if mode&^unix.FALLOC_FL_KEEP_SIZE != 0 {
		return syscall.EOPNOTSUPP
	}
	if h.interrupted.Load() {
		return syscall.EIO
	}
	h.activate()
	err := h.e.allocate(ctx, int64(off), int64(size), mode)
	h.poisonWith(err)
	return h.errno(err)
}
