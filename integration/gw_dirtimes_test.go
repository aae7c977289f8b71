package integration

import (
	"fmt"
	"testing"
	"time"
)

// TestGatewayDirMtime sets directory times with SFTP setstat (pkg/sftp
// Chtimes, as rclone's FsDirSetModTime does) on a made directory and on
// one implied by a deeper key: stat and the parent's listing show them, to
// the second, before and after a restart (a fresh mount), and they are
// stored on the dir/ markers.
func TestGatewayDirMtime(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)
	sc := g.mustSFTP("alice", tok)
	made := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	implied := time.Date(2019, 1, 2, 3, 4, 5, 0, time.UTC)

	if err := sc.Mkdir("/personal-files/made"); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	if err := sc.Chtimes("/personal-files/made", made, made); err != nil {
		t.Fatalf("chtimes of a directory: got %v, want success", err)
	}
	putObject(t, g.minio, g.personalBucket, personalKey("alice", "implied/deep/f.txt"), []byte("f"))
	if err := sc.Chtimes("/personal-files/implied", implied, implied); err != nil {
		t.Fatalf("chtimes of an implied directory: got %v, want success", err)
	}

	check := func(when string) {
		t.Helper()
		for p, want := range map[string]time.Time{"/personal-files/made": made, "/personal-files/implied": implied} {
			fi, err := sc.Stat(p)
			if err != nil {
				t.Fatalf("%s: stat %s: %v", when, p, err)
			}
			if !fi.IsDir() || !fi.ModTime().Equal(want) {
				t.Errorf("%s: stat %s: got dir=%v mtime %v, want a directory with mtime %v", when, p, fi.IsDir(), fi.ModTime().UTC(), want)
			}
		}
		entries, err := sc.ReadDir("/personal-files")
		if err != nil {
			t.Fatalf("%s: readdir: %v", when, err)
		}
		got := map[string]time.Time{}
		for _, e := range entries {
			got[e.Name()] = e.ModTime()
		}
		if !got["made"].Equal(made) || !got["implied"].Equal(implied) {
			t.Errorf("%s: listing: got made %v, implied %v, want %v, %v", when, got["made"].UTC(), got["implied"].UTC(), made, implied)
		}
		if fi, err := sc.Stat("/personal-files/implied/deep/f.txt"); err != nil || fi.Size() != 1 {
			t.Errorf("%s: the implied directory's file: got %v, %v, want 1 byte", when, fi, err)
		}
	}
	check("before the restart")
	for key, want := range map[string]time.Time{"made/": made, "implied/": implied} {
		info, err := statObject(g.minio, g.personalBucket, personalKey("alice", key))
		if err != nil {
			t.Fatalf("marker %s: %v", key, err)
		}
		if got := info.Metadata.Get("X-Amz-Meta-Mtime"); got != formatUnix(want) {
			t.Errorf("marker %s: got X-Amz-Meta-Mtime %q, want %q", key, got, formatUnix(want))
		}
	}

	g.restart()
	sc = g.mustSFTP("alice", tok)
	check("after a restart")
}

// formatUnix is t as X-Amz-Meta-Mtime holds it (float seconds).
func formatUnix(t time.Time) string {
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}
