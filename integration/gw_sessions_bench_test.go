package integration

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// envSessionsBin, when set, is a second sftpgate binary ("before") that
// BenchmarkSessions measures in the same run as $SFTPGATE_BIN ("after"),
// the rounds interleaved.
const envSessionsBin = "SFTPGATE_BENCH_BEFORE_BIN"

// sessionsSample is what one timed batch of sessions cost.
type sessionsSample struct {
	rate      float64 // bytes per second, all sessions together
	serveCPU  float64 // daemon CPU s per GiB uploaded
	minioCPU  float64 // MinIO CPU s per GiB
	clientCPU float64 // this process's CPU s per GiB (SSH client side)
	serveWait float64 // daemon run-queue wait s per GiB
	peak      int64   // daemon VmHWM (bytes): during the batch when the kernel lets it be reset
}

// BenchmarkSessions is the many-sessions part of BenchmarkPeers alone,
// quick to run (`make bench BENCH=Sessions`, about a minute per round):
// after one untimed warm-up (every user's first login mounts), each round
// times one session uploading 50 MiB and benchSessions users uploading
// 50 MiB each at once (their views mounted), in alternating order, then
// restarts the daemon and times the benchSessions users again, each login
// mounting (as in BenchmarkPeers, whose users log in for the first time).
// It reports the daemon's, MinIO's and this process's (the SSH clients')
// CPU per GiB, the daemon's run-queue wait and its peak RSS during each
// batch. With $SFTPGATE_BENCH_BEFORE_BIN set, a
// second daemon runs that binary and every round measures both, so that a
// change is judged on one machine in one run. Rounds:
// $SFTPGATE_BENCH_ROUNDS (3).
func BenchmarkSessions(b *testing.B) {
	rounds, err := envIntRange(envBenchRounds, 3, 1, 20)
	if err != nil {
		b.Fatal(err)
	}
	type variant struct {
		name   string
		g      *gateway
		tokens []string
		single []sessionsSample
		many   []sessionsSample
		cold   []sessionsSample
	}
	var vs []*variant
	mk := func(name, bin string) {
		g := startGateway(b, gwOptions{bin: bin})
		tokens := make([]string, benchSessions)
		for i := range tokens {
			tokens[i] = g.addUser(fmt.Sprintf("user%02d", i), personalWS)
		}
		vs = append(vs, &variant{name: name, g: g, tokens: tokens})
	}
	if before := os.Getenv(envSessionsBin); before != "" {
		mk("before", before)
	}
	mk("after", "")
	for _, v := range vs {
		s := timeSessions(b, v.g, v.tokens, benchSessions, 900)
		fmt.Printf("%s warm-up (first logins mount): %d sessions %.1f MiB/s\n", v.name, benchSessions, s.rate/mib)
	}
	b.ResetTimer()
	for range b.N {
		for r := range rounds {
			for i := range vs {
				v := vs[(i+r)%len(vs)]
				seed := uint64(1000 * (r + 1))
				var one, many sessionsSample
				if r%2 == 0 {
					one = timeSessions(b, v.g, v.tokens, 1, seed)
					many = timeSessions(b, v.g, v.tokens, benchSessions, seed+100)
				} else {
					many = timeSessions(b, v.g, v.tokens, benchSessions, seed+100)
					one = timeSessions(b, v.g, v.tokens, 1, seed)
				}
				// A restarted daemon: every session's login mounts, as in
				// BenchmarkPeers' concurrent sessions.
				v.g.restart()
				cold := timeSessions(b, v.g, v.tokens, benchSessions, seed+200)
				v.single = append(v.single, one)
				v.many = append(v.many, many)
				v.cold = append(v.cold, cold)
				fmt.Printf("round %d %s (load %s): single %.1f MiB/s (serve %.2f, MinIO %.2f, client %.2f CPU s/GiB; serve wait %.2f s/GiB); "+
					"%d sessions %.1f MiB/s = %.2f× (serve %.2f, MinIO %.2f, client %.2f CPU s/GiB; serve wait %.2f s/GiB), VmHWM %d MiB\n",
					r+1, v.name, loadAvg(), one.rate/mib, one.serveCPU, one.minioCPU, one.clientCPU, one.serveWait,
					benchSessions, many.rate/mib, many.rate/one.rate, many.serveCPU, many.minioCPU, many.clientCPU, many.serveWait, many.peak/mib)
				fmt.Printf("round %d %s: %d sessions after a restart %.1f MiB/s = %.2f× (serve %.2f, MinIO %.2f CPU s/GiB; serve wait %.2f s/GiB), VmHWM %d MiB\n",
					r+1, v.name, benchSessions, cold.rate/mib, cold.rate/one.rate, cold.serveCPU, cold.minioCPU, cold.serveWait, cold.peak/mib)
			}
		}
	}
	b.StopTimer()
	for _, v := range vs {
		med := func(ss []sessionsSample, f func(sessionsSample) float64) float64 {
			var xs []float64
			for _, s := range ss {
				xs = append(xs, f(s))
			}
			return median(xs)
		}
		var ratios, coldRatios []float64
		for i := range v.many {
			ratios = append(ratios, v.many[i].rate/v.single[i].rate)
			coldRatios = append(coldRatios, v.cold[i].rate/v.single[i].rate)
		}
		var peak int64
		for _, s := range append(slices.Clone(v.many), v.cold...) {
			peak = max(peak, s.peak)
		}
		fmt.Printf("\n%s: single %.1f MiB/s, %d sessions %.1f MiB/s, ratio %.2f× (median of %d rounds' ratios; target ≥ 0.8×)\n",
			v.name, med(v.single, func(s sessionsSample) float64 { return s.rate })/mib, benchSessions,
			med(v.many, func(s sessionsSample) float64 { return s.rate })/mib, median(ratios), len(ratios))
		fmt.Printf("%s: %d sessions after a restart (first logins mount) %.1f MiB/s, ratio %.2f×; serve CPU %.2f s/GiB, MinIO CPU %.2f s/GiB\n",
			v.name, benchSessions, med(v.cold, func(s sessionsSample) float64 { return s.rate })/mib, median(coldRatios),
			med(v.cold, func(s sessionsSample) float64 { return s.serveCPU }), med(v.cold, func(s sessionsSample) float64 { return s.minioCPU }))
		fmt.Printf("%s: serve CPU s/GiB single %.2f, many %.2f; MinIO CPU s/GiB single %.2f, many %.2f; client CPU s/GiB single %.2f, many %.2f; peak RSS during sessions %d MiB (target < 300 MiB)\n",
			v.name,
			med(v.single, func(s sessionsSample) float64 { return s.serveCPU }), med(v.many, func(s sessionsSample) float64 { return s.serveCPU }),
			med(v.single, func(s sessionsSample) float64 { return s.minioCPU }), med(v.many, func(s sessionsSample) float64 { return s.minioCPU }),
			med(v.single, func(s sessionsSample) float64 { return s.clientCPU }), med(v.many, func(s sessionsSample) float64 { return s.clientCPU }),
			peak/mib)
		b.ReportMetric(median(ratios), v.name+"-ratio")
	}
}

