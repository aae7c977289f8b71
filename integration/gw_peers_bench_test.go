package integration

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// Environment of BenchmarkPeers (`make bench`).
const (
	// envBenchMiB is the size of the big file in MiB, 1024 when unset.
	envBenchMiB = "SFTPGATE_BENCH_MIB"
	// envBenchRounds is the number of interleaved rounds, 3 when unset;
	// 0 runs only BenchmarkPeers' many-sessions part.
	envBenchRounds = "SFTPGATE_BENCH_ROUNDS"
	// envBenchOut, when set, is a file the markdown table is written to
	// (as well as printed).
	envBenchOut = "BENCH_OUT"
)

// Workload of BenchmarkPeers besides the big file.
const (
	peersSmallFiles = 500
	peersSmallSize  = 4 << 10
	peersSeed       = 8100
	peersSingles    = 3 // single 50 MiB sessions timed for the median
	directName      = "direct minio-go"
)

// Metrics BenchmarkPeers records for every system and round.
const (
	mUp        = "upload s"
	mDown      = "download s"
	mUpCPU     = "server CPU s/GiB up"
	mDownCPU   = "server CPU s/GiB down"
	mMinIOUp   = "MinIO CPU s/GiB up"
	mMinIODown = "MinIO CPU s/GiB down"
	mSmall     = "small files s"
)

// peerRounds holds every round's value of each metric of each system.
type peerRounds map[string]map[string][]float64

func (r peerRounds) add(system, metric string, v float64) {
	if r[system] == nil {
		r[system] = map[string][]float64{}
	}
	r[system][metric] = append(r[system][metric], v)
}

// med is the median of a metric of a system, 0 when it has no value.
func (r peerRounds) med(system, metric string) float64 { return median(r[system][metric]) }

