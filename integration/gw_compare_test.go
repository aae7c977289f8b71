package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// Environment of TestCompareBinaries (set by `make compare`).
const (
	// envCompareBins names the binaries to compare: "old=PATH,new=PATH"
	// (relative paths are from the repository root). The first one is the
	// baseline of the ratios. Unset: the test is skipped.
	envCompareBins = "SFTPGATE_COMPARE_BINS"
	// envCompareRounds is the number of rounds, 5 when unset.
	envCompareRounds = "SFTPGATE_COMPARE_ROUNDS"
	// envCompareMiB is the size of the big file in MiB, 512 when unset.
	envCompareMiB = "SFTPGATE_COMPARE_MIB"
)

// Workload of one round of TestCompareBinaries for one binary.
const (
	compareSmallFiles = 200
	compareSmallSize  = 64 << 10
	// The tree put by OpenSSH `sftp -b` with `put -r` (issue 14).
	compareTreeFiles = 500
	compareTreeSize  = 4 << 10
	compareSeed      = 7100
	clockTick        = 10 * time.Millisecond // USER_HZ = 100 on Linux
)

// compareBin is one binary under comparison.
type compareBin struct{ name, path string }

// TestCompareBinaries measures two (or more) sftpgate binaries in one run
// on one shared MinIO: for each round and each binary, in interleaved
// order (old,new then new,old…), a fresh daemon; a pkg/sftp upload of one
// big file streamed from a PRNG with concurrent writes, its download,
// 200 small files uploaded one after the other, and the CPU time of the
// daemon and every process it started for each of those phases and over
// its whole life (start and shutdown included), its peak RSS, and how long
// its threads waited for a CPU during the upload (the machine's noise). A
// direct minio-go upload and download of the same size at the start of
// each round is the reference. It prints medians, ratios to the first
// binary (of the medians, and the median of the per-round ratios) and
// every round's values. Run by `make compare OLD=<rev>`.
func TestCompareBinaries(t *testing.T) {
	spec := os.Getenv(envCompareBins)
	if spec == "" {
		t.Skipf("%s is not set: this comparison runs with `make compare OLD=<git rev>` (or %s=old=PATH,new=PATH)", envCompareBins, envCompareBins)
	}
	bins, err := parseCompareBins(spec)
	if err != nil {
		t.Fatal(err)
	}
	rounds, err := envIntRange(envCompareRounds, 5, 1, 50)
	if err != nil {
		t.Fatal(err)
	}
	sizeMiB, err := envIntRange(envCompareMiB, 512, 1, 8192)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(sizeMiB) * mib
	want := prngSum(compareSeed, size)

	m := minioServer(t)
	direct := m.NewBucket(t, "direct")
	t.Cleanup(func() { removeBucket(t, m, direct) })

	res := newCompareResults()
	loadBefore := loadAvg()
	began := time.Now()
	// Printed even when a round fails: the rounds done so far.
	defer func() {
		fmt.Print(res.table(bins, rounds, sizeMiB, m.Endpoint, loadBefore, loadAvg(), time.Since(began)))
	}()
	for r := range rounds {
		up, down := compareDirect(t, m, direct, size)
		res.add("minio-go PutObject (known size), MiB/s", "minio-go", up/mib)
		res.add("minio-go GetObject, MiB/s", "minio-go", down/mib)
		order := slices.Clone(bins)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, b := range order {
			ok := t.Run(fmt.Sprintf("round%d/%s", r+1, b.name), func(t *testing.T) {
				compareOnce(t, b, size, want, res)
			})
			if !ok {
				t.FailNow()
			}
		}
	}
}

