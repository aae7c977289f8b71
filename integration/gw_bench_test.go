package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/pkg/sftp"
)

// Sizes and counts of BenchmarkGateway.
const (
	benchFileSize   = 1 << 30 // the big transfers
	benchLogins     = 20      // logins timed for the median
	benchSessions   = 20      // concurrent sessions, one user each
	benchSessionLen = 50 * mib
)

// benchRow is one line of the benchmark table.
type benchRow struct {
	metric, value, target string
	ok                    string // "yes", "NO" or "" when there is no target
}

// BenchmarkGateway measures the whole gateway against direct minio-go
// access on the same MinIO, and prints a table (metric, value, target,
// ok): 1 GiB uploads and downloads as ratios of minio-go's speed, with the
// pkg/sftp client as it comes (32 KiB requests) and asking for 255 KiB
// ones, a download of an object the gateway never saw, and OpenSSH sftp;
// the CPU the daemon and the client (this process) spent on each; the
// time from TCP connect to the first listing; 20 concurrent sessions of
// 50 MiB uploads and the daemon's peak RSS.
func BenchmarkGateway(b *testing.B) {
	g := startGateway(b, gwOptions{})
	tok := g.addUser("alice", personalWS)
	tokens := make([]string, benchSessions)
	for i := range tokens {
		tokens[i] = g.addUser(fmt.Sprintf("user%02d", i), personalWS)
	}
	b.ResetTimer()
	var rows []benchRow
	for i := 0; i < b.N; i++ {
		rows = benchGatewayOnce(b, g, tok, tokens)
	}
	b.StopTimer()

	hwm := procStatusKiB(b, g.pid(), "VmHWM") * 1024
	rows = append(rows, benchRow{"daemon peak RSS (VmHWM)", fmt.Sprintf("%.0f MiB", float64(hwm)/mib), "< 300 MiB", okIf(hwm < 300*mib)})
	b.ReportMetric(float64(hwm)/mib, "daemon-peak-MiB")

	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tvalue\ttarget\tok")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.metric, r.value, r.target, r.ok)
	}
	tw.Flush()
	fmt.Print("\nBenchmarkGateway (sftpgate over MinIO " + g.minio.Endpoint + ")\n" + sb.String())
	for _, r := range rows {
		if r.ok == "NO" {
			b.Errorf("%s: got %s, want %s", r.metric, r.value, r.target)
		}
	}
}

