package fusefs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fuseMount is one FUSE mount from a mountinfo file.
type fuseMount struct {
	id     string // the mount's id (first field of mountinfo)
	dir    string
	fstype string
	source string // "sftpgate:<user>" for ours
	minor  string // the connection's number in /sys/fs/fuse/connections
}

// ownFSType is the file system type of sftpgate's mounts.
const ownFSType = "fuse.sftpgate"

// ownSourcePrefix starts the source (FsName) of sftpgate's mounts.
const ownSourcePrefix = "sftpgate:"

// own reports whether the mount is one of sftpgate's views.
func (m fuseMount) own() bool {
	return m.fstype == ownFSType && strings.HasPrefix(m.source, ownSourcePrefix)
}

// fuseMounts returns the FUSE mounts at or under root, deepest first.
func fuseMounts(root string) ([]fuseMount, error) {
	return readFuseMounts("/proc/self/mountinfo", root)
}

// readFuseMounts returns the FUSE mounts at or under root listed in the
// mountinfo file at path (/proc/<pid>/mountinfo), deepest first; every
// one of them when root is "".
func readFuseMounts(path, root string) ([]fuseMount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	defer f.Close()
	out, err := parseFuseMounts(f, root)
	if err != nil {
		return nil, fmt.Errorf("mountinfo %s: %w", path, err)
	}
	return out, nil
}

// isFUSEType reports whether a mountinfo file system type is a FUSE mount
// (fuse, fuseblk, fuse.<subtype>; not fusectl).
func isFUSEType(t string) bool {
	return t == "fuse" || t == "fuseblk" || strings.HasPrefix(t, "fuse.")
}

// parseFuseMounts reads mountinfo lines and keeps the FUSE mounts at or
// under root, deepest first.
func parseFuseMounts(r io.Reader, root string) ([]fuseMount, error) {
	var out []fuseMount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields := strings.Fields(pre)
		pfields := strings.Fields(post)
		if len(fields) < 5 || len(pfields) < 1 || !isFUSEType(pfields[0]) {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == root || strings.HasPrefix(mp, root+"/") {
			_, minor, _ := strings.Cut(fields[2], ":")
			m := fuseMount{id: fields[0], dir: mp, fstype: pfields[0], minor: minor}
			if len(pfields) > 1 {
				m.source = unescapeMountinfo(pfields[1])
			}
			out = append(out, m)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i].dir) > len(out[j].dir) })
	return out, nil
}

// fusectlDir is where the kernel lists FUSE connections.
const fusectlDir = "/sys/fs/fuse/connections"

// abortConn aborts a FUSE connection through fusectl (mounting it when
// needed and possible): every request waiting on it fails at once, which
// also frees a killed server stuck flushing a file of its own mount.
func abortConn(minor string) error {
	if minor == "" || strings.ContainsAny(minor, "/.") {
		return fmt.Errorf("abort connection %q: %w", minor, ErrInvalidName)
	}
	p := filepath.Join(fusectlDir, minor, "abort")
	if _, err := os.Stat(filepath.Join(fusectlDir, minor)); err != nil && os.Geteuid() == 0 {
		unix.Mount("fusectl", fusectlDir, "fusectl", 0, "")
	}
	if err := os.WriteFile(p, []byte("1"), 0); err != nil {
		return fmt.Errorf("abort connection %s: %w", minor, err)
	}
	return nil
}

// statWithin stats dir, giving up after d (a dead server can make stat
// wait until its connection is aborted; the stat goroutine ends then).
func statWithin(dir string, d time.Duration) (err error, timedOut bool) {
	ch := make(chan error, 1)
	go func() {
		var st unix.Stat_t
		ch <- unix.Stat(dir, &st)
	}()
	select {
	case err := <-ch:
		return err, false
	case <-time.After(d):
		return nil, true
	}
}

func isNotConn(err error) bool {
	return errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED)
}

// clearStale takes down one mount left by another (dead) process: an
// sftpgate mount is aborted first (its server may be stuck in exit,
// flushing a file of its own mount), any other only when it no longer
// answers; then it is lazily unmounted. It reports whether the mount is gone.
// A mount point in live (served by this manager, nil for none) is never
// touched.
func clearStale(mp fuseMount, live *sync.Map, log *slog.Logger) bool {
	if live != nil {
		if _, ok := live.Load(mp.dir); ok {
			return false
		}
	}
	aborted := false
	if mp.fstype == ownFSType {
		if err := abortConn(mp.minor); err != nil {
			log.Warn("cannot abort a stale connection", "dir", mp.dir, "err", err)
		} else {
			aborted = true
		}
	}
	err, timedOut := statWithin(mp.dir, 2*time.Second)
	if timedOut && !aborted {
		if aerr := abortConn(mp.minor); aerr != nil {
			log.Warn("a mount does not answer and cannot be aborted", "dir", mp.dir, "err", aerr)
			return false
		}
		err, timedOut = statWithin(mp.dir, 2*time.Second)
	}
	if timedOut || !isNotConn(err) {
		return false // alive: someone else's
	}
	if err := lazyUnmount(mp.dir); err != nil {
		log.Warn("cannot unmount a stale mount", "dir", mp.dir, "err", err)
		return false
	}
	log.Info("unmounted a stale mount", "dir", mp.dir)
	return true
}

// unescapeMountinfo undoes the octal escapes (\040 for space) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// lazyUnmount detaches dir: umount2(MNT_DETACH) when root, else
// fusermount3 -uz.
func lazyUnmount(dir string) error {
	if os.Geteuid() == 0 {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
		return nil
	}
	for _, bin := range []string{"fusermount3", "fusermount"} {
		if out, err := exec.Command(bin, "-uz", dir).CombinedOutput(); err == nil {
			return nil
		} else if !errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("unmount %s: %v: %s", dir, err, strings.TrimSpace(string(out)))
		}
	}
	return fmt.Errorf("unmount %s: no fusermount: %w", dir, syscall.ENOSYS)
}

// cleanStale takes down the stale mounts under root, but those in live.
func cleanStale(root string, live *sync.Map, log *slog.Logger) error {
	mps, err := fuseMounts(root)
	if err != nil {
		return err
	}
	for _, mp := range mps {
		clearStale(mp, live, log)
	}
	return nil
}

// prepareMountPoint makes sure dir exists and is not a mount point; a
// stale mount there is taken down unless it is in live.
func prepareMountPoint(dir string, live *sync.Map, log *slog.Logger) error {
	mps, err := fuseMounts(dir)
	if err != nil {
		return err
	}
	for _, mp := range mps {
		if mp.dir == dir && !clearStale(mp, live, log) {
			return fmt.Errorf("mount point %s: already mounted: %w", dir, ErrExists)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("mount point: %w", err)
	}
	return nil
}

// mountDir returns the mount point of a view.
func mountDir(root, user string, ro bool) string {
	if ro {
		return filepath.Join(root, readOnlyDir, user)
	}
	return filepath.Join(root, user)
}

// readOnlyDir holds the read-only views under the mount root; it is not a
// valid user name.
const readOnlyDir = ".readonly"
