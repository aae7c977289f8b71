package testenv

import (
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// fusectlDir is where the kernel's FUSE control file system is mounted.
const fusectlDir = "/sys/fs/fuse/connections"

// fusectlMounted reports whether the FUSE control file system is mounted.
func fusectlMounted() bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[1] == fusectlDir && f[2] == "fusectl" {
			return true
		}
	}
	return false
}

// KeepFusectl returns a function that unmounts the FUSE control file
// system if it is mounted then and was not when KeepFusectl was called:
// the tests (and the daemons they run, to abort a killed daemon's
// connections) mount it on demand, and a test run leaves the machine's
// mounts as it found them.
func KeepFusectl() func() {
	was := fusectlMounted()
	return func() {
		if !was && fusectlMounted() {
			unix.Unmount(fusectlDir, unix.MNT_DETACH)
		}
	}
}
