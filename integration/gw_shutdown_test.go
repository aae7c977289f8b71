package integration

import (
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// TestGatewayShutdownUpload sends SIGTERM while a 200 MiB upload is being
// written: the daemon exits 0 with no mount left, and the object in MinIO
// is either complete (and the client's close succeeded or not) or absent,
// never partial; if the client's close succeeded it must be complete.
// The "fast" client finishes within the 10 s grace period; the "slow" one
// (throttled to 8 MiB/s) is cut by it.
func TestGatewayShutdownUpload(t *testing.T) {
	t.Parallel()
	for i, tt := range []struct {
		name string
		rate int64 // bytes per second, 0 for as fast as possible
	}{
		{"fast", 0},
		{"slow", 8 * mib},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const size = 200 * mib
			seed := uint64(400 + i)
			g := startGateway(t, gwOptions{})
			tok := g.addUser("alice", personalWS)
			sc := g.mustSFTP("alice", tok)

			var sent atomic.Int64
			closeErr := make(chan error, 1)
			go func() {
				f, err := sc.Create("/personal-files/big.bin")
				if err != nil {
					closeErr <- err
					return
				}
				r := &countingReader{r: prng(seed, size), n: &sent, rate: tt.rate, start: time.Now()}
				_, werr := f.ReadFromWithConcurrency(r, 64)
				cerr := f.Close()
				if werr != nil {
					cerr = werr
				}
				closeErr <- cerr
			}()
			if !waitFor(time.Minute, 20*time.Millisecond, func() bool { return sent.Load() >= 40*mib }) {
				t.Fatalf("upload: only %d bytes sent after a minute", sent.Load())
			}
			stopStart, sentAtStop := time.Now(), sent.Load()
			code := g.stop()
			t.Logf("SIGTERM after %d MiB sent: exit %d after %v", sentAtStop>>20, code, time.Since(stopStart).Round(time.Millisecond))
			if code != 0 {
				t.Errorf("daemon exit: got %d, want 0", code)
			}
			if m := mountsUnder(t, g.mounts); len(m) != 0 {
				t.Errorf("mounts after exit: got %q, want none", m) // cleanup unmounts them
			}
			var err error
			select {
			case err = <-closeErr:
			case <-time.After(2 * time.Minute):
				t.Fatalf("the client's upload did not end 2 minutes after the daemon exited")
			}
			t.Logf("client: %d MiB sent, close: %v", sent.Load()>>20, err)

			info, serr := statObject(g.minio, g.personalBucket, personalKey("alice", "big.bin"))
			switch {
			case isNotFound(serr):
				if err == nil {
					t.Errorf("object absent, but the client's close succeeded")
				}
			case serr != nil:
				t.Fatalf("stat object: %v", serr)
			default:
				sum, n, _ := objectSum(t, g.minio, g.personalBucket, personalKey("alice", "big.bin"))
				if want := prngSum(seed, size); n != size || sum != want {
					t.Errorf("object: got %d bytes (of %d) sha256 %s, want absent or complete %s (client close: %v, last modified %v)",
						n, size, sum, want, err, info.LastModified)
				}
			}
		})
	}
}

// countingReader counts the bytes read through it into n and, with a
// rate, paces them.
type countingReader struct {
	r     io.Reader
	n     *atomic.Int64
	rate  int64
	start time.Time
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.rate > 0 {
		if len(p) > 256*kib {
			p = p[:256*kib]
		}
		due := c.start.Add(time.Duration(float64(c.n.Load()) / float64(c.rate) * float64(time.Second)))
		time.Sleep(time.Until(due))
	}
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}
