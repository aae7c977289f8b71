package integration

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Environment knobs of BenchmarkClusterThroughput.
const (
	// clusterBenchSessionsEnv is how many sessions upload at once (12).
	clusterBenchSessionsEnv = "SFTPGATE_CLUSTER_BENCH_SESSIONS"
	// clusterBenchMiBEnv is the MiB each session uploads (32).
	clusterBenchMiBEnv = "SFTPGATE_CLUSTER_BENCH_MIB"
)

// BenchmarkClusterThroughput measures the aggregate upload rate of many
// sessions through HAProxy (TCP, send-proxy-v2) in front of one node and
// in front of three nodes of one cluster (same MinIO, one PostgreSQL
// identity store), interleaved over SFTPGATE_BENCH_ROUNDS rounds (3),
// medians; and the CPU each side spent (every serve process, MinIO,
// HAProxy), which says what limits it on this machine.
func BenchmarkClusterThroughput(b *testing.B) {
	sessions, err := envIntRange(clusterBenchSessionsEnv, 12, 1, 200)
	if err != nil {
		b.Fatal(err)
	}
	mb, err := envIntRange(clusterBenchMiBEnv, 32, 1, 4096)
	if err != nil {
		b.Fatal(err)
	}
	rounds, err := envIntRange("SFTPGATE_BENCH_ROUNDS", 3, 1, 20)
	if err != nil {
		b.Fatal(err)
	}
	size := int64(mb) * mib
	gws := startGateways(b, 3, gwOptions{
		proxyProtocol: "required",
		database:      storePostgres,
		maxSessions:   sessions + 10,
	})
	lbs := map[string]string{"1 node": balance(b, gws[0]).Addr, "3 nodes": balance(b, gws...).Addr}
	tok := gws[0].addUser("bench", personalWS)
	gws[0].secret(tok)

	type result struct {
		rate               float64 // MiB/s, all sessions together
		serveCPU, minioCPU time.Duration
	}
	res := map[string][]result{}
	for r := range rounds {
		order := []string{"1 node", "3 nodes"}
		if r%2 == 1 {
			order = []string{"3 nodes", "1 node"}
		}
		for _, name := range order {
			serve0 := time.Duration(0)
			for _, g := range gws {
				serve0 += procCPU(b, g.pid())
			}
			minio0 := procCPU(b, gws[0].minio.PID())
			start := time.Now()
			if err := clusterUploads(gws[0], lbs[name], tok, sessions, size, uint64(r*1000)); err != nil {
				b.Fatalf("%s, round %d: %v", name, r+1, err)
			}
			took := time.Since(start)
			serve1 := time.Duration(0)
			for _, g := range gws {
				serve1 += procCPU(b, g.pid())
			}
			rr := result{
				rate:     float64(int64(sessions)*size) / mib / took.Seconds(),
				serveCPU: serve1 - serve0,
				minioCPU: procCPU(b, gws[0].minio.PID()) - minio0,
			}
			res[name] = append(res[name], rr)
			b.Logf("round %d, %s: %d sessions × %d MiB in %v: %.1f MiB/s (serve CPU %v, MinIO CPU %v)",
				r+1, name, sessions, mb, took.Round(time.Millisecond), rr.rate, rr.serveCPU.Round(10*time.Millisecond), rr.minioCPU.Round(10*time.Millisecond))
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "BenchmarkClusterThroughput: %d sessions × %d MiB through HAProxy, %d rounds interleaved, medians\n\n", sessions, mb, rounds)
	fmt.Fprintf(&out, "| behind HAProxy | aggregate upload MiB/s | serve CPU s/GiB (all nodes) | MinIO CPU s/GiB |\n|---|---|---|---|\n")
	med := map[string]float64{}
	for _, name := range []string{"1 node", "3 nodes"} {
		var rates, scpu, mcpu []float64
		for _, r := range res[name] {
			gib := float64(int64(sessions)*size) / (1 << 30)
			rates = append(rates, r.rate)
			scpu = append(scpu, r.serveCPU.Seconds()/gib)
			mcpu = append(mcpu, r.minioCPU.Seconds()/gib)
		}
		med[name] = median(rates)
		fmt.Fprintf(&out, "| %s | %.1f | %.2f | %.2f |\n", name, median(rates), median(scpu), median(mcpu))
	}
	fmt.Fprintf(&out, "\n3 nodes ÷ 1 node: %.2f× (machine: %d CPUs; every node, MinIO and HAProxy share them)\n", med["3 nodes"]/med["1 node"], runtime.NumCPU())
	b.Log("\n" + out.String())
	if p := os.Getenv("BENCH_OUT"); p != "" {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			f.WriteString("\n" + out.String())
			f.Close()
		}
	}
}

// clusterUploads runs n sessions through the balancer at addr at once,
// each uploading size bytes of its own to its own file, and checks every
// object's size in MinIO.
func clusterUploads(g *gateway, addr, tok string, n int, size int64, seed uint64) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := g.dialFrom(addr, "127.0.0.1", "bench", ssh.Password(tok))
			if err != nil {
				errs <- fmt.Errorf("session %d: login: %w", i, err)
				return
			}
			defer c.Close()
			sc, err := newSFTPClient(c)
			if err != nil {
				errs <- fmt.Errorf("session %d: sftp: %w", i, err)
				return
			}
			defer sc.Close()
			name := fmt.Sprintf("cluster-bench-%d.bin", i)
			if err := uploadOne(sc, "/"+personalWS+"/"+name, size, seed+uint64(i)); err != nil {
				errs <- fmt.Errorf("session %d: %w", i, err)
				return
			}
			info, err := statObject(g.minio, g.personalBucket, personalKey("bench", name))
			if err != nil || info.Size != size {
				errs <- fmt.Errorf("session %d: object: size %d, %v", i, info.Size, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// uploadOne writes size bytes of the seed's stream to path, 64 requests
// in flight, and closes it.
func uploadOne(sc *sftp.Client, path string, size int64, seed uint64) error {
	f, err := sc.Create(path)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if _, err := f.ReadFromWithConcurrency(prng(seed, size), 64); err != nil {
		f.Close()
		return fmt.Errorf("write: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}
