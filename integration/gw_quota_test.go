package integration

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pkg/sftp"
)

// uploadBytes uploads size bytes of the stream for seed to path and
// returns the first error of the create, the writes or the close.
func uploadBytes(sc *sftp.Client, path string, seed uint64, size int) error {
	f, err := sc.Create(path)
	if err != nil {
		return err
	}
	_, werr := f.ReadFrom(bytes.NewReader(prngBytes(seed, size)))
	cerr := f.Close()
	return errors.Join(werr, cerr)
}

// quotaUsed returns the "used" figures the CLI prints for login.
func quotaUsed(t *testing.T, g *gateway, login string) string {
	t.Helper()
	out := g.mustCLI("admin", "user", "quota", "-u", login).stdout
	var used []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[1] == "used" {
			used = append(used, f[0]+f[2])
		}
	}
	return strings.Join(used, " ")
}

// TestGatewayQuota: quota: the upload that crosses it fails and leaves no
// object, `df` shows the numbers; deletes free room, shared workspaces are
// not counted, --recompute sees objects put behind the gateway's back.
func TestGatewayQuota(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS, commonWS)
	g.mustCLI("admin", "user", "quota", "-u", "alice", "--bytes", "3MiB", "--files", "10")
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"-u", "alice", "--bytes", "12XB"}, 2},
		{[]string{"-u", "alice", "--files", "-3"}, 2},
		{[]string{"--bytes", "1MiB"}, 2},
		{[]string{"-u", "nobody", "--bytes", "1MiB"}, 1},
		{[]string{"-u", "nobody"}, 1},
	} {
		if r := g.cli(append([]string{"admin", "user", "quota"}, tt.args...)...); r.code != tt.code {
			t.Errorf("admin user quota %s: got %s, want exit %d", strings.Join(tt.args, " "), r, tt.code)
		}
	}
	sc := g.mustSFTP("alice", tok)
	const mib = 1 << 20

	if err := uploadBytes(sc, "/personal-files/a.bin", 1, 2*mib); err != nil {
		t.Fatalf("upload 2 MiB under a 3 MiB quota: %v", err)
	}
	if got, want := quotaUsed(t, g, "alice"), fmt.Sprintf("bytes:%d files:1", 2*mib); got != want {
		t.Errorf("usage after the first upload: got %q, want %q", got, want)
	}

	err := uploadBytes(sc, "/personal-files/b.bin", 2, 2*mib)
	t.Logf("refused upload: %v", err)
	var se *sftp.StatusError
	if !errors.As(err, &se) || se.Code != 4 || !strings.Contains(se.Error(), "quota exceeded") {
		t.Fatalf("upload crossing the quota: got %v, want SSH_FX_FAILURE (4) \"quota exceeded\"", err)
	}
	if _, err := statObject(g.minio, g.personalBucket, personalKey("alice", "b.bin")); !isNotFound(err) {
		t.Errorf("object of the refused upload: got %v, want none", err)
	}

	// The same through the mount: EDQUOT, no object; statfs shows the quota.
	view := filepath.Join(g.mounts, "alice", personalWS)
	if err := os.WriteFile(filepath.Join(view, "m.bin"), prngBytes(6, 2*mib), 0o644); !errors.Is(err, syscall.EDQUOT) {
		t.Errorf("write crossing the quota on the mount: got %v, want EDQUOT", err)
	}
	if _, err := statObject(g.minio, g.personalBucket, personalKey("alice", "m.bin")); !isNotFound(err) {
		t.Errorf("object of the refused write on the mount: got %v, want none", err)
	}
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(view, &sfs); err != nil {
		t.Fatal(err)
	} else if total, free := sfs.Blocks*uint64(sfs.Frsize), sfs.Bavail*uint64(sfs.Frsize); total != 3*mib || free != mib {
		t.Errorf("statfs on the mount: got total %d, free %d, want %d, %d", total, free, 3*mib, mib)
	}

	// df, as OpenSSH's sftp shows it (KiB): size, used, available.
	local := t.TempDir()
	out, code := g.sftpBatch(t, "alice", tok, local, "df /personal-files\ndf -i /personal-files")
	if code != 0 {
		t.Fatalf("sftp df: exit %d\n%s", code, out)
	}
	t.Logf("sftp df:\n%s", out)
	if !dfHas(out, "3072", "2048", "1024") || !dfHas(out, "10", "1", "9") {
		t.Errorf("sftp df: got\n%s\nwant 3072 2048 1024 (KiB) and 10 1 9 (files)", out)
	}

	// A shared workspace is not counted.
	if err := uploadBytes(sc, "/common-files/big.bin", 3, 2*mib); err != nil {
		t.Fatalf("upload to a shared workspace: %v", err)
	}
	if got, want := quotaUsed(t, g, "alice"), fmt.Sprintf("bytes:%d files:1", 2*mib); got != want {
		t.Errorf("usage after a shared upload: got %q, want %q", got, want)
	}

	// A delete frees room.
	if err := sc.Remove("/personal-files/a.bin"); err != nil {
		t.Fatal(err)
	}
	if err := uploadBytes(sc, "/personal-files/b.bin", 2, 2*mib); err != nil {
		t.Fatalf("upload after a delete freed room: %v", err)
	}
	// Moving out of the personal workspace frees room too.
	if err := sc.Rename("/personal-files/b.bin", "/common-files/b.bin"); err != nil {
		t.Fatal(err)
	}
	if got := quotaUsed(t, g, "alice"); got != "bytes:0 files:0" {
		t.Errorf("usage after moving out: got %q, want bytes:0 files:0", got)
	}

	// So does moving a directory out (its usage is listed again).
	if err := sc.Mkdir("/personal-files/d1"); err != nil {
		t.Fatal(err)
	}
	if err := uploadBytes(sc, "/personal-files/d1/f.bin", 10, 1000); err != nil {
		t.Fatal(err)
	}
	if got := quotaUsed(t, g, "alice"); got != "bytes:1000 files:1" {
		t.Errorf("usage after an upload into a directory: got %q, want bytes:1000 files:1", got)
	}
	if err := sc.Rename("/personal-files/d1", "/common-files/d1"); err != nil {
		t.Fatal(err)
	}
	if st, err := sc.StatVFS("/personal-files"); err != nil {
		t.Fatal(err)
	} else if used, files := (st.Blocks-st.Bfree)*st.Frsize, st.Files-st.Ffree; used != 0 || files != 0 {
		t.Errorf("statvfs after moving a directory out: got used %d, files %d, want 0, 0", used, files)
	}

	// Objects put straight into the bucket count after --recompute.
	putObject(t, g.minio, g.personalBucket, personalKey("alice", "x/extra.bin"), make([]byte, mib/2))
	putObject(t, g.minio, g.personalBucket, personalKey("bob", "other.bin"), make([]byte, mib))
	g.mustCLI("admin", "user", "quota", "-u", "alice", "--recompute")
	st, err := sc.StatVFS("/personal-files")
	if err != nil {
		t.Fatal(err)
	}
	if total, used := st.Blocks*st.Frsize, (st.Blocks-st.Bfree)*st.Frsize; total != 3*mib || used != mib/2 || st.Files-st.Ffree != 1 {
		t.Errorf("statvfs after --recompute: got total %d, used %d, files %d, want %d, %d, 1", total, used, st.Files-st.Ffree, 3*mib, mib/2)
	}
	if got, want := quotaUsed(t, g, "alice"), fmt.Sprintf("bytes:%d files:1", mib/2); got != want {
		t.Errorf("usage after --recompute: got %q, want %q", got, want)
	}

	// The file limit holds as well; "none" lifts the byte limit.
	g.mustCLI("admin", "user", "quota", "-u", "alice", "--bytes", "none", "--files", "2")
	if err := uploadBytes(sc, "/personal-files/c.bin", 4, 10); err != nil {
		t.Fatalf("second file under a 2-file quota: %v", err)
	}
	if err := uploadBytes(sc, "/personal-files/d.bin", 5, 10); err == nil || !strings.Contains(err.Error(), "quota exceeded") {
		t.Errorf("third file under a 2-file quota: got %v, want \"quota exceeded\"", err)
	}
	if _, err := statObject(g.minio, g.personalBucket, personalKey("alice", "d.bin")); !isNotFound(err) {
		t.Errorf("object of the refused file: got %v, want none", err)
	}

	// An object in alice's space counts for alice, whoever writes it: bob
	// reaches the whole bucket through a workspace that is not personal.
	g.mustCLI("admin", "workspace", "create", "--slug", "homes", "--bucket", g.personalBucket)
	btok := g.addUser("bob", "homes")
	bsc := g.mustSFTP("bob", btok)
	g.mustCLI("admin", "user", "quota", "-u", "alice", "--files", "none")
	if err := uploadBytes(bsc, "/homes/alice/from-bob.bin", 7, 1000); err != nil {
		t.Fatalf("bob's upload into alice's space: %v", err)
	}
	if got, want := quotaUsed(t, g, "alice"), fmt.Sprintf("bytes:%d files:3", mib/2+10+1000); got != want {
		t.Errorf("usage after bob wrote into alice's space: got %q, want %q", got, want)
	}
	g.mustCLI("admin", "user", "quota", "-u", "alice", "--bytes", strconv.Itoa(mib/2+10+1500))
	if err := uploadBytes(bsc, "/homes/alice/big-from-bob.bin", 8, 1000); err == nil || !strings.Contains(err.Error(), "quota exceeded") {
		t.Errorf("bob's upload past alice's quota: got %v, want \"quota exceeded\"", err)
	}
	if err := uploadBytes(bsc, "/homes/bob-own.bin", 9, 1000); err != nil {
		t.Errorf("bob's upload outside any personal space: %v", err)
	}
	if err := bsc.Remove("/homes/alice/from-bob.bin"); err != nil {
		t.Fatal(err)
	}
	if got, want := quotaUsed(t, g, "alice"), fmt.Sprintf("bytes:%d files:2", mib/2+10); got != want {
		t.Errorf("usage after bob removed his file from alice's space: got %q, want %q", got, want)
	}
}

// dfHas reports whether a line of out holds the fields want, in order, as
// its first fields.
func dfHas(out string, want ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= len(want) && strings.Join(f[:len(want)], " ") == strings.Join(want, " ") {
			return true
		}
	}
	return false
}
