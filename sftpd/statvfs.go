package sftpd

import (
	"github.com/pkg/sftp"
	"golang.org/x/sys/unix"
)

// statVFS answers statvfs@openssh.com with fstatfs on the directory or
// file opened through the session root.
func (h *handlers) statVFS(rq *request) (*sftp.StatVFS, error) {
	p := rq.path
	f, err := h.root.Open(rootRel(p))
	if err != nil {
		return nil, h.fail("statvfs", p, err)
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, h.fail("statvfs", p, err)
	}
	var st unix.Statfs_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstatfs(int(fd), &st) }); err != nil {
		return nil, h.fail("statvfs", p, err)
	}
	if serr != nil {
		return nil, h.fail("statvfs", p, serr)
	}
	return &sftp.StatVFS{
		Bsize:   uint64(st.Bsize),
		Frsize:  uint64(st.Frsize),
		Blocks:  st.Blocks,
		Bfree:   st.Bfree,
		Bavail:  st.Bavail,
		Files:   st.Files,
		Ffree:   st.Ffree,
		Favail:  st.Ffree,
		Fsid:    uint64(uint32(st.Fsid.Val[0]))<<32 | uint64(uint32(st.Fsid.Val[1])),
		Flag:    uint64(st.Flags),
		Namemax: uint64(st.Namelen),
	}, nil
}
