package fusefs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// rootNode is `/` of a view: one directory per granted workspace, nothing
// else, and nothing can be created there.
type rootNode struct {
	fs.Inode
	refuser
	v *view
}

var (
	_ fs.NodeLookuper  = (*rootNode)(nil)
	_ fs.NodeReaddirer = (*rootNode)(nil)
	_ fs.NodeGetattrer = (*rootNode)(nil)
	_ fs.NodeSetattrer = (*rootNode)(nil)
	_ fs.NodeStatfser  = (*rootNode)(nil)
	_ fs.NodeMkdirer   = (*rootNode)(nil)
	_ fs.NodeCreater   = (*rootNode)(nil)
	_ fs.NodeUnlinker  = (*rootNode)(nil)
	_ fs.NodeRmdirer   = (*rootNode)(nil)
	_ fs.NodeRenamer   = (*rootNode)(nil)
)

// Lookup finds a workspace directory.
func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ws, err := r.v.workspace(ctx, name)
	if err != nil {
		return nil, r.errno(err)
	}
	if ws == nil {
		out.SetEntryTimeout(r.v.attrTTL)
		return nil, syscall.ENOENT
	}
	l, _ := ws.where(ctx)
	r.v.fillDirAttr(&out.Attr, r.v.born, l.readOnly)
	out.SetEntryTimeout(r.v.attrTTL)
	out.SetAttrTimeout(r.v.attrTTL)
	if ch := r.GetChild(name); ch != nil {
		if d, ok := ch.Operations().(*dirNode); ok && d.ws == ws {
			return ch, 0
		}
	}
	return r.NewInode(ctx, &dirNode{ws: ws, wsRoot: true, mtime: r.v.born}, fs.StableAttr{Mode: fuse.S_IFDIR}), 0
}

// Readdir lists the granted workspaces.
func (r *rootNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	wss, err := r.v.workspaces(ctx)
	if err != nil {
		return nil, r.errno(err)
	}
	list := make([]fuse.DirEntry, 0, len(wss))
	for _, ws := range wss {
		list = append(list, fuse.DirEntry{Name: ws.slug, Mode: fuse.S_IFDIR})
	}
	return fs.NewListDirStream(list), 0
}

// Getattr reports a read-only directory.
func (r *rootNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	r.v.fillDirAttr(&out.Attr, r.v.born, true)
	out.SetTimeout(r.v.attrTTL)
	return 0
}

// Setattr refuses every change of `/`.
func (r *rootNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// Statfs reports the cache directory's space.
func (r *rootNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	return r.v.statfs(ctx, out)
}

// Mkdir is refused: `/` only holds workspaces.
func (r *rootNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

// Create is refused: `/` only holds workspaces.
func (r *rootNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

// Unlink is refused.
func (r *rootNode) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }

// Rmdir is refused.
func (r *rootNode) Rmdir(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }

// Rename is refused.
func (r *rootNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EROFS
}

// refuser answers the operations objects cannot represent with a clear
// errno: links and device nodes EPERM, extended attributes ENOTSUP.
type refuser struct{}

var (
	_ fs.NodeSymlinker     = (*refuser)(nil)
	_ fs.NodeLinker        = (*refuser)(nil)
	_ fs.NodeMknoder       = (*refuser)(nil)
	_ fs.NodeGetxattrer    = (*refuser)(nil)
	_ fs.NodeSetxattrer    = (*refuser)(nil)
	_ fs.NodeListxattrer   = (*refuser)(nil)
	_ fs.NodeRemovexattrer = (*refuser)(nil)
	_ fs.NodeReadlinker    = (*refuser)(nil)
)

// Symlink is refused: objects cannot be symbolic links.
func (refuser) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

// Link is refused: objects cannot be hard links.
func (refuser) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

// Mknod is refused: only regular files and directories exist. A name that
// could never be stored is EINVAL, as for Create.
func (refuser) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if err := checkName(name); err != nil {
		return nil, errno(err)
	}
	return nil, syscall.EPERM
}

// Readlink is refused: there are no symbolic links.
func (refuser) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return nil, syscall.EINVAL
}

// Getxattr is not supported.
func (refuser) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return 0, syscall.ENOTSUP
}

// Setxattr is not supported.
func (refuser) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.ENOTSUP
}

// Listxattr is not supported.
func (refuser) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return 0, syscall.ENOTSUP
}

// Removexattr is not supported.
func (refuser) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return syscall.ENOTSUP
}

var (
	_ fs.NodeAccesser = (*rootNode)(nil)
	_ fs.NodeAccesser = (*dirNode)(nil)
	_ fs.NodeAccesser = (*fileNode)(nil)
)

// accessMode answers access(2): W_OK is EROFS when the workspace (or the
// whole view) is read-only; everything else is allowed (no owner checks).
func accessMode(ro bool, mask uint32) syscall.Errno {
	if ro && mask&2 != 0 { // W_OK
		return syscall.EROFS
	}
	return 0
}

// Access refuses W_OK: `/` is read-only.
func (r *rootNode) Access(ctx context.Context, mask uint32) syscall.Errno {
	return accessMode(true, mask)
}

// Access refuses W_OK in a read-only workspace.
func (d *dirNode) Access(ctx context.Context, mask uint32) syscall.Errno {
	l, err := d.ws.where(ctx)
	if err != nil {
		return d.errno(err)
	}
	return accessMode(l.readOnly, mask)
}

// Access refuses W_OK in a read-only workspace.
func (f *fileNode) Access(ctx context.Context, mask uint32) syscall.Errno {
	l, err := f.ws.where(ctx)
	if err != nil {
		return f.errno(err)
	}
	return accessMode(l.readOnly, mask)
}
