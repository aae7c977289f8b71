package daemon

import (
	"log/slog"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name     string
		live     int64
		headroom int64
		want     int
	}{
		{"nothing measured", 0, 64 * mib, gcMaxPercent},
		{"small heap: the most", 10 * mib, 64 * mib, gcMaxPercent},
		{"exactly the most", 16 * mib, 64 * mib, gcMaxPercent},
		{"in between: headroom over live", 32 * mib, 64 * mib, 200},
		{"heap of the headroom: the default", 64 * mib, 64 * mib, 100},
		{"large heap: never under the default", 512 * mib, 64 * mib, gcMinPercent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gcPercentFor(tt.live, tt.headroom); got != tt.want {
				t.Errorf("gcPercentFor(%d, %d): got %d, want %d", tt.live, tt.headroom, got, tt.want)
			}
		})
	}
}

// gcPercentNow reads the collector's current percent.
func gcPercentNow(t *testing.T) int {
	t.Helper()
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		t.Fatalf("/gc/gogc:percent: kind %v", s[0].Value.Kind())
	}
	return int(s[0].Value.Uint64())
}

// waitGCPercent runs collections until the percent is want (the tuner
// sets it from a cleanup, after a collection), for 10 s at most.
func waitGCPercent(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for gcPercentNow(t) != want {
		if time.Now().After(deadline) {
			t.Fatalf("GC percent: got %d, want %d", gcPercentNow(t), want)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGCTuner: the percent follows the live heap after collections (the
// most while it is small, the default once it is past the headroom), stop
// puts back the one found at start and no collection changes it after.
// Not parallel: the percent is the process's.
func TestGCTuner(t *testing.T) {
	t.Setenv("GOGC", "")
	before := gcPercentNow(t)
	tu := startGCTuner(slog.New(slog.DiscardHandler))
	if tu == nil {
		t.Fatal("startGCTuner with GOGC unset: got nil, want a tuner")
	}
	stopped := false
	defer func() {
		if !stopped {
			tu.stop()
		}
	}()
	if got := gcPercentNow(t); got != gcMaxPercent {
		t.Errorf("GC percent after start: got %d, want %d", got, gcMaxPercent)
	}

	live := make([]byte, 2*gcHeadroom) // live heap past the headroom
	for i := 0; i < len(live); i += 4096 {
		live[i] = 1
	}
	waitGCPercent(t, gcMinPercent)
	runtime.KeepAlive(live)
	live = nil
	waitGCPercent(t, gcMaxPercent)

	tu.stop()
	stopped = true
	if got := gcPercentNow(t); got != before {
		t.Errorf("GC percent after stop: got %d, want %d (as before start)", got, before)
	}
	big := make([]byte, 2*gcHeadroom)
	for range 3 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	runtime.KeepAlive(big)
	if got := gcPercentNow(t); got != before {
		t.Errorf("GC percent after stop and collections: got %d, want %d", got, before)
	}
}

// TestGCTunerGOGCSet: GOGC in the environment is the operator's choice;
// no tuner starts and the percent is left alone.
func TestGCTunerGOGCSet(t *testing.T) {
	t.Setenv("GOGC", "150")
	before := gcPercentNow(t)
	tu := startGCTuner(slog.New(slog.DiscardHandler))
	if tu != nil {
		tu.stop()
		t.Fatal("startGCTuner with GOGC set: got a tuner, want nil")
	}
	tu.stop() // a nil tuner stops as a no-op
	if got := gcPercentNow(t); got != before {
		t.Errorf("GC percent: got %d, want %d", got, before)
	}
}
