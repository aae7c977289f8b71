package fusefs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrUnsafeCacheDir is wrapped by the error NewManager returns when
// <TmpDir>/sftpgate is not the daemon's alone: a symlink, not a directory,
// owned by another user, or writable by group or others. Another local
// user could then plant journals that recovery would trust.
var ErrUnsafeCacheDir = errors.New("fusefs: unsafe cache directory")

// cacheDirName is the directory of the write-back cache under TmpDir, and
// conflictsDir the directory, inside it, of the local copies moved aside.
const (
	cacheDirName = "sftpgate"
	conflictsDir = "conflicts"
)

// openCacheDir creates <tmpDir>/sftpgate (mode 0700) and its conflicts/
// when missing, checks that both are the daemon's alone and returns an
// os.Root on the cache directory, through which every cache file is
// opened.
func openCacheDir(tmpDir string) (*os.Root, error) {
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return nil, fmt.Errorf("fusefs: cache dir: %w", err)
	}
	dir := filepath.Join(tmpDir, cacheDirName)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("fusefs: cache dir: %w", err)
	}
	root, err := openPrivateDir(dir)
	if err != nil {
		return nil, err
	}
	if err := root.Mkdir(conflictsDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		root.Close()
		return nil, fmt.Errorf("fusefs: cache dir: %w", err)
	}
	fi, err := root.Lstat(conflictsDir)
	if err == nil {
		err = checkPrivate(filepath.Join(dir, conflictsDir), fi)
	}
	if err != nil {
		root.Close()
		return nil, err
	}
	return root, nil
}

// openPrivateDir opens an os.Root on dir after checking that dir is a
// directory (not a symlink) owned by the daemon's user and not writable by
// group or others; the error says what is wrong and how to fix it.
func openPrivateDir(dir string) (*os.Root, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("fusefs: cache dir: %w", err)
	}
	if err := checkPrivate(dir, fi); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("fusefs: cache dir: %w", err)
	}
	// The directory opened must be the one checked (not swapped meanwhile).
	st, err := root.Stat(".")
	if err != nil || !os.SameFile(fi, st) {
		root.Close()
		return nil, fmt.Errorf("%w: %s changed while it was opened", ErrUnsafeCacheDir, dir)
	}
	return root, nil
}

// checkPrivate checks the Lstat result fi of dir: a directory owned by the
// effective user, without group or other write permission.
func checkPrivate(dir string, fi os.FileInfo) error {
	me := os.Geteuid()
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, _ := os.Readlink(dir)
		return fmt.Errorf("%w: %s is a symlink (to %s); fix: rm %s, or set tmpDir to a private directory",
			ErrUnsafeCacheDir, dir, target, dir)
	case !fi.IsDir():
		return fmt.Errorf("%w: %s is not a directory (%v); fix: remove it, or set tmpDir elsewhere",
			ErrUnsafeCacheDir, dir, fi.Mode().Type())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%w: %s: cannot read its owner", ErrUnsafeCacheDir, dir)
	}
	perm := fi.Mode().Perm()
	if int(st.Uid) != me || perm&0o022 != 0 {
		return fmt.Errorf("%w: %s is owned by %s with mode %04o, want owner %s and no group or other write; fix: chown %s %s && chmod 0700 %s (or remove it)",
			ErrUnsafeCacheDir, dir, userName(int(st.Uid)), perm, userName(me), chownName(me), dir, dir)
	}
	return nil
}

// userName returns "name (uid N)", or "uid N" for an unknown user.
func userName(uid int) string {
	id := strconv.Itoa(uid)
	if u, err := user.LookupId(id); err == nil {
		return u.Username + " (uid " + id + ")"
	}
	return "uid " + id
}

// chownName returns the user name of uid for chown, its number if unknown.
func chownName(uid int) string {
	id := strconv.Itoa(uid)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return id
}

// idLen is the length of the ids newID makes (hex of 12 bytes).
const idLen = 24

// validID reports whether id is an id newID could have made.
func validID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := range len(id) {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// adoptLegacy moves the local copies of an older version's cache,
// <legacyTmpDir>/sftpgate, into the cache root (journals, data files and
// conflicts), so that an upgrade that changes the default TmpDir loses
// nothing. A legacy directory that does not pass the checks of the cache
// directory is left alone and logged; nothing else stops the start.
func adoptLegacy(root *os.Root, legacyTmpDir string, log *slog.Logger) {
	oldDir := filepath.Join(legacyTmpDir, cacheDirName)
	if oldDir == root.Name() {
		return
	}
	if _, err := os.Lstat(oldDir); errors.Is(err, fs.ErrNotExist) {
		return
	}
	old, err := openPrivateDir(oldDir)
	if err != nil {
		log.Warn("the cache of an older version is not adopted", "dir", oldDir, "reason", err)
		return
	}
	defer old.Close()
	moved := 0
	for _, sub := range []string{".", conflictsDir} {
		names, err := readDirNames(old, sub)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				log.Warn("cannot list the cache of an older version", "dir", filepath.Join(oldDir, sub), "err", err)
			}
			continue
		}
		for _, name := range names {
			if sub == "." {
				id, ok := strings.CutSuffix(name, ".json")
				if !ok {
					id, ok = strings.CutSuffix(name, ".data")
				}
				if !ok || !validID(id) {
					continue
				}
			}
			p := filepath.Join(sub, name)
			if err := moveBetween(old, root, p); err != nil {
				log.Warn("cannot adopt a file of an older version's cache", "path", filepath.Join(oldDir, p), "err", err)
				continue
			}
			moved++
		}
	}
	old.Remove(conflictsDir) // only when empty
	if err := os.Remove(oldDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Info("the cache directory of an older version is not empty; left in place", "dir", oldDir)
	}
	if moved > 0 {
		log.Info("adopted the local copies of an older version's cache", "from", oldDir, "to", root.Name(), "files", moved)
	}
}

// readDirNames lists the directory name of root.
func readDirNames(root *os.Root, name string) ([]string, error) {
	d, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// moveBetween moves the regular file name from root src to root dst (same
// name), refusing symlinks and never replacing a file of dst. A rename
// when both are on one file system, else a copy then a removal.
func moveBetween(src, dst *os.Root, name string) error {
	fi, err := src.Lstat(name)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file (%s)", name, fi.Mode().Type())
	}
	if _, err := dst.Lstat(name); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: already in %s", name, dst.Name())
	}
	err = os.Rename(filepath.Join(src.Name(), name), filepath.Join(dst.Name(), name))
	if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	in, err := openRegular(src, name, os.O_RDONLY)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := dst.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		dst.Remove(name)
		return err
	}
	return src.Remove(name)
}

// openRegular opens name in root with flag (no O_CREATE), refusing
// anything but a regular file of the daemon's user: a symlink is never
// followed, even to a file inside root.
func openRegular(root *os.Root, name string, flag int) (*os.File, error) {
	fi, err := root.Lstat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s): %w", name, fi.Mode().Type(), ErrUnsafeCacheDir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("%s: not owned by the daemon's user: %w", name, ErrUnsafeCacheDir)
	}
	f, err := root.OpenFile(name, flag|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil || !os.SameFile(fi, st) {
		f.Close()
		return nil, fmt.Errorf("%s: replaced while it was opened: %w", name, ErrUnsafeCacheDir)
	}
	return f, nil
}
