package fusefs

import (
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Counters are running totals since NewManager, over every view the
// manager has mounted.
type Counters struct {
	// JanitorRemovedFiles and JanitorRemovedBytes count the clean local
	// copies the janitor removed once unused for Lifespan, and their sizes.
	JanitorRemovedFiles, JanitorRemovedBytes int64
	// Ops counts the FUSE operations answered, by operation and errno;
	// only the pairs seen at least once are listed, by operation, then
	// errno (0 first, OtherErrno last).
	Ops []OpCount
	// ReadAhead describes the read-ahead budget now.
	ReadAhead ReadAheadStats
	// Staging describes the staged uploads (zero without Options.Staging).
	Staging StagingCounters
}

// OpCount is the number of FUSE operations of one kind that ended with
// one errno.
type OpCount struct {
	// Op is the operation: "lookup", "getattr", "write", …
	Op string
	// Errno is 0 for success, one of ENOENT, EACCES, EPERM, EROFS, ENOSPC,
	// EEXIST, ENOTEMPTY, EINTR, EIO, ENOTSUP, EINVAL, or OtherErrno for
	// any other errno.
	Errno syscall.Errno
	// N is the number of operations.
	N int64
}

// OtherErrno stands, in an OpCount, for every errno that is not counted
// on its own. It is no real errno.
const OtherErrno = syscall.Errno(^uintptr(0))

// fuseOp is an operation counted at the FUSE edge.
type fuseOp int

// The operations counted: every one the node tree implements (refusals
// included). Forget has no answer and is not counted.
const (
	opLookup fuseOp = iota
	opGetattr
	opSetattr
	opAccess
	opMknod
	opMkdir
	opUnlink
	opRmdir
	opRename
	opLink
	opSymlink
	opReadlink
	opGetxattr
	opSetxattr
	opListxattr
	opRemovexattr
	opCreate
	opOpen
	opRead
	opWrite
	opFallocate
	opFlush
	opFsync
	opRelease
	opOpendir
	opReaddir
	opReleasedir
	opStatfs
	numOps
)

// opNames are the names of the operations, as Counters reports them.
var opNames = [numOps]string{
	opLookup: "lookup", opGetattr: "getattr", opSetattr: "setattr", opAccess: "access",
	opMknod: "mknod", opMkdir: "mkdir", opUnlink: "unlink", opRmdir: "rmdir", opRename: "rename",
	opLink: "link", opSymlink: "symlink", opReadlink: "readlink",
	opGetxattr: "getxattr", opSetxattr: "setxattr", opListxattr: "listxattr", opRemovexattr: "removexattr",
	opCreate: "create", opOpen: "open", opRead: "read", opWrite: "write", opFallocate: "fallocate",
	opFlush: "flush", opFsync: "fsync", opRelease: "release",
	opOpendir: "opendir", opReaddir: "readdir", opReleasedir: "releasedir", opStatfs: "statfs",
}

// countedErrnos are the errno values counted one by one; the last slot
// (numErrnos-1) counts the others.
var countedErrnos = [...]syscall.Errno{
	0, syscall.ENOENT, syscall.EACCES, syscall.EPERM, syscall.EROFS, syscall.ENOSPC,
	syscall.EEXIST, syscall.ENOTEMPTY, syscall.EINTR, syscall.EIO, syscall.ENOTSUP, syscall.EINVAL,
}

const numErrnos = len(countedErrnos) + 1

// errnoSlot returns the counter slot of an answer.
func errnoSlot(st fuse.Status) int {
	for i, e := range countedErrnos {
		if syscall.Errno(st) == e {
			return i
		}
	}
	return numErrnos - 1
}

// opStats counts the operations of a manager's views; lock-free.
type opStats struct {
	n [numOps][numErrnos]atomic.Int64
}

func (s *opStats) add(op fuseOp, st fuse.Status) {
	s.n[op][errnoSlot(st)].Add(1)
}

// list returns the non-zero counts.
func (s *opStats) list() []OpCount {
	var out []OpCount
	for op := range numOps {
		for slot := range numErrnos {
			n := s.n[op][slot].Load()
			if n == 0 {
				continue
			}
			e := OtherErrno
			if slot < len(countedErrnos) {
				e = countedErrnos[slot]
			}
			out = append(out, OpCount{Op: opNames[op], Errno: e, N: n})
		}
	}
	return out
}

// Counters returns the running totals since NewManager.
func (m *Manager) Counters() Counters {
	return Counters{
		JanitorRemovedFiles: m.cache.removedFiles.Load(),
		JanitorRemovedBytes: m.cache.removedBytes.Load(),
		Ops:                 m.ops.list(),
		ReadAhead:           m.ob.budget.stats(),
		Staging:             m.stagingCounters(),
	}
}

// countingFS is the FUSE edge of a view: the node tree's file system,
// counting every answer by operation and errno. It is the one place that
// sees every operation's final status, whether a node method returned
// it directly or through errno.
type countingFS struct {
	fuse.RawFileSystem
	s *opStats
}

// Lookup counts the answer of one lookup; a negative entry (ENOENT that
// the kernel caches, answered OK with no node) counts as ENOENT.
func (c countingFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	st := c.RawFileSystem.Lookup(cancel, h, name, out)
	if st == fuse.OK && out.NodeId == 0 {
		c.s.add(opLookup, fuse.ENOENT)
		return st
	}
	c.s.add(opLookup, st)
	return st
}

// GetAttr counts the answer of one getattr.
func (c countingFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	return c.count(opGetattr, c.RawFileSystem.GetAttr(cancel, in, out))
}

// SetAttr counts the answer of one setattr.
func (c countingFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	return c.count(opSetattr, c.RawFileSystem.SetAttr(cancel, in, out))
}

// Access counts the answer of one access.
func (c countingFS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	return c.count(opAccess, c.RawFileSystem.Access(cancel, in))
}

// Mknod counts the answer of one mknod.
func (c countingFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	return c.count(opMknod, c.RawFileSystem.Mknod(cancel, in, name, out))
}

// Mkdir counts the answer of one mkdir.
func (c countingFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	return c.count(opMkdir, c.RawFileSystem.Mkdir(cancel, in, name, out))
}

// Unlink counts the answer of one unlink.
func (c countingFS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return c.count(opUnlink, c.RawFileSystem.Unlink(cancel, h, name))
}

// Rmdir counts the answer of one rmdir.
func (c countingFS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return c.count(opRmdir, c.RawFileSystem.Rmdir(cancel, h, name))
}

// Rename counts the answer of one rename.
func (c countingFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	return c.count(opRename, c.RawFileSystem.Rename(cancel, in, oldName, newName))
}

// Link counts the answer of one link.
func (c countingFS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	return c.count(opLink, c.RawFileSystem.Link(cancel, in, name, out))
}

// Symlink counts the answer of one symlink.
func (c countingFS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	return c.count(opSymlink, c.RawFileSystem.Symlink(cancel, h, target, name, out))
}

// Readlink counts the answer of one readlink.
func (c countingFS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	b, st := c.RawFileSystem.Readlink(cancel, h)
	return b, c.count(opReadlink, st)
}

// GetXAttr counts the answer of one getxattr.
func (c countingFS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	n, st := c.RawFileSystem.GetXAttr(cancel, h, attr, dest)
	return n, c.count(opGetxattr, st)
}

// ListXAttr counts the answer of one listxattr.
func (c countingFS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	n, st := c.RawFileSystem.ListXAttr(cancel, h, dest)
	return n, c.count(opListxattr, st)
}

// SetXAttr counts the answer of one setxattr.
func (c countingFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	return c.count(opSetxattr, c.RawFileSystem.SetXAttr(cancel, in, attr, data))
}

// RemoveXAttr counts the answer of one removexattr.
func (c countingFS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	return c.count(opRemovexattr, c.RawFileSystem.RemoveXAttr(cancel, h, attr))
}

// Create counts the answer of one create.
func (c countingFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	return c.count(opCreate, c.RawFileSystem.Create(cancel, in, name, out))
}

// Open counts the answer of one open.
func (c countingFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return c.count(opOpen, c.RawFileSystem.Open(cancel, in, out))
}

// Read counts the answer of one read.
func (c countingFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	r, st := c.RawFileSystem.Read(cancel, in, buf)
	return r, c.count(opRead, st)
}

// Write counts the answer of one write (called only when Writev answers
// ENOSYS).
func (c countingFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	n, st := c.RawFileSystem.Write(cancel, in, data)
	return n, c.count(opWrite, st)
}

// Writev counts the answer of one write, unless it is ENOSYS: the server
// then calls Write, which counts it.
func (c countingFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	n, st := c.RawFileSystem.Writev(cancel, in, data)
	if st == fuse.ENOSYS {
		return n, st
	}
	return n, c.count(opWrite, st)
}

// Fallocate counts the answer of one fallocate.
func (c countingFS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	return c.count(opFallocate, c.RawFileSystem.Fallocate(cancel, in))
}

// Flush counts the answer of one flush.
func (c countingFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	return c.count(opFlush, c.RawFileSystem.Flush(cancel, in))
}

// Fsync counts the answer of one fsync.
func (c countingFS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return c.count(opFsync, c.RawFileSystem.Fsync(cancel, in))
}

// Release has no answer: it counts as a success.
func (c countingFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	c.RawFileSystem.Release(cancel, in)
	c.s.add(opRelease, fuse.OK)
}

// OpenDir counts the answer of one opendir.
func (c countingFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return c.count(opOpendir, c.RawFileSystem.OpenDir(cancel, in, out))
}

// ReadDir counts the answer of one readdir.
func (c countingFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return c.count(opReaddir, c.RawFileSystem.ReadDir(cancel, in, out))
}

// ReadDirPlus counts as a readdir.
func (c countingFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return c.count(opReaddir, c.RawFileSystem.ReadDirPlus(cancel, in, out))
}

// ReleaseDir has no answer: it counts as a success.
func (c countingFS) ReleaseDir(in *fuse.ReleaseIn) {
	c.RawFileSystem.ReleaseDir(in)
	c.s.add(opReleasedir, fuse.OK)
}

// StatFs counts the answer of one statfs.
func (c countingFS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	return c.count(opStatfs, c.RawFileSystem.StatFs(cancel, h, out))
}

// count adds one answer of op and returns its status.
func (c countingFS) count(op fuseOp, st fuse.Status) fuse.Status {
	c.s.add(op, st)
	return st
}

var _ fuse.RawFileSystem = countingFS{}
