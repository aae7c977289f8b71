package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/pkg/sftp"
)

// Sizes of BenchmarkReadAheadHandles.
const (
	benchRAHandles = 200     // read handles open at once on one object
	benchRARegion  = 2 * mib // each handle's part of the object
	benchRARead    = 1 * mib // what each handle reads, from the start of its part
)

// BenchmarkReadAheadHandles opens 200 SFTP read handles on one object the
// gateway has never seen (so every read goes to MinIO), and has each read
// 1 MiB from the start of its own 2 MiB part of it, all at once, every
// handle kept open until all have read. It prints the daemon's RSS before,
// its peak during the reads, and its RSS with the handles still open:
// the read-ahead of all those handles must stay within readAheadBudget
// (256 MiB by default) on top of the daemon's own memory, and go back to
// the system once the handles are closed.
func BenchmarkReadAheadHandles(b *testing.B) {
	g := startGateway(b, gwOptions{})
	tok := g.addUser("alice", personalWS)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const size = benchRAHandles * benchRARegion
	key := personalKey("alice", "handles.bin")
	if _, err := g.minio.Client.PutObject(ctx, g.personalBucket, key, prng(77, size), size,
		minio.PutObjectOptions{PartSize: 16 * mib, NumThreads: 4}); err != nil {
		b.Fatalf("minio-go put: %v", err)
	}
	sc := g.mustSFTP("alice", tok)
	pid := g.pid()
	var rows []benchRow
	add := func(metric, value, target, ok string) { rows = append(rows, benchRow{metric, value, target, ok}) }
	b.ResetTimer()
	for range b.N {
		rows = rows[:0]
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
			b.Fatalf("reset the daemon's VmHWM: %v", err)
		}
		before := procStatusKiB(b, pid, "VmRSS") * 1024
		start := time.Now()
		fs := make([]*sftp.File, benchRAHandles)
		for i := range fs {
			f, err := sc.Open("/personal-files/handles.bin")
			if err != nil {
				b.Fatalf("open handle %d: %v", i, err)
			}
			fs[i] = f
		}
		var wg sync.WaitGroup
		errs := make(chan error, benchRAHandles)
		for i, f := range fs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Sequential reads of 256 KiB (each sent as concurrent
				// 32 KiB requests by pkg/sftp).
				p := make([]byte, 256<<10)
				r := io.NewSectionReader(f, int64(i)*benchRARegion, benchRARead)
				n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, p)
				if err != nil || n != benchRARead {
					errs <- fmt.Errorf("handle %d: read %d bytes, %v", i, n, err)
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		close(errs)
		for err := range errs {
			b.Error(err)
		}
		open := procStatusKiB(b, pid, "VmRSS") * 1024
		peak := procStatusKiB(b, pid, "VmHWM") * 1024
		for _, f := range fs {
			f.Close()
		}
		// The read-ahead's buffers are unmapped 3 s after the last
		// reservation went.
		time.Sleep(6 * time.Second)
		after := procStatusKiB(b, pid, "VmRSS") * 1024
		add(fmt.Sprintf("%d handles × %d MiB read (open, read)", benchRAHandles, benchRARead/mib), elapsed.Round(time.Millisecond).String(), "", "")
		add("  daemon VmRSS before", fmt.Sprintf("%.0f MiB", float64(before)/mib), "", "")
		add("  daemon peak RSS during (VmHWM)", fmt.Sprintf("%.0f MiB", float64(peak)/mib), "< 256 MiB + 128 MiB", okIf(peak < 384*mib))
		add("  daemon VmRSS with the handles open", fmt.Sprintf("%.0f MiB", float64(open)/mib), "", "")
		add("  daemon VmRSS 6 s after they closed", fmt.Sprintf("%.0f MiB", float64(after)/mib), "", "")
		b.ReportMetric(float64(peak)/mib, "daemon-peak-MiB")
	}
	b.StopTimer()

	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tvalue\ttarget\tok")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.metric, r.value, r.target, r.ok)
	}
	tw.Flush()
	fmt.Print("\nBenchmarkReadAheadHandles (sftpgate over MinIO " + g.minio.Endpoint + ")\n" + sb.String())
	for _, r := range rows {
		if r.ok == "NO" {
			b.Errorf("%s: got %s, want %s", r.metric, r.value, r.target)
		}
	}
}
