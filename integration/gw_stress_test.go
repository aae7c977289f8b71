package integration

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

// TestGatewayConcurrentSessions runs several SFTP sessions of one user at
// once, each with several goroutines that create, write, close, list,
// rename, stat and remove files in the same workspace (the daemon is both
// the FUSE server and a client of its own mount: a lock held across a
// call into the mount would deadlock it). Everything must finish within
// the deadline and MinIO must hold exactly the files that were kept.
func TestGatewayConcurrentSessions(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)

	const sessions, workers, files, size = 4, 4, 8, 200 * kib
	clients := make([]*sftp.Client, sessions)
	for i := range clients {
		clients[i] = g.mustSFTP("alice", tok)
	}
	if err := clients[0].Mkdir("/personal-files/shared"); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, sessions*workers)
	for s := range sessions {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- stressWorker(clients[s], fmt.Sprintf("s%dw%d", s, w), files, size)
			}()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		t.Fatalf("concurrent sessions still running after 3 minutes (deadlock?)")
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}

	var want []string
	for s := range sessions {
		for w := range workers {
			for i := 0; i < files; i += 2 { // odd files are removed
				want = append(want, personalKey("alice", fmt.Sprintf("shared/s%dw%d-%d.kept", s, w, i)))
			}
		}
	}
	slices.Sort(want)
	got := listKeys(t, g, g.personalBucket, personalKey("alice", "shared/"))
	got = slices.DeleteFunc(got, func(k string) bool { return k == personalKey("alice", "shared/") })
	if !slices.Equal(got, want) {
		t.Errorf("objects: got %d keys %q…, want %d keys", len(got), got[:min(len(got), 5)], len(want))
	}
	for _, k := range want[:3] {
		var s, w, i int
		fmt.Sscanf(k, "alice/shared/s%dw%d-%d.kept", &s, &w, &i)
		sum, n, _ := objectSum(t, g.minio, g.personalBucket, k)
		if wantSum := prngSum(stressSeed(s, w, i), size); n != size || sum != wantSum {
			t.Errorf("object %s: got %d bytes sha256 %s, want %d bytes %s", k, n, sum, size, wantSum)
		}
	}
}

func stressSeed(s, w, i int) uint64 { return uint64(10000 + s*1000 + w*100 + i) }

// stressWorker writes files named prefix-i, lists the directory, renames
// each file to .kept, and removes the odd ones; it returns the first error.
func stressWorker(sc *sftp.Client, prefix string, files int, size int64) error {
	var s, w int
	fmt.Sscanf(prefix, "s%dw%d", &s, &w)
	for i := range files {
		p := fmt.Sprintf("/personal-files/shared/%s-%d", prefix, i)
		f, err := sc.Create(p)
		if err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
		if _, err := f.ReadFromWithConcurrency(prng(stressSeed(s, w, i), size), 16); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", p, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("close %s: %w", p, err)
		}
		if _, err := sc.ReadDir("/personal-files/shared"); err != nil {
			return fmt.Errorf("ls: %w", err)
		}
		if err := sc.Rename(p, p+".kept"); err != nil {
			return fmt.Errorf("rename %s: %w", p, err)
		}
		fi, err := sc.Stat(p + ".kept")
		if err != nil || fi.Size() != size {
			return fmt.Errorf("stat %s.kept: %v, %v, want %d bytes", p, fi, err, size)
		}
		if i%2 == 1 {
			if err := sc.Remove(p + ".kept"); err != nil {
				return fmt.Errorf("rm %s.kept: %w", p, err)
			}
		}
	}
	// Read one file back while the others write.
	b, err := readAll(sc, fmt.Sprintf("/personal-files/shared/%s-0.kept", prefix))
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	if !bytes.Equal([]byte(b), prngBytes(stressSeed(s, w, 0), int(size))) {
		return fmt.Errorf("read back %s-0.kept: content differs", prefix)
	}
	return nil
}
