package daemon

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sftpgate/sftpgate/fusefs"
	"github.com/sftpgate/sftpgate/internal/config"
)

// WatchdogCommand is the hidden command of the sftpgate executable that
// the daemon runs as its FUSE watchdog, with the flags --pid, --start-time,
// --mount-root, --log-format and --log-level (see fusefs/watchdog.go for
// why and how).
const WatchdogCommand = "internal-fuse-watchdog"

// WatchdogStop is the line the daemon writes on the watchdog's stdin after
// a clean shutdown. End of file alone means nothing: a killed daemon's end
// of the pipe closes too.
const WatchdogStop = "stop"

// Restarts of a watchdog that died while the daemon runs.
const (
	watchdogRestartDelay    = time.Second
	watchdogMaxRestartDelay = 30 * time.Second
	watchdogStopWait        = 5 * time.Second
)

// watchdog runs and supervises the daemon's FUSE watchdog process: it is
// started again when it dies, until stop.
type watchdog struct {
	args []string // after the executable
	exe  string
	log  *slog.Logger

	quit chan struct{} // closed by stop
	done chan struct{} // closed when the supervising goroutine ends
	once sync.Once

	// mu guards stdin, the running watchdog's stdin (nil between runs).
	mu    sync.Mutex
	stdin io.WriteCloser
}

// startWatchdog starts the watchdog of this process for the views under
// cfg.MountRoot, logging as cfg.LogFormat and cfg.LogLevel say.
func startWatchdog(cfg *config.Config, log *slog.Logger) (*watchdog, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("fuse watchdog: %w", err)
	}
	st, err := fusefs.ReadProcStat(os.Getpid())
	if err != nil {
		return nil, fmt.Errorf("fuse watchdog: %w", err)
	}
	w := &watchdog{
		exe: exe,
		args: []string{WatchdogCommand,
			"--pid", strconv.Itoa(os.Getpid()),
			"--start-time", strconv.FormatUint(st.StartTime, 10),
			"--mount-root", cfg.MountRoot,
			"--log-format", cfg.LogFormat, "--log-level", cfg.LogLevel},
		log:  log,
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	cmd, err := w.start()
	if err != nil {
		return nil, err
	}
	go w.supervise(cmd)
	return w, nil
}

// start runs one watchdog process.
func (w *watchdog) start() (*exec.Cmd, error) {
	cmd := exec.Command(w.exe, w.args...)
	cmd.Stdout = nil
	cmd.Stderr = os.Stderr
	// Its own process group: a signal to the daemon's group (a terminal's
	// ^C, kill -9 -<pgid>) does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("fuse watchdog: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("fuse watchdog: %w", err)
	}
	w.mu.Lock()
	w.stdin = stdin
	w.mu.Unlock()
	w.log.Debug("fuse watchdog started", "pid", cmd.Process.Pid)
	return cmd, nil
}

// supervise waits for the watchdog and starts it again when it dies
// before stop, after a delay that doubles while it keeps dying.
func (w *watchdog) supervise(cmd *exec.Cmd) {
	defer close(w.done)
	delay := watchdogRestartDelay
	for {
		began := time.Now()
		err := cmd.Wait()
		w.mu.Lock()
		w.stdin = nil
		w.mu.Unlock()
		select {
		case <-w.quit:
			return
		default:
		}
		if time.Since(began) > watchdogMaxRestartDelay {
			delay = watchdogRestartDelay
		}
		w.log.Warn("fuse watchdog exited, starting it again", "err", err, "in", delay)
		for cmd = nil; cmd == nil; {
			select {
			case <-w.quit:
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, watchdogMaxRestartDelay)
			if cmd, err = w.start(); err != nil {
				w.log.Error("fuse watchdog: cannot start it", "err", err)
			}
		}
	}
}

// stop ends the supervision. With clean (every view unmounted, every
// session closed) it tells the watchdog to exit and waits for it
// (watchdogStopWait at most); otherwise the watchdog is left to outlive
// this process and free what it leaves behind, and stop does not wait for
// it. It may be called more than once.
func (w *watchdog) stop(clean bool) {
	w.once.Do(func() {
		close(w.quit)
		if !clean {
			return
		}
		w.mu.Lock()
		if w.stdin != nil {
			if _, err := io.WriteString(w.stdin, WatchdogStop+"\n"); err != nil && !errors.Is(err, os.ErrClosed) {
				w.log.Debug("fuse watchdog: stop not sent", "err", err)
			}
			w.stdin.Close()
		}
		w.mu.Unlock()
		select {
		case <-w.done:
		case <-time.After(watchdogStopWait):
			w.log.Warn("fuse watchdog: still running after stop", "waited", watchdogStopWait)
		}
	})
}