// timeSessions runs n sessions (users user00…) uploading benchSessionLen
// bytes each at once and measures them.
func timeSessions(b *testing.B, g *gateway, tokens []string, n int, seed uint64) sessionsSample {
	b.Helper()
	var s sessionsSample
	// "5" resets the peak RSS (VmHWM) to the current RSS.
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", g.pid()), []byte("5"), 0)
	serve0, minio0, self0 := treeUsageOf(b, g.pid()), cpuOf(b, []int{g.minio.PID()}), selfCPU()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- sessionUpload(g, fmt.Sprintf("user%02d", i), tokens[i], seed+uint64(i))
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatalf("session: %v", err)
		}
	}
	serve1, minio1, self1 := treeUsageOf(b, g.pid()), cpuOf(b, []int{g.minio.PID()}), selfCPU()
	gib := float64(int64(n)*benchSessionLen) / (1 << 30)
	s.rate = rate(int64(n)*benchSessionLen, elapsed)
	d := serve1.sub(serve0)
	s.serveCPU = d.cpu.Seconds() / gib
	s.serveWait = d.wait.Seconds() / gib
	s.minioCPU = (minio1 - minio0).Seconds() / gib
	s.clientCPU = (self1 - self0).Seconds() / gib
	s.peak = procStatusKiB(b, g.pid(), "VmHWM") * 1024
	return s
}