// compareOnce starts a daemon running b, measures it and records the
// values in res.
func compareOnce(t *testing.T, b compareBin, size int64, want string, res *compareResults) {
	g := startGateway(t, gwOptions{bin: b.path})
	tok := g.addUser("alice", personalWS)
	sc := g.mustSFTP("alice", tok)
	pid := g.pid()
	sizeLabel := fmt.Sprintf("%d MiB", size/mib)

	// (1) Upload: create, concurrent writes, close (which uploads).
	u0 := treeUsageOf(t, pid)
	start := time.Now()
	uploadSFTP(t, sc, "/personal-files/big.bin", compareSeed, size)
	up := time.Since(start)
	u1 := treeUsageOf(t, pid)
	if info, err := statObject(g.minio, g.personalBucket, personalKey("alice", "big.bin")); err != nil || info.Size != size {
		t.Fatalf("object after the upload: size %d, %v; want %d", info.Size, err, size)
	}

	// (2) Download of the same file, concurrent reads, checked.
	u2 := treeUsageOf(t, pid)
	start = time.Now()
	sum, n := downloadSFTP(t, sc, "/personal-files/big.bin")
	down := time.Since(start)
	u3 := treeUsageOf(t, pid)
	if n != size || sum != want {
		t.Fatalf("download: got %d bytes sha256 %.12s, want %d bytes %.12s", n, sum, size, want)
	}

	// (3) Small files, one after the other.
	u4 := treeUsageOf(t, pid)
	start = time.Now()
	for i := range compareSmallFiles {
		uploadSFTP(t, sc, fmt.Sprintf("/personal-files/small-%03d.bin", i), uint64(compareSeed+1+i), compareSmallSize)
	}
	small := time.Since(start)
	u5 := treeUsageOf(t, pid)
	for i := range compareSmallFiles {
		key := personalKey("alice", fmt.Sprintf("small-%03d.bin", i))
		if info, err := statObject(g.minio, g.personalBucket, key); err != nil || info.Size != compareSmallSize {
			t.Fatalf("object %s: size %d, %v; want %d", key, info.Size, err, compareSmallSize)
		}
	}

	// (4) A tree of small files through OpenSSH sftp -b, put -r.
	tree := filepath.Join(t.TempDir(), "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range compareTreeFiles {
		writeLocal(t, filepath.Join(tree, fmt.Sprintf("f%03d.bin", i)), uint64(compareSeed+1000+i), compareTreeSize)
	}
	u6 := treeUsageOf(t, pid)
	start = time.Now()
	if out, code := g.sftpBatch(t, "alice", tok, filepath.Dir(tree), "put -r tree /personal-files/tree"); code != 0 {
		t.Fatalf("sftp put -r: exit %d\n%s", code, out)
	}
	treeTook := time.Since(start)
	u7 := treeUsageOf(t, pid)
	for i := range compareTreeFiles {
		key := personalKey("alice", fmt.Sprintf("tree/f%03d.bin", i))
		if info, err := statObject(g.minio, g.personalBucket, key); err != nil || info.Size != compareTreeSize {
			t.Fatalf("object %s: size %d, %v; want %d", key, info.Size, err, compareTreeSize)
		}
	}

	sc.Close()
	if code := g.stop(); code != 0 {
		t.Fatalf("sftpgate serve: got exit %d after SIGTERM, want 0", code)
	}
	// The rusage of the waited daemon holds its own time and that of every
	// child it waited for: the whole life of the serve process tree.
	ru, ok := g.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatalf("no rusage for the daemon (%T)", g.cmd.ProcessState.SysUsage())
	}
	life := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	uploaded := float64(size+compareSmallFiles*compareSmallSize+compareTreeFiles*compareTreeSize) / (1 << 30)

	gib := float64(size) / (1 << 30)
	res.add("upload "+sizeLabel+", MiB/s", b.name, rate(size, up)/mib)
	res.add("download "+sizeLabel+", MiB/s", b.name, rate(size, down)/mib)
	res.add(fmt.Sprintf("upload %d × %d KiB, files/s", compareSmallFiles, compareSmallSize>>10), b.name, compareSmallFiles/small.Seconds())
	upU, downU, smallU, treeU := u1.sub(u0), u3.sub(u2), u5.sub(u4), u7.sub(u6)
	res.add(fmt.Sprintf("OpenSSH sftp put -r %d × %d KiB, s", compareTreeFiles, compareTreeSize>>10), b.name, treeTook.Seconds())
	res.add("serve CPU, upload, s/GiB", b.name, upU.cpu.Seconds()/gib)
	res.add("serve CPU, download, s/GiB", b.name, downU.cpu.Seconds()/gib)
	res.add("serve CPU, small files, ms/file", b.name, float64(smallU.cpu.Microseconds())/1000/compareSmallFiles)
	res.add("serve CPU, sftp put -r, ms/file", b.name, float64(treeU.cpu.Microseconds())/1000/compareTreeFiles)
	res.add("serve CPU, whole life, s/GiB uploaded", b.name, life.Seconds()/uploaded)
	res.add("serve peak RSS, MiB", b.name, float64(ru.Maxrss)/1024)
	// How much the machine's other load held the daemon back: not a
	// property of the binary, a gauge of the noise.
	res.add("serve run-queue wait, upload, % of its time", b.name, 100*upU.wait.Seconds()/up.Seconds())
	t.Logf("%s (load average %s): upload %.1f MiB/s (CPU %.1fs, run-queue wait %.1fs), download %.1f MiB/s (CPU %.1fs), %d small files in %.2fs (CPU %.2fs), whole life CPU %.1fs",
		b.name, loadAvg(), rate(size, up)/mib, upU.cpu.Seconds(), upU.wait.Seconds(), rate(size, down)/mib, downU.cpu.Seconds(),
		compareSmallFiles, small.Seconds(), smallU.cpu.Seconds(), life.Seconds())
}

