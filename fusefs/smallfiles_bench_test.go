package fusefs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkSmallFileCreates creates b.N files of 4 KiB, one after the
// other, in a directory made through the mount (as `sftp put -r` does):
// each is durable when its close returns. It reports milliseconds per file.
func BenchmarkSmallFileCreates(b *testing.B) {
	w := mountWorkspace(b, benchOptions(b))
	dir := filepath.Join(w.dir, "tree")
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	data := pattern(11, 4<<10)
	b.ResetTimer()
	for i := range b.N {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/file")
}
