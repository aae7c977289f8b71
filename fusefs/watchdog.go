package fusefs

// The FUSE watchdog: what frees a killed daemon.
//
// sftpgate serves its FUSE mounts and, through sftpd, uses them. When the
// daemon is killed (kill -9, the OOM killer) while a session has a file
// open on a mount, the kernel closes that file during the exit of the
// process, and a close means a FLUSH request to the file's FUSE server:
// the dying process itself. Nobody will ever answer, so the exiting thread
// waits in request_wait_answer for good. The /dev/fuse descriptor, which
// would abort the connection when closed, is never reached; the SSH
// listener and the sessions' sockets are never closed either: clients hang
// rather than see their connection drop, the port stays taken, and the
// process remains a zombie with a thread stuck until someone writes to
// /sys/fs/fuse/connections/<id>/abort.
//
// Nothing inside the process can help (it is dying), so the daemon runs a
// small child process, the watchdog (RunWatchdog, `sftpgate
// internal-fuse-watchdog`), which:
//   - identifies the daemon by pid and start time (field 22 of
//     /proc/<pid>/stat): a reused pid is never mistaken for it;
//   - polls every 100 ms. While the daemon lives, it records the daemon's
//     mounts (its /proc/<pid>/mountinfo, type fuse.sftpgate, source
//     sftpgate:<user>, under the mount root): mount id, mount point and
//     the connection id, the minor device number of the mount;
//   - once the daemon's main thread is exiting (PF_EXITING in field 9: the
//     stuck thread may be the main thread itself), has a SIGKILL pending
//     (field 31: a thread that was waiting for a FUSE answer when the kill
//     came keeps waiting, uninterruptibly, before it even starts to exit),
//     is a zombie (the main thread is done, others are stuck), or is gone,
//     it writes "1" to each recorded connection's abort file and detaches
//     the mount (umount2 MNT_DETACH), then exits. Every stuck request
//     fails at once, the exit goes on, the sockets close, the parent reaps
//     the daemon. A mount is acted on only while the mount table still
//     shows it with the same mount id, mount point and connection, so a
//     mount of a newer daemon is never touched; a recorded connection that
//     no mount shows any more (a busy view the daemon had detached) is
//     aborted too;
//   - ignores SIGTERM, SIGINT and SIGHUP (stopping is the daemon's
//     business), runs in its own process group, and asks the kernel not to
//     pick it for an OOM kill; the daemon starts it again if it dies, and
//     tells it to stop after a clean shutdown.
//
// Polling was chosen over anything the daemon would have to do at death
// (it can do nothing then) and over pidfd/ptrace notifications (a pidfd
// becomes readable only once the whole process is dead, which is exactly
// what never happens here). The cost is two pread(2) every 100 ms, of the
// daemon's stat (300 bytes) and mountinfo (parsed only when it changed),
// on files kept open, with no allocation, and a nanosleep(2): 2.4 ms of
// CPU per second (0.24 % of a core) measured on a machine at load 10.
//
// When the watchdog is killed together with the daemon (a kill of the whole
// control group, say), the next start does the same work: the stale
// control socket is probed, the stale mounts under the mount root are
// aborted and detached (cleanStale), and the old process is waited for.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// pfExiting is the PF_EXITING flag of a task (include/linux/sched.h).
const pfExiting = 0x4

// sigkillBit is SIGKILL in a signal mask.
const sigkillBit = 1 << (9 - 1)

// ProcStat is what the watchdog reads of /proc/<pid>/stat.
type ProcStat struct {
	Comm      string // field 2, without its parentheses
	State     byte   // field 3: R, S, D, Z, X, ...
	Flags     uint64 // field 9: the kernel's PF_* flags
	Threads   int    // field 20
	StartTime uint64 // field 22: clock ticks after boot
	Pending   uint64 // field 31: the signals pending for the main thread
}

// Exiting reports whether the process is on its way out: its main thread
// is exiting, a zombie or dead, or has a SIGKILL pending. The kernel
// queues SIGKILL on every thread of a process that is killed (or that
// exits from another thread), and a thread waiting for a FUSE answer its
// own process will never give cannot take it: it stays pending there.
func (s ProcStat) Exiting() bool {
	return s.State == 'Z' || s.State == 'X' || s.Flags&pfExiting != 0 || s.Pending&sigkillBit != 0
}