// benchGatewayOnce runs every measurement once and returns the rows.
func benchGatewayOnce(b *testing.B, g *gateway, tok string, tokens []string) []benchRow {
	var rows []benchRow
	add := func(metric, value, target, ok string) {
		rows = append(rows, benchRow{metric, value, target, ok})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	const seed = 900

	// Direct minio-go (known size, 16 MiB parts, 4 threads), measured before
	// and after the SFTP transfers: the machine is shared, the ratios use
	// the mean.
	directUp1, directDown1 := benchDirect(ctx, b, g, seed)

	// pkg/sftp with concurrent requests: as the library comes (32 KiB
	// requests), and asking for the 255 KiB the server allows.
	small := benchPkgSFTP(b, g, tok, "pkgsftp.bin", seed)
	large := benchPkgSFTP(b, g, tok, "pkgsftp-large.bin", seed, sftp.MaxPacketUnchecked(benchLargePacket))
	// A download of an object the gateway has never seen: no local copy,
	// no cached page, the mount reads it from MinIO.
	coldKey := personalKey("alice", "cold.bin")
	if _, err := g.minio.Client.PutObject(ctx, g.personalBucket, coldKey, prng(seed, benchFileSize), benchFileSize,
		minio.PutObjectOptions{PartSize: 16 * mib, NumThreads: 4}); err != nil {
		b.Fatalf("minio-go put: %v", err)
	}
	cold := benchDownload(b, g, g.mustSFTP("alice", tok), "/personal-files/cold.bin")

	// The same client against a server in memory: the SFTP stack's ceiling.
	mem := startMemSFTP(b, benchFileSize)
	ceilSmall := benchCeiling(b, mem)
	ceilLarge := benchCeiling(b, mem, sftp.MaxPacketUnchecked(benchLargePacket))

	// The server's own FUSE view, without SSH (what the SFTP layer adds).
	view := filepath.Join(g.mounts, "alice", personalWS)
	cpu := procCPU(b, g.pid())
	start := time.Now()
	if err := writeViewFile(filepath.Join(view, "view.bin"), seed, benchFileSize); err != nil {
		b.Fatalf("write on the mount: %v", err)
	}
	viewUp := rate(benchFileSize, time.Since(start))
	viewUpCPU := procCPU(b, g.pid()) - cpu

	// OpenSSH sftp, password through sshpass.
	local := b.TempDir()
	writeLocal(b, filepath.Join(local, "big.bin"), seed, benchFileSize)
	start = time.Now()
	if out, code := g.sftpBatch(b, "alice", tok, local, "put big.bin /personal-files/openssh.bin"); code != 0 {
		b.Fatalf("sftp put: exit %d\n%s", code, out)
	}
	osUp := rate(benchFileSize, time.Since(start))
	os.Remove(filepath.Join(local, "big.bin"))
	start = time.Now()
	if out, code := g.sftpBatch(b, "alice", tok, local, "get /personal-files/openssh.bin back.bin"); code != 0 {
		b.Fatalf("sftp get: exit %d\n%s", code, out)
	}
	osDown := rate(benchFileSize, time.Since(start))
	if fi, err := os.Stat(filepath.Join(local, "back.bin")); err != nil || fi.Size() != benchFileSize {
		b.Fatalf("sftp get: %v, %v", fi, err)
	}
	os.Remove(filepath.Join(local, "back.bin"))
	directUp2, directDown2 := benchDirect(ctx, b, g, seed+1)
	directUp, directDown := (directUp1+directUp2)/2, (directDown1+directDown2)/2

	add("minio-go upload 1 GiB (before / after)", fmt.Sprintf("%.1f / %.1f MiB/s", directUp1/mib, directUp2/mib), "(baseline)", "")
	add("minio-go download 1 GiB (before / after)", fmt.Sprintf("%.1f / %.1f MiB/s", directDown1/mib, directDown2/mib), "(baseline)", "")
	add("pkg/sftp upload 1 GiB (32 KiB requests)", ratioValue(small.up, directUp), "≥ 0.60×", okIf(small.up/directUp >= 0.6))
	add("pkg/sftp download 1 GiB (32 KiB requests)", ratioValue(small.down, directDown), "≥ 0.60×", okIf(small.down/directDown >= 0.6))
	add("  CPU daemon / client: upload, download", small.cpu(), "", "")
	add("pkg/sftp upload 1 GiB (255 KiB requests)", ratioValue(large.up, directUp), "(report)", "")
	add("pkg/sftp download 1 GiB (255 KiB requests)", ratioValue(large.down, directDown), "(report)", "")
	add("  CPU daemon / client: upload, download", large.cpu(), "", "")
	add("SFTP ceiling: same client, memory server, 32 KiB up / down", fmt.Sprintf("%.2f× / %.2f×", ceilSmall.up/directUp, ceilSmall.down/directDown), "(report)", "")
	add("  CPU server / client: upload, download", ceilSmall.cpu(), "", "")
	add("  the gateway's share of the ceiling", fmt.Sprintf("%.0f%% / %.0f%%", 100*small.up/ceilSmall.up, 100*small.down/ceilSmall.down), "", "")
	add("SFTP ceiling: 255 KiB up / down", fmt.Sprintf("%.2f× / %.2f×", ceilLarge.up/directUp, ceilLarge.down/directDown), "(report)", "")
	add("  CPU server / client: upload, download", ceilLarge.cpu(), "", "")
	add("  the gateway's share of the ceiling", fmt.Sprintf("%.0f%% / %.0f%%", 100*large.up/ceilLarge.up, 100*large.down/ceilLarge.down), "", "")
	add("pkg/sftp download 1 GiB not cached (32 KiB)", ratioValue(cold.rate, directDown), "(report)", "")
	add("  CPU daemon / client", fmt.Sprintf("%.1fs / %.1fs", cold.daemon.Seconds(), cold.client.Seconds()), "", "")
	add("server-side mount write 1 GiB (no SSH)", fmt.Sprintf("%s, daemon CPU %.1fs", ratioValue(viewUp, directUp), viewUpCPU.Seconds()), "", "")
	add("OpenSSH sftp put 1 GiB", ratioValue(osUp, directUp), "(report)", "")
	add("OpenSSH sftp get 1 GiB", ratioValue(osDown, directDown), "(report)", "")
	add("daemon VmHWM after the 1 GiB transfers", fmt.Sprintf("%.0f MiB", float64(procStatusKiB(b, g.pid(), "VmHWM"))/1024), "", "")
	b.ReportMetric(small.up/directUp, "pkgsftp-up-ratio")
	b.ReportMetric(small.down/directDown, "pkgsftp-down-ratio")
	b.ReportMetric(large.down/directDown, "pkgsftp-large-down-ratio")

	// TCP connect → first listing of /.
	var logins []time.Duration
	for range benchLogins {
		start := time.Now()
		c, err := g.login("alice", tok)
		if err != nil {
			b.Fatalf("login: %v", err)
		}
		sc, err := newSFTPClient(c)
		if err != nil {
			b.Fatalf("sftp: %v", err)
		}
		if _, err := sc.ReadDir("/"); err != nil {
			b.Fatalf("ReadDir: %v", err)
		}
		logins = append(logins, time.Since(start))
		sc.Close()
		c.Close()
	}
	slices.Sort(logins)
	median := logins[len(logins)/2]
	add(fmt.Sprintf("connect → first listing (median of %d)", benchLogins), median.Round(100*time.Microsecond).String(), "< 500ms", okIf(median < 500*time.Millisecond))
	b.ReportMetric(float64(median.Microseconds())/1000, "login-ms")

	// Concurrent sessions, one user each.
	var wg sync.WaitGroup
	errs := make(chan error, benchSessions)
	start = time.Now()
	for i := range benchSessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- sessionUpload(g, fmt.Sprintf("user%02d", i), tokens[i], uint64(1000+i))
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		if err != nil {
			b.Errorf("concurrent session: %v", err)
		}
	}
	total := rate(benchSessions*benchSessionLen, elapsed)
	add(fmt.Sprintf("%d sessions × 50 MiB upload, total", benchSessions), mibps(total), "", "")
	add("  vs minio-go upload", fmt.Sprintf("%.2f×", total/directUp), "", "")
	b.ReportMetric(total/mib, "concurrent-MiB/s")
	return rows
}