// BenchmarkPeers measures sftpgate beside its peers on one MinIO server
// (started here with its own SFTP server enabled): direct minio-go (the
// storage ceiling), OpenSSH's internal-sftp on a local directory (the SSH
// ceiling), MinIO's SFTP server, rclone serve sftp over a bucket (when
// rclone is installed) and sftpgate. In each round, every system in
// turn, the order rotated from round to round: a big random file
// uploaded with pkg/sftp (64 requests of 32 KiB in flight) and timed
// until it is complete where the system stores it, downloaded and
// checked (CRC-32C), the CPU of the server's processes and of MinIO for
// each; then 500 files of 4 KiB put with OpenSSH `sftp -b` `put -r`
// (500 sequential PutObject calls for minio-go), timed until all are
// stored. After the rounds: 20 sessions × 50 MiB uploading to sftpgate at
// once against a single one, and the daemon's peak RSS. It prints one
// markdown table (medians of the rounds) and the issue 14 targets, and
// writes them to $BENCH_OUT when set.
func BenchmarkPeers(b *testing.B) {
	sizeMiB, err := envIntRange(envBenchMiB, 1024, 1, 8192)
	if err != nil {
		b.Fatal(err)
	}
	rounds, err := envIntRange(envBenchRounds, 3, 0, 20)
	if err != nil {
		b.Fatal(err)
	}
	size := int64(sizeMiB) * mib
	dir := b.TempDir()

	// One host key for every peer's SSH server.
	hostKeyFile := filepath.Join(dir, "host_ed25519")
	runCommand(b, "", nil, "ssh-keygen", "-t", "ed25519", "-f", hostKeyFile, "-N", "", "-q")
	pub, err := os.ReadFile(hostKeyFile + ".pub")
	if err != nil {
		b.Fatal(err)
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil {
		b.Fatalf("host key: %v", err)
	}

	sftpPort, err := testenv.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	sftpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sftpPort))
	minioDir := filepath.Join(dir, "minio")
	if err := os.Mkdir(minioDir, 0o700); err != nil {
		b.Fatal(err)
	}
	m, err := testenv.StartMinIOWith(minioDir, "--sftp=address="+sftpAddr, "--sftp=ssh-private-key="+hostKeyFile)
	if err != nil {
		b.Fatalf("start MinIO with SFTP: %v", err)
	}
	b.Cleanup(m.Stop)

	g := startGateway(b, gwOptions{minio: m})
	tok := g.addUser("alice", personalWS)
	tokens := make([]string, benchSessions)
	for i := range tokens {
		tokens[i] = g.addUser(fmt.Sprintf("user%02d", i), personalWS)
	}
	peers := []*sftpPeer{
		startSSHD(b, dir, hostKeyFile, hostKey),
		minioSFTPPeer(m, sftpAddr, hostKey, m.NewBucket(b, "minio-sftp")),
	}
	noRclone := ""
	if _, err := exec.LookPath("rclone"); err == nil {
		peers = append(peers, startRclone(b, m, m.NewBucket(b, "rclone"), dir, hostKeyFile, hostKey))
	} else {
		noRclone = "rclone is not installed: no rclone row (`make tools` installs it)."
	}
	peers = append(peers, gatewayPeer(g, tok))
	direct := m.NewBucket(b, "direct")

	local := filepath.Join(dir, "local")
	smallDir := filepath.Join(local, "small")
	if err := os.MkdirAll(smallDir, 0o755); err != nil {
		b.Fatal(err)
	}
	big := filepath.Join(local, "big.bin")
	writeLocal(b, big, peersSeed, size)
	crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	io.Copy(crc, prng(peersSeed, size))
	want := crc.Sum32()
	for i := range peersSmallFiles {
		writeLocal(b, filepath.Join(smallDir, fmt.Sprintf("f%03d.bin", i)), uint64(peersSeed+1+i), peersSmallSize)
	}

	systems := []string{directName}
	byName := map[string]*sftpPeer{}
	for _, p := range peers {
		systems = append(systems, p.name)
		byName[p.name] = p
	}
	res := peerRounds{}
	var sessions sessionsResult
	loadBefore := loadAvg()
	began := time.Now()
	// Printed even when a round fails: the rounds done so far.
	defer func() {
		table := peersTable(res, systems, sessions, peersTableInfo{
			sizeMiB: sizeMiB, rounds: rounds, endpoint: m.Endpoint,
			loadBefore: loadBefore, loadAfter: loadAvg(), took: time.Since(began), note: noRclone,
		})
		fmt.Print("\n" + table)
		if out := os.Getenv(envBenchOut); out != "" {
			if err := os.WriteFile(out, []byte(table), 0o644); err != nil {
				b.Errorf("%s: %v", envBenchOut, err)
			}
		}
	}()

	b.ResetTimer()
	for range b.N {
		for r := range rounds {
			order := append(slices.Clone(systems[r%len(systems):]), systems[:r%len(systems)]...)
			for _, s := range order {
				if s == directName {
					directRound(b, m, direct, big, size, want, r, res)
				} else {
					peerRound(b, m, byName[s], local, big, size, want, r, res)
				}
			}
		}
		sessions = manySessions(b, g, tokens)
	}
	b.StopTimer()
	b.ReportMetric(res.med("sftpgate", mUp), "sftpgate-up-s")
	b.ReportMetric(res.med("sftpgate", mUpCPU), "sftpgate-up-cpu-s/GiB")
}

// cpuOf is the CPU time of the process trees of pids.
func cpuOf(t testing.TB, pids []int) time.Duration {
	t.Helper()
	var d time.Duration
	for _, pid := range pids {
		d += treeUsageOf(t, pid).cpu
	}
	return d
}

