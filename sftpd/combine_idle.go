package sftpd

import (
	"maps"
	"slices"
	"time"
)

// combineIdle is how long a handle's gathered writes may wait for the rest
// of their window: past it they are written to the file, so that a writer
// that paused (or a client that sent a last short piece and waits) has its
// bytes in the mount, where the file system's checkpoints make them
// durable. A crash loses at most about this much more than the mount's
// own checkpoint delay.
const combineIdle = 500 * time.Millisecond

// flushIdle writes out the windows of the combiners that received nothing
// for idle.
func (pw *pendingWrites) flushIdle(idle time.Duration) {
	if pw.windows.Load() == 0 {
		return
	}
	pw.mu.Lock()
	cs := slices.Collect(maps.Keys(pw.combiners))
	pw.mu.Unlock()
	now := time.Now().UnixNano()
	for _, c := range cs {
		if now-c.lastWrite.Load() >= int64(idle) {
			c.flush()
		}
	}
}

// watchGathered writes out the session's idle gathered writes every
// combineIdle until stop is closed.
func (ss *session) watchGathered(h *handlers, stop <-chan struct{}) {
	defer ss.conn.srv.wg.Done()
	t := time.NewTicker(combineIdle)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			h.pending.flushIdle(combineIdle)
		}
	}
}
