package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// rclone runs the rclone client against the gateway as user, with the
// remote "gw" configured through the environment (token obscured as
// rclone wants), and returns its output and exit code.
func (g *gateway) rclone(t *testing.T, user, token string, args ...string) (string, int) {
	t.Helper()
	g.secret(token)
	obscured, err := exec.Command("rclone", "obscure", token).Output()
	if err != nil {
		t.Fatalf("rclone obscure: %v", err)
	}
	env := []string{
		"RCLONE_CONFIG=/dev/null",
		"RCLONE_CONFIG_GW_TYPE=sftp",
		"RCLONE_CONFIG_GW_HOST=127.0.0.1",
		"RCLONE_CONFIG_GW_PORT=" + strconv.Itoa(g.port),
		"RCLONE_CONFIG_GW_USER=" + user,
		"RCLONE_CONFIG_GW_PASS=" + strings.TrimSpace(string(obscured)),
		"RCLONE_CONFIG_GW_SHELL_TYPE=unix",
	}
	out, code, err := execCommand("", env, "rclone", append([]string{"--contimeout", "30s", "--low-level-retries", "1", "--retries", "1"}, args...)...)
	if err != nil {
		t.Fatalf("rclone %v: %v\n%s", args, err, out)
	}
	return out, code
}

// TestGatewayRcloneCheck: rclone copies a tree to the gateway, finds the
// hash commands (md5sum, sha1sum over SSH) and `rclone check` compares by
// hash: a file changed in the bucket with its size kept is found.
func TestGatewayRcloneCheck(t *testing.T) {
	if _, err := exec.LookPath("rclone"); err != nil {
		t.Fatalf("rclone not installed (make tools installs it): %v", err)
	}
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)
	src := t.TempDir()
	files := map[string]int64{"a.bin": 1 << 20, "dir/b.bin": 300 << 10, "dir/sub/c.txt": 17}
	for name, size := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		writeLocal(t, p, uint64(size), size)
	}
	dst := "gw:/" + personalWS + "/tree"
	if out, code := g.rclone(t, "alice", tok, "copy", src, dst); code != 0 {
		t.Fatalf("rclone copy: exit %d\n%s", code, out)
	}
	out, code := g.rclone(t, "alice", tok, "check", "-v", src, dst)
	if code != 0 || !strings.Contains(out, "0 differences found") {
		t.Fatalf("rclone check after the copy: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "--size-only") || strings.Contains(out, "No common hash") {
		t.Fatalf("rclone check did not use hashes:\n%s", out)
	}
	// Same size, other bytes: only a hash can tell.
	key := personalKey("alice", "tree/dir/sub/c.txt")
	putObject(t, g.minio, g.personalBucket, key, []byte("SEVENTEEN BYTES!!"))
	out, code = g.rclone(t, "alice", tok, "check", src, dst)
	if code == 0 || !strings.Contains(out, "1 differences found") {
		t.Fatalf("rclone check after the object changed (same size): exit %d, want 1 difference\n%s", code, out)
	}
}

// TestGatewayChecksumOpenSSH: `ssh -p PORT user@host sha256sum /ws/file`
// with OpenSSH answers what sha256sum gives for the local file.
func TestGatewayChecksumOpenSSH(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)
	g.secret(tok)
	local := filepath.Join(t.TempDir(), "report file.bin")
	writeLocal(t, local, 77, 3<<20+5)
	sc := g.mustSFTP("alice", tok)
	src, err := os.Open(local)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := sc.Create("/" + personalWS + "/report file.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dst.ReadFrom(src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	want, err := exec.Command("sha256sum", local).Output()

	if err != nil {
		t.Fatal(err)
	}
	wantSum := strings.Fields(string(want))[0]
	out, code, err := execCommand("", []string{"SSHPASS=" + tok}, "sshpass", "-e",
		"ssh", "-p", strconv.Itoa(g.port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "PubkeyAuthentication=no", "-o", "LogLevel=ERROR", "alice@127.0.0.1",
		"sha256sum", "'/"+personalWS+"/report file.bin'")
	if err != nil || code != 0 {
		t.Fatalf("ssh sha256sum: exit %d, %v\n%s", code, err, out)
	}
	if got := strings.Fields(out); len(got) < 1 || got[0] != wantSum {
		t.Fatalf("ssh sha256sum: got %q, want %s", out, wantSum)
	}
}
