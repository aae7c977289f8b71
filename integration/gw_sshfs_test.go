package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestGatewaySSHFS mounts the gateway with sshfs, copies a tree in with
// cp, and compares it with diff -r: through the same sshfs mount, through
// a fresh sshfs mount, through the server's own FUSE view, and with the
// objects in MinIO.
func TestGatewaySSHFS(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)

	src := filepath.Join(t.TempDir(), "src")
	files := map[string]int64{
		"top.bin":               9*mib + 3,
		"z.txt":                 12,
		"empty.txt":             0,
		"a/one.txt":             1,
		"a/b/two.bin":           mib + 17,
		"a/b/c/deep.bin":        3 * mib,
		"a/b/c/d/e/f/leaf.txt":  4097,
		"with space/name é.txt": 100,
	}
	seed := uint64(300)
	for p, size := range files {
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		seed++
		writeLocal(t, filepath.Join(src, p), seed, size)
	}
	if err := os.MkdirAll(filepath.Join(src, "x", "emptydir"), 0o755); err != nil {
		t.Fatal(err)
	}

	mnt := g.sshfs(t, "alice", tok)
	dst := filepath.Join(mnt, personalWS, "tree")
	runCommand(t, "", nil, "cp", "-r", src, dst)
	if out, code, err := execCommand("", nil, "diff", "-r", src, dst); err != nil || code != 0 {
		t.Errorf("diff -r through the same sshfs mount: exit %d, %v\n%s", code, err, out)
	}

	fresh := g.sshfs(t, "alice", tok)
	if out, code, err := execCommand("", nil, "diff", "-r", src, filepath.Join(fresh, personalWS, "tree")); err != nil || code != 0 {
		t.Errorf("diff -r through a fresh sshfs mount: exit %d, %v\n%s", code, err, out)
	}
	if out, code, err := execCommand("", nil, "diff", "-r", src, filepath.Join(g.mounts, "alice", personalWS, "tree")); err != nil || code != 0 {
		t.Errorf("diff -r with the server's view %s: exit %d, %v\n%s", g.mounts, code, err, out)
	}
	for p, size := range files {
		key := personalKey("alice", "tree/"+p)
		sum, n, _ := objectSum(t, g.minio, g.personalBucket, key)
		if want := fileSum(t, filepath.Join(src, p)); n != size || sum != want {
			t.Errorf("object %s: got %d bytes sha256 %s, want %d bytes %s", key, n, sum, size, want)
		}
	}
	if _, err := statObject(g.minio, g.personalBucket, personalKey("alice", "tree/x/emptydir/")); err != nil {
		t.Errorf("empty directory marker tree/x/emptydir/: %v", err)
	}
}

// TestGatewaySSHFSPasswordStdin mounts with the plain documented command,
// `sshfs -o password_stdin`: OpenSSH tries keyboard-interactive first, and
// sshfs feeds the password only once it has seen a prompt ending in
// "assword:".
func TestGatewaySSHFSPasswordStdin(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)
	mnt := g.sshfs(t, "alice", tok)
	entries, err := os.ReadDir(mnt)
	if err != nil || len(entries) != 1 || entries[0].Name() != personalWS {
		t.Errorf("ls the sshfs mount: got %v, %v, want [%s]", entries, err, personalWS)
	}
}

// sshfs mounts the gateway's / as user on a new directory, the token given
// on stdin, and unmounts it in cleanup (before the daemon is stopped).
// extra are more -o options.
func (g *gateway) sshfs(t testing.TB, user, token string, extra ...string) string {
	t.Helper()
	g.secret(token)
	mnt := filepath.Join(t.TempDir(), "sshfs")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := strings.Join([]string{
		"password_stdin",
		"StrictHostKeyChecking=no",
		"UserKnownHostsFile=/dev/null",
		"PubkeyAuthentication=no",
		"ConnectTimeout=30",
		"LogLevel=ERROR",
	}, ",")
	if len(extra) > 0 {
		opts += "," + strings.Join(extra, ",")
	}
	out, code, err := execCommand(token+"\n", nil, "sshfs", "-p", strconv.Itoa(g.port), "-o", opts, user+"@127.0.0.1:/", mnt)
	if err != nil || code != 0 {
		t.Fatalf("sshfs: exit %d, %v\n%s", code, err, out)
	}
	t.Cleanup(func() {
		var err error
		for i := 0; i < 20; i++ {
			var out string
			var code int
			out, code, err = execCommand("", nil, "fusermount3", "-u", mnt)
			if err == nil && code == 0 {
				break
			}
			err = &exec2Error{out: out, code: code}
			time.Sleep(250 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("fusermount3 -u %s: %v", mnt, err)
		}
		for _, mp := range mountsUnder(t, mnt) {
			t.Errorf("sshfs mount left behind: %s", mp)
			lazyUnmount(t, mp)
		}
	})
	if !waitFor(10*time.Second, 50*time.Millisecond, func() bool { return len(mountsUnder(t, mnt)) == 1 }) {
		t.Fatalf("sshfs exited 0 but %s is not a mount point", mnt)
	}
	return mnt
}

// exec2Error describes a failed external command.
type exec2Error struct {
	out  string
	code int
}

func (e *exec2Error) Error() string {
	return "exit " + strconv.Itoa(e.code) + ": " + strings.TrimSpace(e.out)
}
