package fusefs

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// spaceCheckEvery is how many bytes may be written to a local copy between
// two checks of the free space in the cache directory.
const spaceCheckEvery = 1 << 20

// freeSpace returns the bytes available to unprivileged users, the total
// size, and the block size of the file system holding dir.
func freeSpace(dir string) (avail, total uint64, bsize int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), int64(st.Bsize), nil
}

// errENOSPC is the OS error of a full disk.
const errENOSPC = unix.ENOSPC
