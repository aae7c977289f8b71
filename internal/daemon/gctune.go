package daemon

import (
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// Garbage collector tuning. A transfer allocates about twice its size in
// short-lived buffers that the daemon cannot reuse (each SSH packet read
// by golang.org/x/crypto/ssh, each SFTP packet of github.com/pkg/sftp),
// while the live heap stays small (about 20 MiB for one session: the
// read-ahead cells are outside the Go heap). With the default GOGC=100 the
// collector then runs every few MiB transferred: 10 % of the daemon's CPU
// on a download. The tuner lets the heap grow by gcHeadroom over the live
// heap, at most gcMaxPercent % of it, and never less than the default
// 100 %: the memory it adds is gcHeadroom at most, and none once the live
// heap is past gcHeadroom (many sessions), where the collector runs as
// with the default. Measured with `make compare` (pkg/sftp, 32 KiB
// requests, 64 in flight, 512 MiB, median of 5 interleaved rounds' paired
// ratios, on a busy two-core machine): serve CPU per GiB 0.86× on the
// download (3.20 → 2.72 s), 0.91× on the upload (6.34 → 6.12 s); peak RSS
// of one session 56 → 94 MiB, of 20 sessions uploading at once 238 → 244
// MiB.
const (
	gcHeadroom   = 64 << 20
	gcMinPercent = 100
	gcMaxPercent = 400
)

// gcPercentFor returns the GC percent for a live heap of live bytes: the
// one that lets the heap grow by headroom, within [gcMinPercent,
// gcMaxPercent].
func gcPercentFor(live, headroom int64) int {
	if live <= 0 || headroom >= live*gcMaxPercent/100 {
		return gcMaxPercent
	}
	return max(gcMinPercent, int(headroom*100/live))
}

// gcTuner sets the GC percent after every collection from the live heap
// that collection left (gcPercentFor). It runs as a cleanup of an object
// allocated for the next collection to free, re-armed each time, so it
// follows the heap at the pace of the collections and needs no goroutine
// of its own.
type gcTuner struct {
	headroom int64
	prev     int              // GC percent when started, restored by stop
	sample   []metrics.Sample // used by tune only
	last     atomic.Int64     // percent last set (tests)

	// mu guards stopped, and is held while the percent is set, so that
	// no tune sets it after stop put the old one back.
	mu      sync.Mutex
	stopped bool // set by stop: tune does nothing and stops re-arming
}

// startGCTuner starts tuning the collector, unless the environment sets
// GOGC (the operator's choice is kept): then it returns nil. stop ends it.
// The percent is the process's: one tuner at a time (one daemon).
func startGCTuner(log *slog.Logger) *gcTuner {
	if os.Getenv("GOGC") != "" {
		log.Debug("garbage collector left as GOGC says", "GOGC", os.Getenv("GOGC"))
		return nil
	}
	t := &gcTuner{headroom: gcHeadroom}
	t.prev = debug.SetGCPercent(gcMaxPercent)
	t.last.Store(gcMaxPercent)
	t.arm()
	return t
}

// arm allocates an object whose cleanup runs after the collection that
// frees it, and retunes then.
func (t *gcTuner) arm() {
	p := new([16]byte)
	runtime.AddCleanup(p, func(t *gcTuner) { t.tune() }, t)
}

// tune sets the percent for the live heap now and re-arms. It runs on the
// runtime's cleanup goroutine, one call at a time.
func (t *gcTuner) tune() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	if t.sample == nil {
		t.sample = []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	}
	metrics.Read(t.sample)
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		pct := gcPercentFor(int64(t.sample[0].Value.Uint64()), t.headroom)
		if int64(pct) != t.last.Load() {
			debug.SetGCPercent(pct)
			t.last.Store(int64(pct))
		}
	}
	t.arm()
}

// stop ends the tuning and puts back the percent found at start. A nil
// tuner (GOGC set) does nothing.
func (t *gcTuner) stop() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	debug.SetGCPercent(t.prev)
}