// peerRound measures one peer once: the big file up (until durable) and
// down, then the small files with OpenSSH sftp.
func peerRound(b *testing.B, m *testenv.MinIO, p *sftpPeer, local, big string, size int64, want uint32, r int, res peerRounds) {
	b.Helper()
	gib := float64(size) / (1 << 30)
	c, err := p.dial()
	if err != nil {
		b.Fatalf("%s: ssh: %v", p.name, err)
	}
	defer c.Close()
	sc, err := newSFTPClient(c)
	if err != nil {
		b.Fatalf("%s: sftp session: %v", p.name, err)
	}
	defer sc.Close()
	name := fmt.Sprintf("big-r%d.bin", r)
	minioPIDs := []int{m.PID()}

	src, err := os.Open(big)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	cpu0, mcpu0 := cpuOf(b, p.pids), cpuOf(b, minioPIDs)
	start := time.Now()
	f, err := sc.Create(p.remote(name))
	if err != nil {
		b.Fatalf("%s: create %s: %v", p.name, name, err)
	}
	if n, err := f.ReadFromWithConcurrency(src, 64); err != nil || n != size {
		f.Close()
		b.Fatalf("%s: write %s: %d bytes, %v", p.name, name, n, err)
	}
	if err := f.Close(); err != nil {
		b.Fatalf("%s: close %s: %v", p.name, name, err)
	}
	p.waitDurable(b, m, name, size)
	up := time.Since(start)
	cpu1, mcpu1 := cpuOf(b, p.pids), cpuOf(b, minioPIDs)

	start = time.Now()
	f, err = sc.Open(p.remote(name))
	if err != nil {
		b.Fatalf("%s: open %s: %v", p.name, name, err)
	}
	crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	n, err := f.WriteTo(crc)
	f.Close()
	if err != nil || n != size || crc.Sum32() != want {
		b.Fatalf("%s: download %s: %d bytes CRC-32C %08x, %v; want %d bytes %08x", p.name, name, n, crc.Sum32(), err, size, want)
	}
	down := time.Since(start)
	cpu2, mcpu2 := cpuOf(b, p.pids), cpuOf(b, minioPIDs)
	if err := sc.Remove(p.remote(name)); err != nil {
		b.Fatalf("%s: remove %s: %v", p.name, name, err)
	}

	res.add(p.name, mUp, up.Seconds())
	res.add(p.name, mDown, down.Seconds())
	res.add(p.name, mUpCPU, (cpu1-cpu0).Seconds()/gib)
	res.add(p.name, mDownCPU, (cpu2-cpu1).Seconds()/gib)
	res.add(p.name, mMinIOUp, (mcpu1-mcpu0).Seconds()/gib)
	res.add(p.name, mMinIODown, (mcpu2-mcpu1).Seconds()/gib)

	dst := fmt.Sprintf("small-r%d", r)
	start = time.Now()
	if out, code := p.batch(b, local, "put -r small "+p.remote(dst)); code != 0 {
		b.Fatalf("%s: sftp put -r: exit %d\n%s", p.name, code, out)
	}
	p.waitFiles(b, m, dst, peersSmallFiles, peersSmallSize)
	small := time.Since(start)
	res.add(p.name, mSmall, small.Seconds())
	b.Logf("round %d, %s (load %s): up %.1fs, down %.1fs, server CPU %.1fs / %.1fs, MinIO CPU %.1fs / %.1fs, %d small files %.2fs",
		r+1, p.name, loadAvg(), up.Seconds(), down.Seconds(), (cpu1 - cpu0).Seconds(), (cpu2 - cpu1).Seconds(),
		(mcpu1 - mcpu0).Seconds(), (mcpu2 - mcpu1).Seconds(), peersSmallFiles, small.Seconds())
}

// directRound measures minio-go once: the big file put (known size,
// 16 MiB parts, 4 threads, the gateway's settings) and got, then 500
// sequential PutObject calls of 4 KiB.
func directRound(b *testing.B, m *testenv.MinIO, bucket, big string, size int64, want uint32, r int, res peerRounds) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	gib := float64(size) / (1 << 30)
	key := fmt.Sprintf("big-r%d.bin", r)
	src, err := os.Open(big)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	minioPIDs := []int{m.PID()}
	mcpu0 := cpuOf(b, minioPIDs)
	start := time.Now()
	if _, err := m.Client.PutObject(ctx, bucket, key, src, size, minio.PutObjectOptions{PartSize: 16 * mib, NumThreads: 4}); err != nil {
		b.Fatalf("minio-go put: %v", err)
	}
	up := time.Since(start)
	mcpu1 := cpuOf(b, minioPIDs)
	start = time.Now()
	obj, err := m.Client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		b.Fatalf("minio-go get: %v", err)
	}
	crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	n, err := io.Copy(crc, obj)
	obj.Close()
	if err != nil || n != size || crc.Sum32() != want {
		b.Fatalf("minio-go get: %d bytes CRC-32C %08x, %v; want %d bytes %08x", n, crc.Sum32(), err, size, want)
	}
	down := time.Since(start)
	mcpu2 := cpuOf(b, minioPIDs)
	if err := m.Client.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{}); err != nil {
		b.Fatalf("minio-go remove: %v", err)
	}
	res.add(directName, mUp, up.Seconds())
	res.add(directName, mDown, down.Seconds())
	res.add(directName, mMinIOUp, (mcpu1-mcpu0).Seconds()/gib)
	res.add(directName, mMinIODown, (mcpu2-mcpu1).Seconds()/gib)

	start = time.Now()
	for i := range peersSmallFiles {
		data := prngBytes(uint64(peersSeed+1+i), peersSmallSize)
		k := fmt.Sprintf("small-r%d/f%03d.bin", r, i)
		if _, err := m.Client.PutObject(ctx, bucket, k, bytes.NewReader(data), peersSmallSize, minio.PutObjectOptions{}); err != nil {
			b.Fatalf("minio-go put %s: %v", k, err)
		}
	}
	small := time.Since(start)
	res.add(directName, mSmall, small.Seconds())
	b.Logf("round %d, %s (load %s): up %.1fs, down %.1fs, MinIO CPU %.1fs / %.1fs, %d PUTs %.2fs",
		r+1, directName, loadAvg(), up.Seconds(), down.Seconds(), (mcpu1 - mcpu0).Seconds(), (mcpu2 - mcpu1).Seconds(), peersSmallFiles, small.Seconds())
}

