package fusefs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSmallFileCreates creates b.N files of 4 KiB, one after the
// other, in a directory made through the mount (as `sftp put -r` does):
// each is durable when its close returns. It reports milliseconds per file
// and the CPU time of this process (the client and the FUSE server, not
// MinIO) per file.
func BenchmarkSmallFileCreates(b *testing.B) {
	w := mountWorkspace(b, benchOptions(b))
	dir := filepath.Join(w.dir, "tree")
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	data := pattern(11, 4<<10)
	cpu0 := processCPU(b)
	b.ResetTimer()
	for i := range b.N {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cpu := processCPU(b) - cpu0
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/file")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/file")
}

// processCPU returns the user and system time of this process so far.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