// compareDirect uploads size bytes to bucket with minio-go (known size,
// the gateway harness's part size and concurrency), downloads them,
// removes the object and returns both rates in bytes per second.
func compareDirect(t *testing.T, m *testenv.MinIO, bucket string, size int64) (up, down float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	const key = "direct.bin"
	start := time.Now()
	if _, err := m.Client.PutObject(ctx, bucket, key, prng(compareSeed, size), size,
		minio.PutObjectOptions{PartSize: 16 * mib, NumThreads: 4}); err != nil {
		t.Fatalf("minio-go put: %v", err)
	}
	up = rate(size, time.Since(start))
	start = time.Now()
	obj, err := m.Client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("minio-go get: %v", err)
	}
	_, n, err := sumOf(obj)
	obj.Close()
	if err != nil || n != size {
		t.Fatalf("minio-go get: %d bytes, %v; want %d", n, err, size)
	}
	down = rate(size, time.Since(start))
	if err := m.Client.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{}); err != nil {
		t.Fatalf("minio-go remove: %v", err)
	}
	return up, down
}

// treeUsage is what a process tree has used so far.
type treeUsage struct {
	cpu  time.Duration // user + system, reaped children included
	wait time.Duration // time its living threads were runnable but waiting for a CPU
}

func (u treeUsage) sub(v treeUsage) treeUsage { return treeUsage{u.cpu - v.cpu, u.wait - v.wait} }

// treeUsageOf reads the usage of pid and its descendants: its own CPU
// time, that of the children it has waited for, and treeUsageOf each
// living child; the run-queue wait of every living thread.
func treeUsageOf(t testing.TB, pid int) treeUsage {
	t.Helper()
	u, err := procTreeUsage(pid, 0)
	if err != nil {
		t.Fatalf("usage of process %d and its children: %v", pid, err)
	}
	return u
}

// procTreeUsage is treeUsageOf's walk; depth bounds it.
func procTreeUsage(pid, depth int) (treeUsage, error) {
	var u treeUsage
	if depth > 16 {
		return u, fmt.Errorf("process tree deeper than 16 under %d", pid)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	// After the command name (which may hold spaces), field 3 (state) is
	// first: utime, stime, cutime and cstime are fields 14 to 17.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return u, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	fields := strings.Fields(s[i+2:])
	if len(fields) < 15 {
		return u, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	var ticks int64
	for _, f := range fields[11:15] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return u, fmt.Errorf("/proc/%d/stat: %q: %w", pid, s, err)
		}
		ticks += v
	}
	u.cpu = time.Duration(ticks) * clockTick
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil {
		return u, err
	}
	for _, task := range tasks {
		// schedstat: time on a CPU, time waiting on a run queue (ns), slices.
		if st, err := os.ReadFile(filepath.Join(task, "schedstat")); err == nil {
			if f := strings.Fields(string(st)); len(f) >= 2 {
				if ns, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					u.wait += time.Duration(ns)
				}
			}
		}
		kids, err := os.ReadFile(filepath.Join(task, "children"))
		if err != nil {
			continue // the thread has exited
		}
		for _, k := range strings.Fields(string(kids)) {
			kid, err := strconv.Atoi(k)
			if err != nil {
				return u, fmt.Errorf("%s/children: %q", task, kids)
			}
			ku, err := procTreeUsage(kid, depth+1)
			if err != nil {
				if os.IsNotExist(err) {
					continue // exited (its time is now in our cutime or soon will be)
				}
				return u, err
			}
			u.cpu += ku.cpu
			u.wait += ku.wait
		}
	}
	return u, nil
}