// sessionsResult is the many-sessions row.
type sessionsResult struct {
	done              bool
	single, many      float64 // bytes per second: one session (median), benchSessions at once (aggregate)
	peakMany, peakAll int64   // daemon VmHWM in bytes: during the sessions, over its life
	peakReset         bool    // peakMany is the peak of the sessions alone (clear_refs worked)
}

// manySessions times peersSingles single sessions of benchSessionLen
// bytes to sftpgate, then benchSessions of them at once, and reads the
// daemon's peak RSS, reset before the concurrent sessions when the kernel
// allows it.
func manySessions(b *testing.B, g *gateway, tokens []string) sessionsResult {
	b.Helper()
	var res sessionsResult
	var singles []float64
	for i := range peersSingles {
		start := time.Now()
		if err := sessionUpload(g, "user00", tokens[0], uint64(peersSeed+2000+i)); err != nil {
			b.Fatalf("single session: %v", err)
		}
		singles = append(singles, rate(benchSessionLen, time.Since(start)))
	}
	res.single = median(singles)
	res.peakAll = procStatusKiB(b, g.pid(), "VmHWM") * 1024
	// "5" resets the peak RSS (VmHWM) to the current RSS.
	res.peakReset = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", g.pid()), []byte("5"), 0) == nil

	var wg sync.WaitGroup
	errs := make(chan error, benchSessions)
	start := time.Now()
	for i := range benchSessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- sessionUpload(g, fmt.Sprintf("user%02d", i), tokens[i], uint64(peersSeed+3000+i))
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatalf("concurrent session: %v", err)
		}
	}
	res.many = rate(benchSessions*benchSessionLen, elapsed)
	res.peakMany = procStatusKiB(b, g.pid(), "VmHWM") * 1024
	res.peakAll = max(res.peakAll, res.peakMany)
	res.done = true
	b.Logf("%d sessions × %d MiB: %.1f MiB/s aggregate, single session %.1f MiB/s, VmHWM %d MiB",
		benchSessions, benchSessionLen/mib, res.many/mib, res.single/mib, res.peakMany/mib)
	return res
}

// peersTableInfo is what the table says about the run.
type peersTableInfo struct {
	sizeMiB, rounds       int
	endpoint              string
	loadBefore, loadAfter string
	took                  time.Duration
	note                  string
}

// peerLabel is the table's name of a system.
func peerLabel(system string) string {
	switch system {
	case directName:
		return "direct minio-go (the storage ceiling)"
	case "OpenSSH internal-sftp":
		return "OpenSSH `internal-sftp` to local disk (the SSH ceiling)"
	case "MinIO SFTP":
		return "MinIO's own SFTP server"
	case "rclone serve sftp":
		return "rclone serve sftp (`--vfs-cache-mode writes`, durable after its write-back)"
	case "sftpgate":
		return "**sftpgate**"
	}
	return system
}

