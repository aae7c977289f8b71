package integration

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// TestOpsGateway drives the control commands and the metrics of one
// daemon through a user's session: mounts during and after an upload,
// read-only and read-write admin mounts, sessions kill, the expiry of an
// admin mount, the refusals (other uid, second daemon) and the scrapes.
func TestOpsGateway(t *testing.T) {
	g := startGateway(t, gwOptions{metrics: true})
	bobToken := g.addUser("bob", personalWS)
	g.addUser("carol", personalWS)
	sock := filepath.Join(g.work, "sftpgate.sock")

	// An admin mount that expires in 3s, checked at the end (its view is
	// taken down when it expires).
	carolStart := time.Now()
	r := g.mustCLI("mount", "-u", "carol", "--for", "3s")
	carolPath := filepath.Join(g.mounts, ".readonly", "carol")
	if got := strings.TrimSpace(r.stdout); got != carolPath {
		t.Fatalf("mount -u carol: got path %q, want %q", got, carolPath)
	}
	if !strings.Contains(r.stderr, "read-only") {
		t.Errorf("mount -u carol: got stderr %q, want it to say read-only", r.stderr)
	}

	t.Run("socket is private", func(t *testing.T) {
		fi, err := os.Stat(sock)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket: got mode %v, want a socket with mode 0600", fi.Mode())
		}
		if os.Geteuid() != 0 {
			t.Skip("needs root to run a client as nobody (internal/daemon TestControlRefusesOtherUID and TestCheckPeer cover the check)")
		}
		if _, err := exec.LookPath("setpriv"); err != nil {
			t.Skip("no setpriv (util-linux) to run a client as nobody")
		}
		dir, err := os.MkdirTemp("", "sftpgate-ops-bin-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "sftpgate")
		data, err := os.ReadFile(sftpgateBinary(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", bin, "--workdir", g.work, "mounts")
		cmd.Env = sftpgateEnv()
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err = cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("mounts as nobody: got %v (stderr %q), want exit 1", err, stderr.String())
		}
		want := "sftpgate: control socket " + sock + ": permission denied: run the command as the daemon's user"
		if !strings.HasPrefix(stderr.String(), want) || strings.Count(stderr.String(), "\n") != 1 || stdout.Len() != 0 {
			t.Errorf("mounts as nobody: got stdout %q, stderr %q, want one line starting %q", stdout.String(), stderr.String(), want)
		}
	})

	t.Run("second daemon refused", func(t *testing.T) {
		r := g.cli("serve")
		want := "sftpgate: another sftpgate is running on " + g.work
		if r.code != 1 || !strings.HasPrefix(r.stderr, want) {
			t.Errorf("second serve: got %s, want exit 1 and %q", r, want)
		}
		if _, err := os.Stat(sock); err != nil {
			t.Errorf("socket of the running daemon after the refusal: %v", err)
		}
	})

	// Upload as bob, with mounts and metrics before, during and after.
	s0 := g.scrape()
	if c, err := g.login("bob", "not-a-token"); err == nil {
		c.Close()
		t.Fatal("login with a malformed token: got no error")
	}
	sc := g.mustSFTP("bob", bobToken)
	s1 := g.scrape()
	for _, c := range []struct {
		name   string
		labels []string
		delta  float64
	}{
		{"sftpgate_logins_total", []string{"result=ok", "reason=none"}, 1},
		{"sftpgate_logins_total", []string{"result=refused", "reason=malformed"}, 1},
		{"sftpgate_logins_total", []string{"result=refused", "reason=expired"}, 0},
		{"sftpgate_sessions_active", nil, 1},
	} {
		if got := testenv.MetricValueT(t, s1, c.name, c.labels...) - testenv.MetricValueT(t, s0, c.name, c.labels...); got != c.delta {
			t.Errorf("%s%v after one good and one bad login: moved by %v, want %v", c.name, c.labels, got, c.delta)
		}
	}

	hello := []byte("hello from ops\n")
	wf, err := sc.Create("/" + personalWS + "/hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wf.Write(hello); err != nil {
		t.Fatal(err)
	}
	if err := wf.Close(); err != nil {
		t.Fatalf("close hello.txt: %v", err)
	}

	const bigSize = 20 << 20 // over the 16 MiB part size: a multipart upload
	big := prngBytes(1, bigSize)
	bf, err := sc.Create("/" + personalWS + "/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < bigSize; off += 1 << 20 {
		if _, err := bf.Write(big[off : off+1<<20]); err != nil {
			t.Fatalf("write big.bin: %v", err)
		}
	}
	row, ok := g.mountRow("bob", "rw")
	if !ok {
		t.Fatalf("mounts during the upload: no rw view of bob")
	}
	if row.Path != filepath.Join(g.mounts, "bob") || row.Sessions != 1 || row.OpenFiles < 1 || row.DirtyBytes < bigSize {
		t.Errorf("mounts during the upload: got %+v, want path %s, 1 session, an open file, at least %d dirty bytes", row, filepath.Join(g.mounts, "bob"), bigSize)
	}
	if tab := g.mustCLI("mounts").stdout; !strings.Contains(tab, "20.0 MiB") || !strings.HasPrefix(tab, "USER") {
		t.Errorf("mounts table during the upload: got %q, want a header and 20.0 MiB dirty", tab)
	}
	sUp := g.scrape()
	if got := testenv.MetricValueT(t, sUp, "sftpgate_writeback_bytes", "state=dirty"); got < bigSize {
		t.Errorf("writeback dirty bytes during the upload: got %v, want at least %d", got, bigSize)
	}
	if got := testenv.MetricValueT(t, sUp, "sftpgate_writeback_files", "state=dirty"); got != 1 {
		t.Errorf("writeback dirty files during the upload: got %v, want 1 (big.bin)", got)
	}
	if err := bf.Close(); err != nil {
		t.Fatalf("close big.bin: %v", err)
	}
	if !waitFor(10*time.Second, 100*time.Millisecond, func() bool {
		row, ok = g.mountRow("bob", "rw")
		return ok && row.DirtyBytes == 0
	}) {
		t.Errorf("mounts after close: got %+v, want 0 dirty bytes", row)
	}
	if row.CleanBytes < bigSize || row.UploadsInFlight != 0 {
		t.Errorf("mounts after close: got %+v, want at least %d clean bytes, no upload in flight", row, bigSize)
	}
	rf, err := sc.Open("/" + personalWS + "/hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(rf); err != nil || !bytes.Equal(got, hello) {
		t.Errorf("read hello.txt over SFTP: got %q, %v, want %q", got, err, hello)
	}
	rf.Close()
	if _, err := sc.Stat("/" + personalWS + "/nope.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat a missing file: got %v, want not exist (S3 errors must reach minio-go intact)", err)
	}
	s2 := g.scrape()
	if got := testenv.MetricValueT(t, s2, "sftpgate_s3_request_errors_total", "method=HEAD", "code=NoSuchKey"); got < 1 {
		t.Errorf("s3 errors{method=HEAD,code=NoSuchKey} after a stat of a missing file: got %v, want at least 1", got)
	}
	if got := testenv.MetricValueT(t, s2, "sftpgate_sftp_download_bytes_total") - testenv.MetricValueT(t, s1, "sftpgate_sftp_download_bytes_total"); got != float64(len(hello)) {
		t.Errorf("sftp download bytes: moved by %v, want %d", got, len(hello))
	}
	upN := float64(bigSize + len(hello))
	if got := testenv.MetricValueT(t, s2, "sftpgate_sftp_upload_bytes_total") - testenv.MetricValueT(t, s1, "sftpgate_sftp_upload_bytes_total"); got != upN {
		t.Errorf("sftp upload bytes: moved by %v, want %v", got, upN)
	}
	if got := testenv.MetricValueT(t, s2, "sftpgate_s3_upload_duration_seconds") - testenv.MetricValueT(t, s1, "sftpgate_s3_upload_duration_seconds"); got != 2 {
		t.Errorf("s3 uploads timed: moved by %v, want 2 (hello.txt with a PUT, big.bin with a multipart upload)", got)
	}
	if got := testenv.MetricValueT(t, s2, "sftpgate_writeback_bytes", "state=dirty"); got != 0 {
		t.Errorf("writeback dirty bytes after close: got %v, want 0", got)
	}
	if dirty, clean := testenv.MetricValueT(t, s2, "sftpgate_writeback_files", "state=dirty"), testenv.MetricValueT(t, s2, "sftpgate_writeback_files", "state=clean"); dirty != 0 || clean != 2 {
		t.Errorf("writeback files after close: got %v dirty, %v clean, want 0 dirty, 2 clean (hello.txt, big.bin)", dirty, clean)
	}
	// Nothing wrote before the upload (no series yet in s1); the kernel
	// splits big.bin into writes of at most 1 MiB.
	if got := testenv.MetricValueT(t, s2, "sftpgate_fuse_operations_total", "op=write", "errno=ok"); got < bigSize>>20+1 {
		t.Errorf("fuse write operations ok after the upload: got %v, want at least %d", got, bigSize>>20+1)
	}
	for _, c := range [][]string{{"op=create", "errno=ok"}, {"op=flush", "errno=ok"}, {"op=lookup", "errno=ENOENT"}} {
		if got := testenv.MetricValueT(t, s2, "sftpgate_fuse_operations_total", c...); got < 1 {
			t.Errorf("fuse operations %v after the upload and a stat of a missing file: got %v, want at least 1", c, got)
		}
	}
	for _, name := range []string{"sftpgate_janitor_removed_files_total", "sftpgate_janitor_removed_bytes_total"} {
		if got := testenv.MetricValueT(t, s2, name); got != 0 {
			t.Errorf("%s: got %v, want 0 (lifespan 15m)", name, got)
		}
	}
	if got := testenv.MetricValueT(t, s2, "sftpgate_views_mounted", "mode=rw"); got != 1 {
		t.Errorf("rw views mounted: got %v, want 1 (bob)", got)
	}
	for _, name := range []string{"sftpgate_s3_requests_total", "sftpgate_s3_request_errors_total", "sftpgate_open_files", "sftpgate_writeback_uploads_in_flight", "go_goroutines", "process_open_fds"} {
		if _, ok := s2[name]; !ok {
			t.Errorf("scrape: no family %s", name)
		}
	}
	bigKey := personalKey("bob", "big.bin")
	if got, err := getObject(g.minio, g.personalBucket, bigKey); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("bob/big.bin in MinIO: got %d bytes, %v, want the %d bytes written", len(got), err, bigSize)
	}

	t.Run("read-only admin mount", func(t *testing.T) {
		r := g.mustCLI("mount", "-u", "bob")
		p := strings.TrimSpace(r.stdout)
		if want := filepath.Join(g.mounts, ".readonly", "bob"); p != want {
			t.Fatalf("mount -u bob: got %q, want %q", p, want)
		}
		entries, err := os.ReadDir(p)
		if err != nil || len(entries) != 1 || entries[0].Name() != personalWS {
			t.Errorf("ls %s: got %v, %v, want [%s]", p, entries, err, personalWS)
		}
		if got, err := os.ReadFile(filepath.Join(p, personalWS, "hello.txt")); err != nil || !bytes.Equal(got, hello) {
			t.Errorf("cat hello.txt: got %q, %v, want %q", got, err, hello)
		}
		if err := os.WriteFile(filepath.Join(p, personalWS, "touched"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
			t.Errorf("touch in the read-only view: got %v, want EROFS", err)
		}
		if err := os.Remove(filepath.Join(p, personalWS, "hello.txt")); !errors.Is(err, syscall.EROFS) {
			t.Errorf("rm in the read-only view: got %v, want EROFS", err)
		}
		if row, ok := g.mountRow("bob", "ro"); !ok || row.HeldUntil == nil || row.HeldUntil.Before(time.Now().Add(59*time.Minute)) {
			t.Errorf("mounts: got %+v (found %v), want bob's ro view held about 1h", row, ok)
		}
		if got := testenv.MetricValueT(t, g.scrape(), "sftpgate_fuse_operations_total", "op=create", "errno=EROFS"); got < 1 {
			t.Errorf("fuse create operations refused with EROFS: got %v, want at least 1", got)
		}
		r = g.mustCLI("unmount", "-u", "bob")
		if !strings.Contains(r.stdout, "view unmounted") {
			t.Errorf("unmount -u bob: got stdout %q, want it to say the view is unmounted", r.stdout)
		}
		if row, ok := g.mountRow("bob", "ro"); ok {
			t.Errorf("mounts after unmount: got %+v, want no read-only view of bob", row)
		}
		if got := mountsUnder(t, p); len(got) != 0 {
			t.Errorf("mounts at %s when unmount returned: got %v, want none", p, got)
		}
	})

	t.Run("read-write admin mount", func(t *testing.T) {
		r := g.mustCLI("mount", "-u", "bob", "--rw", "--for", "10m")
		p := strings.TrimSpace(r.stdout)
		if want := filepath.Join(g.mounts, "bob"); p != want {
			t.Fatalf("mount -u bob --rw: got %q, want %q", p, want)
		}
		if !strings.Contains(r.stderr, "shared with 1 open SFTP session") {
			t.Errorf("mount -u bob --rw: got stderr %q, want it to say the view is shared with the session", r.stderr)
		}
		if err := os.WriteFile(filepath.Join(p, personalWS, "touched"), []byte("admin"), 0o644); err != nil {
			t.Errorf("touch in the rw view: %v", err)
		}
		if err := os.Remove(filepath.Join(p, personalWS, "hello.txt")); err != nil {
			t.Errorf("rm in the rw view: %v", err)
		}
		if !waitFor(10*time.Second, 100*time.Millisecond, func() bool {
			got, err := getObject(g.minio, g.personalBucket, personalKey("bob", "touched"))
			return err == nil && string(got) == "admin"
		}) {
			t.Errorf("bob/touched: not in MinIO 10s after close")
		}
		r = g.cli("unmount", "-u", "bob")
		if r.code != 1 || !strings.Contains(r.stderr, "in use by 1 SFTP session(s) of bob") {
			t.Errorf("unmount while bob has a session: got %s, want exit 1 and a refusal", r)
		}
	})

	t.Run("sessions kill", func(t *testing.T) {
		rows := g.sessionRows()
		if len(rows) != 1 || rows[0].User != "bob" || !strings.HasPrefix(rows[0].Remote, "127.0.0.1:") || rows[0].BytesUp != int64(upN) || rows[0].Op == "" {
			t.Fatalf("sessions: got %+v, want bob's session from 127.0.0.1 with %v bytes up and an operation", rows, upN)
		}
		if tab := g.mustCLI("sessions").stdout; !strings.Contains(tab, rows[0].ID) {
			t.Errorf("sessions table: got %q, want the id %s", tab, rows[0].ID)
		}
		r := g.mustCLI("sessions", "kill", rows[0].ID)
		if want := "session " + rows[0].ID + " closed\n"; r.stdout != want {
			t.Errorf("sessions kill: got %q, want %q", r.stdout, want)
		}
		if !waitFor(10*time.Second, 100*time.Millisecond, func() bool {
			_, err := sc.Stat("/" + personalWS)
			return err != nil
		}) {
			t.Errorf("the killed session still answers 10s later")
		}
		if !waitFor(10*time.Second, 100*time.Millisecond, func() bool { return len(g.sessionRows()) == 0 }) {
			t.Errorf("sessions after kill: got %+v, want none", g.sessionRows())
		}
		if got, err := getObject(g.minio, g.personalBucket, bigKey); err != nil || !bytes.Equal(got, big) {
			t.Errorf("bob/big.bin after the kill: got %d bytes, %v, want it intact", len(got), err)
		}
		if r := g.cli("sessions", "kill", rows[0].ID); r.code != 1 || !strings.Contains(r.stderr, "no session") {
			t.Errorf("killing it again: got %s, want exit 1, no session", r)
		}
		r = g.mustCLI("unmount", "-u", "bob") // no session uses the view any more
		if !strings.Contains(r.stdout, "view unmounted") {
			t.Errorf("unmount -u bob (rw, no session): got stdout %q, want it to say the view is unmounted", r.stdout)
		}
		if got := mountsUnder(t, filepath.Join(g.mounts, "bob")); len(got) != 0 {
			t.Errorf("bob's view when unmount returned: got %v, want it unmounted", got)
		}
		s3 := g.scrape()
		if got := testenv.MetricValueT(t, s3, "sftpgate_sessions_active"); got != 0 {
			t.Errorf("active sessions after the kill: got %v, want 0", got)
		}
		if got := testenv.MetricValueT(t, s3, "sftpgate_sftp_upload_bytes_total") - testenv.MetricValueT(t, s0, "sftpgate_sftp_upload_bytes_total"); got != upN {
			t.Errorf("sftp upload bytes after the session ended: moved by %v, want %v", got, upN)
		}
	})

	t.Run("admin mount expires", func(t *testing.T) {
		if !waitFor(time.Until(carolStart.Add(8*time.Second)), 200*time.Millisecond, func() bool {
			row, ok := g.mountRow("carol", "ro")
			return !ok || row.HeldUntil == nil
		}) {
			t.Errorf("carol's admin mount still held 8s after a 3s mount")
		}
		if !waitFor(time.Until(carolStart.Add(10*time.Second)), 200*time.Millisecond, func() bool {
			_, ok := g.mountRow("carol", "ro")
			return !ok && len(mountsUnder(t, carolPath)) == 0
		}) {
			t.Errorf("carol's view still mounted 10s after a 3s mount (it goes when the mount expires, not after the idle delay)")
		}
	})

	g.stop() // cleanup checks its exit code (0) and that no mount is left
	r = g.cli("mounts")
	want := "sftpgate: no daemon is running on " + g.work + " (socket " + sock + ")\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("mounts after stop: got %s, want exit 1 and %q", r, want)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket after stop: got %v, want it removed", err)
	}
}