// Done reports whether the process has finished exiting (a zombie with no
// thread left but its main one): it holds no file any more.
func (s ProcStat) Done() bool {
	return s.State == 'X' || (s.State == 'Z' && s.Threads <= 1)
}

// errBadStat is returned for a /proc/<pid>/stat that cannot be parsed.
var errBadStat = errors.New("fusefs: malformed /proc stat")

// ParseProcStat parses the content of /proc/<pid>/stat. The command name
// (field 2) may hold spaces and parentheses: it ends at the last ')'.
func ParseProcStat(b []byte) (ProcStat, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return ProcStat{}, errBadStat
	}
	rest := bytes.Fields(b[end+1:])
	// rest[0] is field 3; field n is rest[n-3].
	if len(rest) < 31-3+1 || len(rest[0]) != 1 {
		return ProcStat{}, errBadStat
	}
	st := ProcStat{Comm: string(b[open+1 : end]), State: rest[0][0]}
	var err error
	if st.Flags, err = strconv.ParseUint(string(rest[9-3]), 10, 64); err != nil {
		return ProcStat{}, fmt.Errorf("%w: flags: %v", errBadStat, err)
	}
	if st.Threads, err = strconv.Atoi(string(rest[20-3])); err != nil {
		return ProcStat{}, fmt.Errorf("%w: threads: %v", errBadStat, err)
	}
	if st.StartTime, err = strconv.ParseUint(string(rest[22-3]), 10, 64); err != nil {
		return ProcStat{}, fmt.Errorf("%w: start time: %v", errBadStat, err)
	}
	if st.Pending, err = strconv.ParseUint(string(rest[31-3]), 10, 64); err != nil {
		return ProcStat{}, fmt.Errorf("%w: signal: %v", errBadStat, err)
	}
	return st, nil
}

// ReadProcStat reads and parses /proc/<pid>/stat.
func ReadProcStat(pid int) (ProcStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ProcStat{}, fmt.Errorf("fusefs: process %d: %w", pid, err)
	}
	st, err := ParseProcStat(b)
	if err != nil {
		return ProcStat{}, fmt.Errorf("process %d: %w", pid, err)
	}
	return st, nil
}

// WatchdogConfig says which daemon a watchdog watches.
type WatchdogConfig struct {
	// Pid and StartTime (field 22 of its /proc stat) identify the daemon.
	Pid       int
	StartTime uint64
	// MountRoot is the daemon's mount root: only its views under it are
	// watched.
	MountRoot string
	// Interval between two looks at the daemon; 100 ms if zero.
	Interval time.Duration
	// Logger gets what the watchdog does; slog.Default() if nil.
	Logger *slog.Logger
}

// WatchdogInterval is the default WatchdogConfig.Interval.
const WatchdogInterval = 100 * time.Millisecond

