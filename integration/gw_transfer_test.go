package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// TestGatewayRoundTrip uploads and downloads files with the pkg/sftp
// client (concurrent requests): the bytes read back over SFTP, the bytes
// sent and the object read from MinIO directly all have the same SHA-256.
func TestGatewayRoundTrip(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)
	sc := g.mustSFTP("alice", tok)
	if err := sc.Mkdir("/personal-files/roundtrip"); err != nil {
		t.Fatalf("mkdir: %v", err)
	}

	for i, tt := range []struct {
		name string
		size int64
	}{
		{"1 byte", 1},
		{"1 MiB", mib},
		{"300 MiB", 300 * mib},
	} {
		t.Run(tt.name, func(t *testing.T) {
			seed := uint64(100 + i)
			path := "/personal-files/roundtrip/" + tt.name
			want := prngSum(seed, tt.size)

			start := time.Now()
			uploadSFTP(t, sc, path, seed, tt.size)
			up := time.Since(start)

			sum, n, _ := objectSum(t, g.minio, g.personalBucket, personalKey("alice", "roundtrip/"+tt.name))
			if n != tt.size || sum != want {
				t.Errorf("object in MinIO: got %d bytes sha256 %s, want %d bytes %s", n, sum, tt.size, want)
			}

			start = time.Now()
			sum, n = downloadSFTP(t, sc, path)
			if n != tt.size || sum != want {
				t.Errorf("download over SFTP: got %d bytes sha256 %s, want %d bytes %s", n, sum, tt.size, want)
			}
			t.Logf("%s: upload %v, download %v", tt.name, up.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestGatewayConcurrentWrites writes shuffled chunks of one file from
// several goroutines on one handle: the object is the file in order.
func TestGatewayConcurrentWrites(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)
	sc := g.mustSFTP("alice", tok)

	const size, chunk, writers = 24 * mib, 64 * kib, 8
	data := prngBytes(7, size)
	offsets := make([]int64, 0, size/chunk)
	for off := int64(0); off < size; off += chunk {
		offsets = append(offsets, off)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(offsets), func(i, j int) { offsets[i], offsets[j] = offsets[j], offsets[i] })

	f, err := sc.Create("/personal-files/shuffled.bin")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(offsets); i += writers {
				off := offsets[i]
				if _, err := f.WriteAt(data[off:off+chunk], off); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("WriteAt: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	want := sha256.Sum256(data)
	sum, n, _ := objectSum(t, g.minio, g.personalBucket, personalKey("alice", "shuffled.bin"))
	if n != size || sum != hex.EncodeToString(want[:]) {
		t.Errorf("object: got %d bytes sha256 %s, want %d bytes %x", n, sum, size, want)
	}
}

// TestGatewayResume drops the connection in the middle of an upload (or
// after a clean close), reconnects, opens the file without truncating it
// and writes the rest from its current size, as `reput` and WinSCP do.
func TestGatewayResume(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)

	const size, half, chunk = 12 * mib, 6 * mib, 256 * kib
	for i, tt := range []struct {
		name   string
		abrupt bool // drop the TCP connection with the file still open
	}{
		{"connection dropped mid-upload", true},
		{"after close", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			seed := uint64(200 + i)
			data := prngBytes(seed, size)
			path := "/personal-files/resume-" + string(rune('a'+i)) + ".bin"

			c1, err := g.login("alice", tok)
			if err != nil {
				t.Fatal(err)
			}
			sc1, err := sftp.NewClient(c1)
			if err != nil {
				c1.Close()
				t.Fatal(err)
			}
			f, err := sc1.Create(path)
			if err != nil {
				c1.Close()
				t.Fatalf("create: %v", err)
			}
			for off := 0; off < half; off += chunk {
				if _, err := f.Write(data[off : off+chunk]); err != nil {
					c1.Close()
					t.Fatalf("write at %d: %v", off, err)
				}
			}
			if !tt.abrupt {
				if err := f.Close(); err != nil {
					t.Errorf("close first half: %v", err)
				}
			}
			c1.Close() // the TCP connection goes away; nothing else is said
			sc1.Close()

			sc := g.mustSFTP("alice", tok)
			var cur int64
			if !waitFor(30*time.Second, 100*time.Millisecond, func() bool {
				fi, err := sc.Stat(path)
				if err == nil {
					cur = fi.Size()
				}
				return cur == half
			}) {
				t.Fatalf("size after reconnecting: got %d, want %d (acknowledged writes kept)", cur, half)
			}
			f, err = sc.OpenFile(path, os.O_WRONLY)
			if err != nil {
				t.Fatalf("open without truncate: %v", err)
			}
			if _, err := f.Seek(cur, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(data[cur:]); err != nil {
				t.Fatalf("write the rest: %v", err)
			}
			if err := f.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			want := sha256.Sum256(data)
			sum, n, _ := objectSum(t, g.minio, g.personalBucket, personalKey("alice", path[len("/personal-files/"):]))
			if n != size || sum != hex.EncodeToString(want[:]) {
				t.Errorf("object: got %d bytes sha256 %s, want %d bytes %x", n, sum, size, want)
			}
		})
	}
}

// uploadSFTP writes size bytes of the stream for seed to path with
// concurrent requests and checks the close.
func uploadSFTP(t testing.TB, sc *sftp.Client, path string, seed uint64, size int64) {
	t.Helper()
	f, err := sc.Create(path)
	if err != nil {
		t.Fatalf("create %s: %v", path, err)
	}
	n, err := f.ReadFromWithConcurrency(prng(seed, size), 64)
	if err != nil {
		f.Close()
		t.Fatalf("write %s: %v", path, err)
	}
	if n != size {
		t.Errorf("write %s: got %d bytes written, want %d", path, n, size)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close %s: %v (the upload failed)", path, err)
	}
}

// downloadSFTP reads path with concurrent requests and returns its
// SHA-256 and length.
func downloadSFTP(t testing.TB, sc *sftp.Client, path string) (string, int64) {
	t.Helper()
	f, err := sc.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := f.WriteTo(h)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}
