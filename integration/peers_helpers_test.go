package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// Bounds of the peers BenchmarkPeers starts and waits for.
const (
	peerStartTimeout   = 30 * time.Second
	peerStopTimeout    = 30 * time.Second
	peerDurableTimeout = 10 * time.Minute // a big upload written back after close (rclone)
	peerSmallTimeout   = 3 * time.Minute  // the small files written back after close
	sshdBinary         = "/usr/sbin/sshd"
)

// sftpPeer is one SFTP server BenchmarkPeers measures: how to log in, where
// the files go, where they land (a MinIO bucket or a local directory) and
// which processes do the serving.
type sftpPeer struct {
	name    string
	addr    string // 127.0.0.1:port
	user    string
	hostKey ssh.PublicKey
	// password is the login's password (given to OpenSSH sftp through
	// sshpass); when empty, keyFile is the client's private key.
	password, keyFile string
	// root is the remote directory the files are written to ("" for the
	// session's start directory).
	root string
	// bucket and prefix locate a remote name root/NAME as the object
	// bucket/prefix+NAME; when bucket is empty the files are on local disk
	// under localDir.
	bucket, prefix, localDir string
	// pids are the server's processes: their trees' CPU is the server's.
	pids []int
}

// remote is the remote path of name.
func (p *sftpPeer) remote(name string) string {
	if p.root == "" {
		return name
	}
	return path.Join(p.root, name)
}

// dial opens an SSH connection to the peer, bounded by dialTimeout.
func (p *sftpPeer) dial() (*ssh.Client, error) {
	var auth ssh.AuthMethod
	if p.password != "" {
		auth = ssh.Password(p.password)
	} else {
		key, err := os.ReadFile(p.keyFile)
		if err != nil {
			return nil, err
		}
		signer, err := ssh.ParsePrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("client key %s: %w", p.keyFile, err)
		}
		auth = ssh.PublicKeys(signer)
	}
	return ssh.Dial("tcp", p.addr, &ssh.ClientConfig{
		User:            p.user,
		Auth:            []ssh.AuthMethod{auth},
		HostKeyCallback: ssh.FixedHostKey(p.hostKey),
		Timeout:         dialTimeout,
	})
}

// batch runs OpenSSH sftp -b with batch (after "lcd dir") against the
// peer and returns its output and exit code.
func (p *sftpPeer) batch(t testing.TB, dir, batch string) (string, int) {
	t.Helper()
	bf, err := os.CreateTemp(t.TempDir(), "batch-")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bf.WriteString("lcd " + dir + "\n" + strings.TrimSpace(batch) + "\n"); err != nil {
		t.Fatal(err)
	}
	bf.Close()
	host, port, _ := net.SplitHostPort(p.addr)
	args := []string{"-b", bf.Name(), "-P", port,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "ConnectTimeout=30"}
	name, env := "sftp", []string(nil)
	if p.password != "" {
		args = append([]string{"-e", "sftp", "-o", "BatchMode=no", "-o", "PubkeyAuthentication=no"}, args...)
		name, env = "sshpass", []string{"SSHPASS=" + p.password}
	} else {
		args = append(args, "-i", p.keyFile, "-o", "IdentitiesOnly=yes", "-o", "PasswordAuthentication=no")
	}
	out, code, err := execCommand("", env, name, append(args, p.user+"@"+host)...)
	if err != nil {
		t.Fatalf("%s: sftp -b: %v\n%s", p.name, err, out)
	}
	return out, code
}

// waitDurable waits until the file name of size bytes is complete where
// the peer stores it: the object in MinIO (polled: some peers upload
// after close returns), or the local file.
func (p *sftpPeer) waitDurable(t testing.TB, m *testenv.MinIO, name string, size int64) {
	t.Helper()
	var last string
	ok := waitFor(peerDurableTimeout, 20*time.Millisecond, func() bool {
		var got int64
		if p.bucket == "" {
			fi, err := os.Stat(filepath.Join(p.localDir, p.remote(name)))
			if err != nil {
				last = err.Error()
				return false
			}
			got = fi.Size()
		} else {
			info, err := statObject(m, p.bucket, p.prefix+name)
			if err != nil {
				last = err.Error()
				return false
			}
			got = info.Size
		}
		last = fmt.Sprintf("%d bytes", got)
		return got == size
	})
	if !ok {
		t.Fatalf("%s: %s after %v: got %s, want %d bytes", p.name, name, peerDurableTimeout, last, size)
	}
}

