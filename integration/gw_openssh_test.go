package integration

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGatewayOpenSSH drives the gateway with OpenSSH's sftp in batch mode,
// the password given by sshpass: put, get, reput, rename, mkdir, rmdir, rm,
// ls, and the exit codes of good and failing batches.
func TestGatewayOpenSSH(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS, commonWS+":ro")
	local := t.TempDir()
	writeLocal(t, filepath.Join(local, "small.txt"), 1, 1000)
	writeLocal(t, filepath.Join(local, "big.bin"), 2, 20*mib)
	writeLocal(t, filepath.Join(local, "whole.bin"), 3, 16*mib)
	writeLocal(t, filepath.Join(local, "part.bin"), 3, 7*mib) // the first 7 MiB of whole.bin
	key := func(p string) string { return personalKey("alice", p) }

	t.Run("put get rename rm mkdir rmdir ls", func(t *testing.T) {
		out, code := g.sftpBatch(t, "alice", tok, local, `
cd /personal-files
mkdir d
put small.txt d/small.txt
put big.bin
ls -l
rename big.bin d/big.bin
ls d
get d/big.bin big.back
get d/small.txt small.back
rm d/small.txt
mkdir gone
rmdir gone
`)
		if code != 0 {
			t.Fatalf("sftp -b: got exit %d, want 0\n%s", code, out)
		}
		for _, want := range []string{"big.bin", "small.txt"} {
			if !strings.Contains(out, want) {
				t.Errorf("ls output: got %q, want it to list %s", out, want)
			}
		}
		if got, want := fileSum(t, filepath.Join(local, "big.back")), prngSum(2, 20*mib); got != want {
			t.Errorf("get big.bin: got sha256 %s, want %s", got, want)
		}
		if got, want := fileSum(t, filepath.Join(local, "small.back")), prngSum(1, 1000); got != want {
			t.Errorf("get small.txt: got sha256 %s, want %s", got, want)
		}
		if sum, n, _ := objectSum(t, g.minio, g.personalBucket, key("d/big.bin")); sum != prngSum(2, 20*mib) {
			t.Errorf("object d/big.bin: got %d bytes sha256 %s, want the 20 MiB put", n, sum)
		}
		for _, k := range []string{"big.bin", "d/small.txt", "gone/"} {
			if _, err := statObject(g.minio, g.personalBucket, key(k)); !isNotFound(err) {
				t.Errorf("object %s: got %v, want it gone", k, err)
			}
		}
	})

	t.Run("reput", func(t *testing.T) {
		out, code := g.sftpBatch(t, "alice", tok, local, `
cd /personal-files
put part.bin whole.bin
`)
		if code != 0 {
			t.Fatalf("put the partial file: got exit %d, want 0\n%s", code, out)
		}
		if _, n, _ := objectSum(t, g.minio, g.personalBucket, key("whole.bin")); n != 7*mib {
			t.Fatalf("after the partial put: got %d bytes, want %d", n, 7*mib)
		}
		out, code = g.sftpBatch(t, "alice", tok, local, `
cd /personal-files
reput whole.bin
`)
		if code != 0 {
			t.Fatalf("reput: got exit %d, want 0\n%s", code, out)
		}
		sum, n, _ := objectSum(t, g.minio, g.personalBucket, key("whole.bin"))
		if want := prngSum(3, 16*mib); n != 16*mib || sum != want {
			t.Errorf("object after reput: got %d bytes sha256 %s, want %d bytes %s", n, sum, 16*mib, want)
		}
	})

	for _, tt := range []struct {
		name, batch string
	}{
		{"get of a missing file", "get /personal-files/missing.txt"},
		{"rm of a missing file", "rm /personal-files/missing.txt"},
		{"put into a read-only workspace", "put small.txt /common-files/small.txt"},
		{"mkdir at the root", "mkdir /newdir"},
		{"rmdir of a non-empty directory", "rmdir /personal-files/d"},
	} {
		t.Run("failing batch/"+tt.name, func(t *testing.T) {
			out, code := g.sftpBatch(t, "alice", tok, local, tt.batch)
			if code == 0 {
				t.Errorf("sftp -b %q: got exit 0, want non-zero\n%s", tt.batch, out)
			}
		})
	}

	t.Run("wrong token", func(t *testing.T) {
		wrong := randomToken(t)
		g.secret(wrong)
		out, code := g.sftpBatch(t, "alice", wrong, local, "ls /")
		if code == 0 {
			t.Errorf("sftp with a wrong token: got exit 0, want non-zero\n%s", out)
		}
	})
}

