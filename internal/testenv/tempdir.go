package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// OwnedTempDir makes a new directory in os.TempDir() for a server that
// this process owns, named prefix, this process's pid, a dash and a random
// suffix (for servers that run as another user, or outlive one test, so
// not under t.TempDir). It first removes the directories of the same
// prefix whose owning process is gone: a server started with Pdeathsig
// died with it, and nothing else would remove its data.
func OwnedTempDir(prefix string) (string, error) {
	removeStaleDirs(prefix)
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", prefix, os.Getpid()))
	if err != nil {
		return "", fmt.Errorf("testenv: temp dir: %w", err)
	}
	return dir, nil
}

// removeStaleDirs removes the directories of OwnedTempDir(prefix) whose
// owning process is gone.
func removeStaleDirs(prefix string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	for _, d := range dirs {
		pidStr, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(d), prefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}