// RunWatchdog watches the daemon until it is gone, then aborts and
// detaches the FUSE mounts it served (see the comment at the top of this
// file). It returns nil once the daemon is gone, or when ctx is done (the
// daemon asked it to stop after a clean shutdown).
func RunWatchdog(ctx context.Context, c WatchdogConfig) error {
	if c.Interval <= 0 {
		c.Interval = WatchdogInterval
	}
	log := c.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("daemon", c.Pid)
	// The kernel shows mount points with symbolic links resolved.
	if r, err := filepath.EvalSymlinks(c.MountRoot); err == nil {
		c.MountRoot = r
	}
	// Both files stay open: a look is one pread(2) of the stat file (no
	// allocation), and a file of a /proc/<pid> directory keeps referring
	// to that process, never to another one given the same pid later.
	dir := "/proc/" + strconv.Itoa(c.Pid)
	statFD, err := unix.Open(dir+"/stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil // gone already
	}
	defer unix.Close(statFD)
	buf := make([]byte, 4096)
	// alive is false only on evidence: the process is gone (ESRCH on its
	// stat file, or the pid now names another process) or exiting.
	alive := func() bool {
		n, err := unix.Pread(statFD, buf, 0)
		if errors.Is(err, unix.ESRCH) {
			return false
		}
		var st ProcStat
		if err == nil {
			st, err = ParseProcStat(buf[:n])
		}
		if err != nil {
			if st, err = ReadProcStat(c.Pid); errors.Is(err, os.ErrNotExist) {
				return false
			} else if err != nil {
				log.Warn("fusefs watchdog: cannot read the daemon's state", "err", err)
				return true
			}
		}
		return st.StartTime == c.StartTime && !st.Exiting()
	}
	if !alive() {
		return nil // gone already, or a reused pid
	}
	miFD, err := unix.Open(dir+"/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if alive() {
			return fmt.Errorf("fusefs watchdog: mountinfo: %w", err)
		}
		return nil
	}
	defer unix.Close(miFD)
	var recorded []fuseMount
	var last, cur []byte // the mount table as last parsed, and as read now
	interval := unix.NsecToTimespec(int64(c.Interval))
	for {
		if !alive() {
			unstick(recorded, log)
			return nil
		}
		// Parsed again only when it changed. (The kernel's POLLPRI on
		// mountinfo was not raised here for mounts made by another
		// process, so the table is read every time.)
		cur, err = preadAll(miFD, cur[:0])
		// A daemon dying between the two reads may show an empty table:
		// keep what was recorded unless it still lives.
		if err == nil && !bytes.Equal(cur, last) && alive() {
			ms, perr := parseFuseMounts(bytes.NewReader(cur), c.MountRoot)
			if perr == nil {
				recorded = recorded[:0]
				for _, m := range ms {
					if m.own() {
						recorded = append(recorded, m)
					}
				}
				last, cur = cur, last
				log.Debug("fusefs watchdog: the daemon's mounts", "mounts", len(recorded))
			}
		}
		// A plain nanosleep(2) rather than a Go timer: the runtime then
		// has nothing to do between two looks (measured: a third of the
		// context switches and CPU time of a time.Ticker).
		if ctx.Err() != nil {
			return nil
		}
		unix.Nanosleep(&interval, nil)
	}
}

// preadAll reads the whole file fd from its start, appending to buf.
func preadAll(fd int, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Pread(fd, buf[len(buf):cap(buf)], int64(len(buf)))
		if err != nil {
			return buf, err
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// unstick aborts the connections of the recorded mounts that the mount
// table still shows as they were recorded, and detaches them.
func unstick(recorded []fuseMount, log *slog.Logger) {
	if len(recorded) == 0 {
		log.Debug("fusefs watchdog: the daemon is gone, it left no mount")
		return
	}
	now, err := readFuseMounts("/proc/self/mountinfo", "")
	if err != nil {
		log.Error("fusefs watchdog: cannot read the mount table, the daemon's mounts are left alone", "err", err)
		return
	}
	log.Warn("fusefs watchdog: the daemon died, aborting its FUSE connections", "mounts", len(recorded))
	for _, r := range recorded {
		still, minorInUse := false, false
		for _, m := range now {
			if m.minor == r.minor {
				minorInUse = true
				still = still || (m.id == r.id && m.dir == r.dir)
			}
		}
		if minorInUse && !still {
			log.Info("fusefs watchdog: connection now serves another mount, left alone", "dir", r.dir, "conn", r.minor)
			continue
		}
		// A connection whose mount is gone (a busy view detached by the
		// daemon) may still hold a stuck request. Its number could only
		// have passed to a newer daemon if that one had mounted it and
		// detached it again since the daemon's death, a few ms ago.
		switch err := abortConn(r.minor); {
		case err == nil:
			log.Info("fusefs watchdog: connection aborted", "dir", r.dir, "conn", r.minor)
		case errors.Is(err, os.ErrNotExist):
			log.Debug("fusefs watchdog: connection gone already", "dir", r.dir, "conn", r.minor)
		default:
			log.Error("fusefs watchdog: cannot abort a connection", "dir", r.dir, "conn", r.minor, "err", err)
		}
		if still {
			if err := lazyUnmount(r.dir); err != nil {
				log.Error("fusefs watchdog: cannot detach a mount", "dir", r.dir, "err", err)
			}
		}
	}
}
