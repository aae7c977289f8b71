package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestOwnedTempDir: the new directory carries this process's pid; the
// directories of the prefix whose process is gone are removed, this
// process's kept.
func TestOwnedTempDir(t *testing.T) {
	prefix := fmt.Sprintf("sftpgate-testenv-owned-%d-%s-", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_"))
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d-x", prefix, gone.Process.Pid))
	mine := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d-y", prefix, os.Getpid()))
	for _, d := range []string{stale, mine} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
	}
	dir, err := OwnedTempDir(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if want := fmt.Sprintf("%s%d-", prefix, os.Getpid()); !strings.HasPrefix(filepath.Base(dir), want) {
		t.Errorf("new dir: got %s, want a name starting with %s", dir, want)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("dir of a process gone: got %v, want removed", err)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("dir of this process: %v, want kept", err)
	}
}