// waitFiles waits until the directory dir holds n files of size bytes
// where the peer stores them.
func (p *sftpPeer) waitFiles(t testing.TB, m *testenv.MinIO, dir string, n int, size int64) {
	t.Helper()
	got := 0
	ok := waitFor(peerSmallTimeout, 100*time.Millisecond, func() bool {
		got = 0
		if p.bucket == "" {
			ents, err := os.ReadDir(filepath.Join(p.localDir, p.remote(dir)))
			if err != nil {
				return false
			}
			for _, e := range ents {
				if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.Size() == size {
					got++
				}
			}
			return got == n
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for o := range m.Client.ListObjects(ctx, p.bucket, minio.ListObjectsOptions{Prefix: p.prefix + dir + "/", Recursive: true}) {
			if o.Err != nil {
				return false
			}
			if !strings.HasSuffix(o.Key, "/") && o.Size == size {
				got++
			}
		}
		return got == n
	})
	if !ok {
		t.Fatalf("%s: %s after %v: got %d files of %d bytes, want %d", p.name, dir, peerSmallTimeout, got, size, n)
	}
}

// gatewayPeer is the sftpgate daemon g, user alice (token tok), writing to
// her personal workspace.
func gatewayPeer(g *gateway, tok string) *sftpPeer {
	g.secret(tok)
	return &sftpPeer{
		name: "sftpgate", addr: g.addr, user: "alice", hostKey: g.hostKey, password: tok,
		root: "/" + personalWS, bucket: g.personalBucket, prefix: personalKey("alice", ""),
		pids: []int{g.pid()},
	}
}

// minioSFTPPeer is MinIO's own SFTP server on addr (started with m, host
// key hostKey), logged in with the root credentials, writing to bucket.
func minioSFTPPeer(m *testenv.MinIO, addr string, hostKey ssh.PublicKey, bucket string) *sftpPeer {
	return &sftpPeer{
		name: "MinIO SFTP", addr: addr, user: m.AccessKey, hostKey: hostKey, password: m.SecretKey,
		root: "/" + bucket, bucket: bucket, pids: []int{m.PID()},
	}
}

// startSSHD starts OpenSSH's sshd on a free loopback port with a
// temporary configuration: only the current user, by public key, forced
// into internal-sftp whose start directory is a new directory under dir.
// Cleanup stops it (and removes /run/sshd if it created it).
func startSSHD(t testing.TB, dir, hostKeyFile string, hostKey ssh.PublicKey) *sftpPeer {
	t.Helper()
	if _, err := os.Stat(sshdBinary); err != nil {
		t.Fatalf("OpenSSH server: %v (apt-get install openssh-server)", err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	files := filepath.Join(dir, "sshd-files")
	if err := os.MkdirAll(files, 0o755); err != nil {
		t.Fatal(err)
	}
	clientKey := filepath.Join(dir, "sshd_client_ed25519")
	runCommand(t, "", nil, "ssh-keygen", "-t", "ed25519", "-f", clientKey, "-N", "", "-q")
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg := filepath.Join(dir, "sshd_config")
	conf := strings.Join([]string{
		"ListenAddress " + addr,
		"HostKey " + hostKeyFile,
		"PidFile none",
		"AuthorizedKeysFile " + clientKey + ".pub",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"UsePAM no",
		"StrictModes no", // the key is under /tmp, which others may write
		"AllowUsers " + me.Username,
		"Subsystem sftp internal-sftp",
		"ForceCommand internal-sftp -d " + files,
		"",
	}, "\n")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// sshd wants its privilege separation directory (made by the system
	// service, absent when the service never ran).
	if _, err := os.Stat("/run/sshd"); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir("/run/sshd", 0o755); err != nil {
			t.Fatalf("privilege separation directory: %v", err)
		}
		t.Cleanup(func() { os.Remove("/run/sshd") })
	}
	cmd := exec.Command(sshdBinary, "-D", "-e", "-f", cfg)
	t.Cleanup(startPeerProcess(t, "sshd", cmd, addr, filepath.Join(dir, "sshd.log")))
	return &sftpPeer{
		name: "OpenSSH internal-sftp", addr: addr, user: me.Username, hostKey: hostKey, keyFile: clientKey,
		localDir: files, pids: []int{cmd.Process.Pid},
	}
}

// startRclone starts `rclone serve sftp --vfs-cache-mode writes` over
// bucket of m on a free loopback port, writing back as soon as a file is
// closed (--vfs-write-back 0s), its cache under dir. Cleanup stops it.
func startRclone(t testing.TB, m *testenv.MinIO, bucket, dir, hostKeyFile string, hostKey ssh.PublicKey) *sftpPeer {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	const user, pass = "bench", "bench-password"
	remote := fmt.Sprintf(":s3,provider=Minio,endpoint='http://%s':%s", m.Endpoint, bucket)
	cmd := exec.Command("rclone", "serve", "sftp", remote,
		"--addr", addr, "--user", user, "--pass", pass, "--key", hostKeyFile,
		"--vfs-cache-mode", "writes", "--vfs-write-back", "0s",
		"--cache-dir", filepath.Join(dir, "rclone-cache"))
	// The S3 credentials through rclone's environment, not its command
	// line; AWS_CA_BUNDLE (set on some machines) makes rclone's S3 client
	// refuse its own HTTP transport.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") && !strings.HasPrefix(kv, "RCLONE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "RCLONE_CONFIG=/dev/null",
		"RCLONE_S3_ACCESS_KEY_ID="+m.AccessKey, "RCLONE_S3_SECRET_ACCESS_KEY="+m.SecretKey)
	t.Cleanup(startPeerProcess(t, "rclone serve sftp", cmd, addr, filepath.Join(dir, "rclone.log")))
	return &sftpPeer{
		name: "rclone serve sftp", addr: addr, user: user, hostKey: hostKey, password: pass,
		root: "/", bucket: bucket, pids: []int{cmd.Process.Pid},
	}
}

// startPeerProcess starts cmd (its output to logPath), waits until addr
// accepts connections and returns the function that stops it.
func startPeerProcess(t testing.TB, name string, cmd *exec.Cmd, addr, logPath string) func() {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(peerStopTimeout):
			cmd.Process.Kill()
			<-done
		}
	}
	ready := waitFor(peerStartTimeout, 50*time.Millisecond, func() bool {
		select {
		case <-done:
			return false
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	if !ready {
		stop()
		log, _ := os.ReadFile(logPath)
		t.Fatalf("%s: %s not accepting connections after %v:\n%s", name, addr, peerStartTimeout, tail(string(log), 30))
	}
	return stop
}
