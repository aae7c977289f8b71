package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGatewayCacheDirPlanted: another local user (nobody) creates the
// daemon's <tmpDir>/sftpgate, world-writable, and plants a journal in it
// naming a file of bob's. The daemon refuses to start with one line naming
// the directory, its owner and the fix, and uploads nothing; once the fix
// is applied it starts, moves the planted journal (nobody's file) to
// conflicts/ and still uploads nothing.
func TestGatewayCacheDirPlanted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another local user")
	}
	t.Parallel()
	g := startGateway(t, gwOptions{})
	if code := g.stop(); code != 0 {
		t.Fatalf("first stop: got exit %d, want 0", code)
	}

	// tmpDir becomes a shared temporary directory, like /tmp.
	cache := filepath.Join(g.tmp, "sftpgate")
	if err := os.RemoveAll(cache); err != nil {
		t.Fatal(err)
	}
	for dir, mode := range map[string]os.FileMode{filepath.Dir(g.dir): 0o755, g.dir: 0o755, g.tmp: 0o1777} {
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
	}
	asNobody := func(args ...string) {
		t.Helper()
		cmd := exec.Command("setpriv", append([]string{"--reuid=nobody", "--regid=nogroup", "--clear-groups"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v as nobody: %v: %s", args, err, out)
		}
	}
	asNobody("mkdir", "-m", "0777", cache)
	const id = "00000000000000000000beef"
	j, err := json.Marshal(map[string]any{"bucket": g.personalBucket, "key": "bob/planted.txt", "size": 7,
		"mtime": time.Now(), "dirty": true, "complete": true})
	if err != nil {
		t.Fatal(err)
	}
	asNobody("sh", "-c", `printf '%s' "$1" > "$2/`+id+`.json" && printf planted > "$2/`+id+`.data"`, "sh", string(j), cache)

	g.start()
	select {
	case <-g.done:
	case <-time.After(daemonStartTimeout):
		t.Fatalf("sftpgate serve still running %v after start, want it to refuse the cache directory:\n%s", daemonStartTimeout, g.logs())
	}
	if g.exit == 0 {
		t.Errorf("sftpgate serve: got exit 0, want a refusal")
	}
	logs := g.logs()
	var line string
	for l := range strings.Lines(logs) {
		if strings.Contains(l, "unsafe cache directory") {
			line = l
		}
	}
	t.Logf("refusal: %s", line)
	for _, want := range []string{"sftpgate: ", cache, "owned by nobody", "mode 0777", "chown root " + cache, "chmod 0700 " + cache} {
		if !strings.Contains(line, want) {
			t.Errorf("refusal line %q: want it to contain %q; log:\n%s", line, want, tail(logs, 20))
		}
	}
	if _, err := statObject(g.minio, g.personalBucket, "bob/planted.txt"); !isNotFound(err) {
		t.Errorf("bob/planted.txt after the refused start: got %v, want no such object", err)
	}

	// The fix the message gives.
	runCommand(t, "", nil, "chown", "root", cache)
	runCommand(t, "", nil, "chmod", "0700", cache)
	g.start()
	g.waitReady()
	for _, n := range []string{id + ".json", id + ".data"} {
		if _, err := os.Lstat(filepath.Join(cache, "conflicts", n)); err != nil {
			t.Errorf("planted %s after the fixed start: %v, want it in conflicts/", n, err)
		}
	}
	if _, err := statObject(g.minio, g.personalBucket, "bob/planted.txt"); !isNotFound(err) {
		t.Errorf("bob/planted.txt after the fixed start: got %v, want no such object", err)
	}
	if !strings.Contains(g.logs(), "journal not trusted; moved to conflicts") {
		t.Errorf("no log line of the planted journal moved to conflicts; log:\n%s", tail(g.logs(), 20))
	}
}
