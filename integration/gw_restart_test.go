package integration

import (
	"testing"
	"time"
)

// TestGatewayRestart stops the daemon with SIGTERM and starts it again on
// the same working directory: tokens still log in, files written before
// the restart read back whole with their mtime, and the view is usable.
func TestGatewayRestart(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

	sc := g.mustSFTP("alice", tok)
	uploadSFTP(t, sc, "/personal-files/before.bin", 77, 20*mib)
	writeFile(t, sc, "/personal-files/small.txt", "small")
	if err := sc.Chtimes("/personal-files/small.txt", mtime, mtime); err != nil {
		t.Fatalf("chtimes: %v", err)
	}

	g.restart()

	sc = g.mustSFTP("alice", tok)
	if sum, n := downloadSFTP(t, sc, "/personal-files/before.bin"); n != 20*mib || sum != prngSum(77, 20*mib) {
		t.Errorf("before.bin after restart: got %d bytes sha256 %s, want the 20 MiB written", n, sum)
	}
	fi, err := sc.Stat("/personal-files/small.txt")
	if err != nil || !fi.ModTime().Equal(mtime) || fi.Size() != 5 {
		t.Errorf("small.txt after restart: got %v, %v, want 5 bytes, mtime %v", fi, err, mtime)
	}
	writeFile(t, sc, "/personal-files/after.txt", "after")
	if sum, n, _ := objectSum(t, g.minio, g.personalBucket, personalKey("alice", "after.txt")); n != 5 {
		t.Errorf("after.txt: got %d bytes (%s), want 5", n, sum)
	}
}
