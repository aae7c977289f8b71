package integration

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// TestGatewayManySessionsGather uploads 8 MiB from each of 20 users at
// once (pkg/sftp, 64 requests of 32 KiB in flight each: the server's
// write-gathering budget gives each handle about one window) and checks
// every object's bytes, then that the uploads still reached the mounts
// in large writes (FUSE write operations average at least 96 KiB; about
// 200 KiB here, 55 KiB when a handle over the budget wrote every later
// piece through) and that the kernel asked for an extended attribute
// about once per mount (20; it was 2,750, one per pwrite).
func TestGatewayManySessionsGather(t *testing.T) {
	t.Parallel()
	const users, size = 20, 8 * mib
	g := startGateway(t, gwOptions{metrics: true})
	tokens := make([]string, users)
	for i := range tokens {
		tokens[i] = g.addUser(fmt.Sprintf("many%02d", i), personalWS)
	}
	before := g.scrape()
	writes0, _ := testenv.MetricValue(before, "sftpgate_fuse_operations_total", "op=write", "errno=ok")
	getx0, _ := testenv.MetricValue(before, "sftpgate_fuse_operations_total", "op=getxattr", "errno=ENOTSUP")

	var wg sync.WaitGroup
	errs := make(chan error, users)
	start := time.Now()
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- uploadSession(g, fmt.Sprintf("many%02d", i), tokens[i], "many.bin", uint64(7700+i), size)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(4 * time.Minute):
		t.Fatal("20 uploads of 8 MiB still running after 4 minutes")
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d sessions × %d MiB in %v", users, size/mib, time.Since(start).Round(time.Millisecond))
	for i := range users {
		user := fmt.Sprintf("many%02d", i)
		sum, n, _ := objectSum(t, g.minio, g.personalBucket, personalKey(user, "many.bin"))
		if want := prngSum(uint64(7700+i), size); n != size || sum != want {
			t.Errorf("%s: object of %d bytes sha256 %s, want %d bytes %s", user, n, sum, size, want)
		}
	}

	after := g.scrape()
	writes := testenv.MetricValueT(t, after, "sftpgate_fuse_operations_total", "op=write", "errno=ok") - writes0
	getx, _ := testenv.MetricValue(after, "sftpgate_fuse_operations_total", "op=getxattr", "errno=ENOTSUP")
	getx -= getx0
	avg := float64(users*size) / writes
	t.Logf("%.0f FUSE writes (%.0f KiB each on average), %.0f getxattr", writes, avg/kib, getx)
	if avg < 96*kib {
		t.Errorf("FUSE writes average %.0f KiB (%.0f writes for %d MiB), want at least 96 KiB: the sessions' writes were not gathered",
			avg/kib, writes, users*size/mib)
	}
	if getx > 2*users {
		t.Errorf("getxattr answered %.0f times for %d mounts, want about one per mount", getx, users)
	}
}

// uploadSession logs in as user and uploads size bytes of prng(seed) to
// /personal-files/name with pkg/sftp (64 requests in flight).
func uploadSession(g *gateway, user, tok, name string, seed uint64, size int64) error {
	c, err := g.login(user, tok)
	if err != nil {
		return fmt.Errorf("%s: login: %w", user, err)
	}
	defer c.Close()
	sc, err := newSFTPClient(c)
	if err != nil {
		return fmt.Errorf("%s: sftp: %w", user, err)
	}
	defer sc.Close()
	f, err := sc.Create("/personal-files/" + name)
	if err != nil {
		return fmt.Errorf("%s: create: %w", user, err)
	}
	if _, err := f.ReadFromWithConcurrency(prng(seed, size), 64); err != nil {
		f.Close()
		return fmt.Errorf("%s: write: %w", user, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: close: %w", user, err)
	}
	return nil
}