// benchLargePacket is the request size of the "255 KiB" rows: the
// largest read the server answers in full (sftpd's maxReadLength).
const benchLargePacket = 256<<10 - 1024

// transferRates are one upload and one download of benchFileSize bytes.
type transferRates struct {
	up, down             float64 // bytes per second
	upDaemon, downDaemon time.Duration
	upClient, downClient time.Duration
}

func (r transferRates) cpu() string {
	return fmt.Sprintf("%.1fs / %.1fs, %.1fs / %.1fs", r.upDaemon.Seconds(), r.upClient.Seconds(), r.downDaemon.Seconds(), r.downClient.Seconds())
}

// benchPkgSFTP uploads benchFileSize bytes to name in alice's personal
// workspace with a new pkg/sftp client (options added to newSFTPClient's),
// checks the object, and downloads it.
func benchPkgSFTP(b *testing.B, g *gateway, tok, name string, seed uint64, opts ...sftp.ClientOption) transferRates {
	b.Helper()
	sc, err := newSFTPClient(g.mustSSH("alice", tok), opts...)
	if err != nil {
		b.Fatalf("sftp session: %v", err)
	}
	defer sc.Close()
	var r transferRates
	daemon, client := procCPU(b, g.pid()), selfCPU()
	start := time.Now()
	uploadSFTP(b, sc, "/personal-files/"+name, seed, benchFileSize)
	r.up = rate(benchFileSize, time.Since(start))
	r.upDaemon, r.upClient = procCPU(b, g.pid())-daemon, selfCPU()-client
	if info, err := statObject(g.minio, g.personalBucket, personalKey("alice", name)); err != nil || info.Size != benchFileSize {
		b.Fatalf("object after the pkg/sftp upload: %v, %v", info.Size, err)
	}
	d := benchDownload(b, g, sc, "/personal-files/"+name)
	r.down, r.downDaemon, r.downClient = d.rate, d.daemon, d.client
	return r
}