// TestGatewayOpenSSHReputExpired resumes with reput after the gateway's
// local copy of the partial file has expired (tmpFilesLifespan 1s): the
// object must still end up whole.
func TestGatewayOpenSSHReputExpired(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{lifespan: "1s"})
	tok := g.addUser("alice", personalWS)
	local := t.TempDir()
	writeLocal(t, filepath.Join(local, "whole.bin"), 4, 13*mib)
	writeLocal(t, filepath.Join(local, "part.bin"), 4, 6*mib+12345)

	if out, code := g.sftpBatch(t, "alice", tok, local, "put part.bin /personal-files/whole.bin"); code != 0 {
		t.Fatalf("put the partial file: got exit %d, want 0\n%s", code, out)
	}
	if !waitFor(20*time.Second, 200*time.Millisecond, func() bool { return dirBytes(g.tmp) < mib }) {
		t.Fatalf("tmpDir still holds %d bytes 20s after the upload, want the local copy expired", dirBytes(g.tmp))
	}
	if out, code := g.sftpBatch(t, "alice", tok, local, "reput whole.bin /personal-files/whole.bin"); code != 0 {
		t.Fatalf("reput: got exit %d, want 0\n%s", code, out)
	}
	sum, n, _ := objectSum(t, g.minio, g.personalBucket, personalKey("alice", "whole.bin"))
	if want := prngSum(4, 13*mib); n != 13*mib || sum != want {
		t.Errorf("object after reput: got %d bytes sha256 %s, want %d bytes %s", n, sum, 13*mib, want)
	}
}

// dirBytes is the total size of the regular files under dir (allocated
// blocks, as the cache files are sparse).
func dirBytes(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			}
		}
		return nil
	})
	return total
}

// sftpBatch runs OpenSSH sftp with the batch (after `lcd dir`) as user,
// the token given to sshpass, and returns the output and exit code.
func (g *gateway) sftpBatch(t testing.TB, user, token, dir, batch string) (string, int) {
	t.Helper()
	return g.sftpBatchWith(t, user, token, dir, batch)
}

// sftpBatchWith is sftpBatch with more options for sftp before the
// destination (-B, -R, -o Ciphers=…).
func (g *gateway) sftpBatchWith(t testing.TB, user, token, dir, batch string, opts ...string) (string, int) {
	t.Helper()
	g.secret(token)
	bf, err := os.CreateTemp(t.TempDir(), "batch-")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bf.WriteString("lcd " + dir + "\n" + strings.TrimSpace(batch) + "\n"); err != nil {
		t.Fatal(err)
	}
	bf.Close()
	args := []string{"-e",
		"sftp", "-o", "BatchMode=no", "-b", bf.Name(),
		"-P", strconv.Itoa(g.port),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "PubkeyAuthentication=no", "-o", "LogLevel=ERROR",
		"-o", "ConnectTimeout=30"}
	args = append(append(args, opts...), user+"@127.0.0.1")
	out, code, err := execCommand("", []string{"SSHPASS=" + token}, "sshpass", args...)
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	return out, code
}

// writeLocal writes size bytes of the stream for seed to path.
func writeLocal(t testing.TB, path string, seed uint64, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, prng(seed, size)); err != nil {
		t.Fatal(err)
	}
}

// fileSum is the hex SHA-256 of a local file.
func fileSum(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sum, _, err := sumOf(f)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}