// parseCompareBins parses "name=path,name=path"; a relative path is from
// the repository root.
func parseCompareBins(spec string) ([]compareBin, error) {
	var bins []compareBin
	for _, item := range strings.Split(spec, ",") {
		name, path, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || name == "" || path == "" {
			return nil, fmt.Errorf("%s: %q is not name=path", envCompareBins, item)
		}
		if slices.ContainsFunc(bins, func(b compareBin) bool { return b.name == name }) {
			return nil, fmt.Errorf("%s: %q named twice", envCompareBins, name)
		}
		if !filepath.IsAbs(path) {
			root, err := testenv.RepoRoot()
			if err != nil {
				return nil, err
			}
			path = filepath.Join(root, path)
		}
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", envCompareBins, name, err)
		}
		if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("%s: %s: %s is not an executable file", envCompareBins, name, path)
		}
		bins = append(bins, compareBin{name, path})
	}
	return bins, nil
}

// envIntRange reads an integer from the environment: def when unset, an
// error when out of [lo, hi].
func envIntRange(key string, def, lo, hi int) (int, error) {
	s := os.Getenv(key)
	if s == "" {
		return def, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("%s: got %q, want an integer in [%d, %d]", key, s, lo, hi)
	}
	return v, nil
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// compareResults are the values of every round, by metric and source (a
// binary's name, or "minio-go"), in the order they were recorded.
type compareResults struct {
	metrics []string
	values  map[string]map[string][]float64
}

func newCompareResults() *compareResults {
	return &compareResults{values: map[string]map[string][]float64{}}
}

func (c *compareResults) add(metric, source string, v float64) {
	bySource, ok := c.values[metric]
	if !ok {
		bySource = map[string][]float64{}
		c.values[metric] = bySource
		c.metrics = append(c.metrics, metric)
	}
	bySource[source] = append(bySource[source], v)
}

// table formats the results: for each metric, each binary's median; for
// each other binary, the ratio of its median to the first's and the
// median (min-max) of the per-round ratios, each taken between two runs
// of the same round, back to back, so that slow changes of the machine's
// load cancel; then every round's values with their spread ((max-min)/2
// as a share of the median).
func (c *compareResults) table(bins []compareBin, rounds, sizeMiB int, endpoint, loadBefore, loadAfter string, took time.Duration) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nTestCompareBinaries: %d rounds, interleaved (odd rounds in reverse order), one MinIO at %s, %d MiB file, took %v\n",
		rounds, endpoint, sizeMiB, took.Round(time.Second))
	for _, b := range bins {
		fmt.Fprintf(&sb, "  %s = %s\n", b.name, b.path)
	}
	fmt.Fprintf(&sb, "  load average before: %s, after: %s; %d CPUs\n", loadBefore, loadAfter, runtime.NumCPU())
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	head := []string{"metric"}
	for _, b := range bins {
		head = append(head, b.name+" median")
	}
	for _, b := range bins[1:] {
		ratio := b.name + "/" + bins[0].name
		head = append(head, ratio, ratio+" paired (min-max)")
	}
	for _, b := range bins {
		head = append(head, b.name+" per round (spread)")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, metric := range c.metrics {
		bySource := c.values[metric]
		if ref, ok := bySource["minio-go"]; ok {
			// The reference: its median and rounds in the first binary's columns.
			row := make([]string, len(head))
			row[0], row[1], row[3*len(bins)-1] = metric, fmtValue(median(ref)), perRound(ref)
			fmt.Fprintln(tw, strings.Join(row, "\t"))
			continue
		}
		row := []string{metric}
		for _, b := range bins {
			row = append(row, fmtValue(median(bySource[b.name])))
		}
		base := bySource[bins[0].name]
		for _, b := range bins[1:] {
			vs := bySource[b.name]
			row = append(row, fmtRatio(median(vs), median(base)))
			var paired []float64
			for r := range min(len(vs), len(base)) {
				if base[r] != 0 {
					paired = append(paired, vs[r]/base[r])
				}
			}
			p := "-"
			if len(paired) > 0 {
				p = fmt.Sprintf("%.3f (%.2f-%.2f)", median(paired), slices.Min(paired), slices.Max(paired))
			}
			row = append(row, p)
		}
		for _, b := range bins {
			row = append(row, perRound(bySource[b.name]))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	return sb.String()
}

// fmtRatio is v/base with three decimals, "-" when base is zero.
func fmtRatio(v, base float64) string {
	if base == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", v/base)
}

// median of vs (the mean of the two middle values for an even count).
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(vs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// perRound lists vs in round order with their spread.
func perRound(vs []float64) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmtValue(v)
	}
	s := strings.Join(parts, " ")
	if med := median(vs); med != 0 && len(vs) > 1 {
		s += fmt.Sprintf(" (±%.1f%%)", 100*(slices.Max(vs)-slices.Min(vs))/2/med)
	}
	return s
}

// fmtValue prints three significant digits or so.
func fmtValue(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
