package fusefs_test

import (
	"errors"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"
)

// readDirNames returns the sorted names in dir.
func readDirNames(tb testing.TB, dir string) []string {
	tb.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatalf("ReadDir(%s): %v", dir, err)
	}
	names := make([]string, len(es))
	for i, e := range es {
		names[i] = e.Name()
	}
	slices.Sort(names)
	return names
}

// eventually calls cond every 100ms until it returns nil or timeout passes,
// and returns cond's last error.
func eventually(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wantErrno fails the test unless err is one of want.
func wantErrno(tb testing.TB, what string, err error, want ...syscall.Errno) {
	tb.Helper()
	for _, w := range want {
		if errors.Is(err, w) {
			return
		}
	}
	tb.Errorf("%s: got error %v, want %v", what, err, want)
}

// pattern returns n deterministic pseudo-random bytes for seed.
func pattern(seed uint64, n int) []byte {
	b := make([]byte, n)
	x := seed*0x9E3779B97F4A7C15 + 1
	for i := 0; i+8 <= n; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		for j := range 8 {
			b[i+j] = byte(x >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(i)
	}
	return b
}
