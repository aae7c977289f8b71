// Package fsapi holds what the SFTP side and the file system agree on
// beyond POSIX: the commands sftpd sends to fusefs on an open file.
package fsapi

import (
	"os"

	"golang.org/x/sys/unix"
)

// InterruptIoctl is the ioctl command (_IO('z', 0x53): no argument, no
// data) that marks one open handle as interrupted: its writer went away
// without closing the file (the SFTP session ended with it open). The
// close that follows publishes nothing and changes nothing for the other
// handles of the file. It belongs to the handle the ioctl is sent on,
// never to the file.
const InterruptIoctl = 0x7a53

// Interrupt sends InterruptIoctl on f. File systems other than sftpgate's
// answer ENOTTY (or ENOSYS, EINVAL), which callers may ignore with
// IsUnsupported.
func Interrupt(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, InterruptIoctl, 0)
		if e != 0 {
			serr = e
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// IsUnsupported reports whether err says the file system does not know
// the command (it is not an sftpgate mount).
func IsUnsupported(err error) bool {
	switch err {
	case unix.ENOTTY, unix.ENOSYS, unix.EINVAL, unix.ENOTSUP:
		return true
	}
	return false
}