// downloadRate is one download of benchFileSize bytes.
type downloadRate struct {
	rate           float64
	daemon, client time.Duration
}

// benchDownload reads path with sc's concurrent reads.
func benchDownload(b *testing.B, g *gateway, sc *sftp.Client, path string) downloadRate {
	b.Helper()
	daemon, client := procCPU(b, g.pid()), selfCPU()
	start := time.Now()
	f, err := sc.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	n, err := f.WriteTo(io.Discard)
	f.Close()
	if err != nil || n != benchFileSize {
		b.Fatalf("pkg/sftp download of %s: %d bytes, %v", path, n, err)
	}
	return downloadRate{rate(benchFileSize, time.Since(start)), procCPU(b, g.pid()) - daemon, selfCPU() - client}
}

// selfCPU is the user+system CPU time this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchDirect uploads and downloads benchFileSize bytes with minio-go
// directly and returns both rates.
func benchDirect(ctx context.Context, b *testing.B, g *gateway, seed uint64) (up, down float64) {
	b.Helper()
	key := fmt.Sprintf("direct-%d.bin", seed)
	opts := minio.PutObjectOptions{PartSize: 16 * mib, NumThreads: 4}
	start := time.Now()
	if _, err := g.minio.Client.PutObject(ctx, g.commonBucket, key, prng(seed, benchFileSize), benchFileSize, opts); err != nil {
		b.Fatalf("minio-go put: %v", err)
	}
	up = rate(benchFileSize, time.Since(start))
	start = time.Now()
	obj, err := g.minio.Client.GetObject(ctx, g.commonBucket, key, minio.GetObjectOptions{})
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, obj)
	obj.Close()
	if err != nil || n != benchFileSize {
		b.Fatalf("minio-go get: %d bytes, %v", n, err)
	}
	down = rate(benchFileSize, time.Since(start))
	if err := g.minio.Client.RemoveObject(ctx, g.commonBucket, key, minio.RemoveObjectOptions{}); err != nil {
		b.Fatalf("minio-go remove: %v", err)
	}
	return up, down
}

// sessionUpload logs in and uploads benchSessionLen bytes to
// concurrent.bin and checks the object's size; it runs in its own
// goroutine, so it returns errors instead of failing.
func sessionUpload(g *gateway, user, tok string, seed uint64) error {
	if err := uploadSession(g, user, tok, "concurrent.bin", seed, benchSessionLen); err != nil {
		return err
	}
	info, err := statObject(g.minio, g.personalBucket, personalKey(user, "concurrent.bin"))
	if err != nil || info.Size != benchSessionLen {
		return fmt.Errorf("%s: object: size %d, %v", user, info.Size, err)
	}
	return nil
}

// procStatusKiB reads a "kB" field of /proc/<pid>/status.
func procStatusKiB(t testing.TB, pid int, field string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("/proc/%d/status %s: %q", pid, field, rest)
		}
		return v
	}
	t.Fatalf("/proc/%d/status: no %s", pid, field)
	return 0
}

// writeViewFile writes n bytes of the stream for seed to a file on the
// server's mount, in 1 MiB writes, and closes it (which uploads it).
func writeViewFile(path string, seed uint64, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, mib)
	if _, err := io.CopyBuffer(onlyWriter{f}, prng(seed, n), buf); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// onlyWriter hides ReadFrom so that the buffer size given to
// io.CopyBuffer is used.
type onlyWriter struct{ io.Writer }

// procCPU is the user+system CPU time a process has used so far.
func procCPU(t testing.TB, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces): state is
	// field 3, utime 14, stime 15, in clock ticks (100 Hz on Linux).
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// rate is bytes per second.
func rate(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() }

func mibps(r float64) string { return fmt.Sprintf("%.1f MiB/s", r/mib) }

func ratioValue(r, base float64) string {
	return fmt.Sprintf("%.2f× (%.1f MiB/s)", r/base, r/mib)
}

func okIf(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}
