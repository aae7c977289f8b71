package fusefs_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// posixNotApplicable lists the posixtest cases that cannot hold for objects
// as files, with the reason. Every other case of posixtest.All must pass.
var posixNotApplicable = map[string]string{
	"FcntlFlockLocksFile": "POSIX record locks are not supported: nothing in the object store backs them",
	"FcntlFlockSetLk":     "POSIX record locks are not supported: nothing in the object store backs them",
	"Link":                "hard links are unsupported by design (EPERM/ENOTSUP)",
	"LinkUnlinkRename":    "needs hard links, unsupported by design",
	"SymlinkReadlink":     "symlinks are unsupported by design (EPERM/ENOTSUP)",
	"SetattrSymlink":      "needs symlinks, unsupported by design",
	"OpenSymlinkRace":     "needs symlinks, unsupported by design",
	"XAttr":               "extended attributes are unsupported by design",
	"XAttrLarge":          "extended attributes are unsupported by design",
	"Tmpfile":             "O_TMPFILE makes a file in no directory: it has no object key",
	"Fallocate":           "preallocation has no meaning for an object, whose size is set by its upload (ENOTSUP)",
	"FallocateKeepSize":   "preallocation has no meaning for an object, whose size is set by its upload (ENOTSUP)",
}

func TestPosix(t *testing.T) {
	for name, reason := range posixNotApplicable {
		if _, ok := posixtest.All[name]; !ok {
			t.Errorf("posixNotApplicable[%q] (%s): no such case in posixtest.All", name, reason)
		}
	}
	w := mountWorkspace(t, testOptions(t))
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if _, skip := posixNotApplicable[name]; skip {
			continue
		}
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(w.dir, name)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatalf("Mkdir: %v", err)
			}
			posixtest.All[name](t, dir)
		})
	}
}