// peersTable prints the results as markdown: one row per system (medians,
// min–max of the rounds), then the issue 14 targets as ratios of figures
// of this run.
func peersTable(res peerRounds, systems []string, s sessionsResult, info peersTableInfo) string {
	var sb strings.Builder
	size := fmt.Sprintf("%d MiB", info.sizeMiB)
	if info.sizeMiB%1024 == 0 {
		size = fmt.Sprintf("%d GiB", info.sizeMiB/1024)
	}
	rounds := fmt.Sprintf("%d interleaved rounds, medians (min–max)", info.rounds)
	if info.rounds == 1 {
		rounds = "1 round"
	}
	fmt.Fprintf(&sb, "### Peers: %s random file, pkg/sftp 64 × 32 KiB in flight, %s\n\n", size, rounds)
	fmt.Fprintf(&sb, "MinIO %s; load average %s before, %s after; %v.\n\n", info.endpoint, info.loadBefore, info.loadAfter, info.took.Round(time.Second))
	sb.WriteString("| system | upload s | download s | server CPU s/GiB up / down | MinIO CPU s/GiB up / down | 500 × 4 KiB `put -r` s |\n")
	sb.WriteString("|---|---|---|---|---|---|\n")
	for _, sys := range systems {
		label := peerLabel(sys)
		cpu := fmt.Sprintf("%s / %s", fmtValue(res.med(sys, mUpCPU)), fmtValue(res.med(sys, mDownCPU)))
		switch sys {
		case directName:
			cpu = "—"
		case "MinIO SFTP":
			cpu = "(is MinIO)"
		}
		small := spread(res[sys][mSmall])
		if sys == directName {
			small += " (500 sequential PUTs)"
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s / %s | %s |\n", label,
			spread(res[sys][mUp]), spread(res[sys][mDown]), cpu,
			fmtValue(res.med(sys, mMinIOUp)), fmtValue(res.med(sys, mMinIODown)), small)
	}
	sb.WriteString("\nUpload: create, write, close, until the object is complete in MinIO (OpenSSH: until close returns on local disk). ")
	sb.WriteString("Server CPU: user+system of the server's processes and their children (sftpgate: every `serve` process) per GiB. ")
	sb.WriteString("Download: the file just uploaded; sftpgate and rclone read it from their local copy (BenchmarkGateway has a not-cached download). ")
	sb.WriteString("Small files: OpenSSH `sftp -b` `put -r` until all 500 are stored.\n")
	if info.note != "" {
		sb.WriteString("\n" + info.note + "\n")
	}

	sb.WriteString("\n| issue 14 target | this run | target | met |\n|---|---|---|---|\n")
	row := func(name, value, target string, ok bool, have bool) {
		met := "no"
		switch {
		case !have:
			value, met = "—", "—"
		case ok:
			met = "yes"
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s |\n", name, value, target, met)
	}
	gw, sshUp := res.med("sftpgate", mUp), res.med("OpenSSH internal-sftp", mUp)
	row("sftpgate upload time / OpenSSH internal-sftp upload time", fmt.Sprintf("%.2f× (%.1f s / %.1f s)", gw/sshUp, gw, sshUp), "≤ 1.2×", gw/sshUp <= 1.2, gw > 0 && sshUp > 0)
	upCPU, downCPU := res.med("sftpgate", mUpCPU), res.med("sftpgate", mDownCPU)
	row("sftpgate `serve` CPU per GiB uploaded", fmt.Sprintf("%.1f s", upCPU), "≤ 4.5 s", upCPU <= 4.5, len(res["sftpgate"][mUpCPU]) > 0)
	row("sftpgate `serve` CPU per GiB downloaded", fmt.Sprintf("%.1f s", downCPU), "≤ 2.5 s", downCPU <= 2.5, len(res["sftpgate"][mDownCPU]) > 0)
	gws, sshs, puts := res.med("sftpgate", mSmall), res.med("OpenSSH internal-sftp", mSmall), res.med(directName, mSmall)
	row("500 × 4 KiB: sftpgate / (OpenSSH internal-sftp + 500 direct PUTs)",
		fmt.Sprintf("%.2f× (%.2f s / (%.2f s + %.2f s))", gws/(sshs+puts), gws, sshs, puts), "≤ 1.3×", gws/(sshs+puts) <= 1.3, gws > 0 && sshs+puts > 0)
	row(fmt.Sprintf("%d sessions × %d MiB at once: aggregate / single session", benchSessions, benchSessionLen/mib),
		fmt.Sprintf("%.2f× (%.1f / %.1f MiB/s)", s.many/s.single, s.many/mib, s.single/mib), "≥ 0.8×", s.many/s.single >= 0.8, s.done)
	peakName := "sftpgate peak RSS (VmHWM) during the sessions"
	if !s.peakReset {
		peakName = "sftpgate peak RSS (VmHWM) over the whole run"
	}
	row(peakName, fmt.Sprintf("%d MiB (whole run %d MiB)", s.peakMany/mib, s.peakAll/mib), "< 300 MiB", s.peakMany < 300*mib, s.done)
	return sb.String()
}

// spread is the median of vs with the min–max of the rounds.
func spread(vs []float64) string {
	if len(vs) == 0 {
		return "—"
	}
	s := fmtValue(median(vs))
	if len(vs) > 1 {
		s += fmt.Sprintf(" (%s–%s)", fmtValue(slices.Min(vs)), fmtValue(slices.Max(vs)))
	}
	return s
}
