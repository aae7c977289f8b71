package fusefs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// getxattrOff answers getxattr's "not supported" with ENOSYS, which the
// kernel remembers for the whole mount: it then answers every getxattr
// itself with EOPNOTSUPP, what the caller saw before, without asking us.
// Without it the kernel asks for "security.capability" before every
// write (FUSE keeps no "no security xattrs" flag on its inodes), a round
// trip into the daemon per pwrite: one per gathered 1 MiB window, one per
// 32 KiB request written through when the gathering budget is spent, as
// when 20 sessions upload at once. The refusal is counted (ENOTSUP) once
// per mount by the wrapped countingFS.
type getxattrOff struct{ fuse.RawFileSystem }

// GetXAttr asks the wrapped file system and turns ENOTSUP into ENOSYS.
func (g getxattrOff) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	n, st := g.RawFileSystem.GetXAttr(cancel, h, attr, dest)
	if st == fuse.Status(syscall.ENOTSUP) {
		return 0, fuse.ENOSYS
	}
	return n, st
}

var _ fuse.RawFileSystem = getxattrOff{}
