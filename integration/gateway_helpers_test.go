package integration

import (
	"bufio"
	"context"
	"crypto/sha256"
	encbin "encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// Bounds of the gateway harness.
const (
	daemonStartTimeout = 30 * time.Second
	daemonStopTimeout  = 90 * time.Second // SIGTERM → exit: grace + uploads + unmounts
	dialTimeout        = 30 * time.Second // TCP connect + SSH handshake + auth
	commandTimeout     = 5 * time.Minute  // any external client (sftp, sshfs, cp, diff)
)

// Workspace slugs every gateway has.
const (
	personalWS = "personal-files"
	commonWS   = "common-files"
)

// sharedMinIO is one MinIO server for every gateway test of the run,
// started on first use and stopped, its data removed, by TestMain. If the
// test process dies first, the server dies with it (Pdeathsig) and the
// next run removes its directory (testenv.OwnedTempDir). The buckets each
// test uses are emptied and removed by that test's cleanup.
var sharedMinIO struct {
	once sync.Once
	m    *testenv.MinIO
	dir  string
	err  error
}

// stopSharedMinIO stops the shared MinIO server, if one was started, and
// removes its data; TestMain calls it after the tests.
func stopSharedMinIO() {
	if sharedMinIO.m != nil {
		sharedMinIO.m.Stop()
	}
	if sharedMinIO.dir != "" {
		os.RemoveAll(sharedMinIO.dir)
	}
}

// minioServer returns the shared MinIO server, starting it on first use.
func minioServer(t testing.TB) *testenv.MinIO {
	t.Helper()
	sharedMinIO.once.Do(func() {
		dir, err := testenv.OwnedTempDir(minioDirPrefix)
		if err != nil {
			sharedMinIO.err = err
			return
		}
		sharedMinIO.dir = dir
		sharedMinIO.m, sharedMinIO.err = testenv.StartMinIO(dir)
	})
	if sharedMinIO.err != nil {
		t.Fatalf("start MinIO: %v", sharedMinIO.err)
	}
	return sharedMinIO.m
}

// minioDirPrefix starts the name of the shared MinIO's directory in
// os.TempDir() (see testenv.OwnedTempDir; a killed run's data goes at the
// next run: MinIO keeps deleted objects in .minio.sys/tmp for a while).
const minioDirPrefix = "sftpgate-gw-minio-"

// gwOptions changes the configuration of a test gateway. The zero value
// is the default configuration.
type gwOptions struct {
	idleTimeout string         // "15m" when empty
	maxSessions int            // 10 when zero; negative leaves the key out (the daemon's default)
	rsaHostKey  bool           // RSA 2048 host key (as in the Cells doc) instead of Ed25519
	logJSON     bool           // serve --log-format json
	lifespan    string         // tmpFilesLifespan, "15m" when empty
	bind        string         // listen address, "127.0.0.1" when empty
	metrics     bool           // serve /metrics on a free 127.0.0.1 port (metricsAddr); no metricsAddr key when false
	keys        map[string]any // more keys of the section (they replace the harness's)
	nofile      int            // when positive, the daemon runs under prlimit --nofile=N:N
	bin         string         // the sftpgate binary run as daemon and CLI; sftpgateBinary's when empty
	extra       map[string]any // more keys of the section, set as given
	minio       *testenv.MinIO // the MinIO server to use; the shared one when nil
	database    string         // identity store: storeSQLite (""), storePostgres or a postgres:// URL

	// hostKeyFiles are ssh-keygen key types ("rsa", "ecdsa") of more host
	// keys, listed in hostKeyFiles beside hostKeyFile.
	hostKeyFiles []string

	// proxyProtocol, when not empty, sets the key proxyProtocol ("off",
	// "optional", "required") and proxyTrusted to proxyTrusted, or to
	// ["127.0.0.1/32"] (where the harness's HAProxy connects from) when
	// that is nil.
	proxyProtocol string
	proxyTrusted  []string

	// peer, when set, makes this gateway another node of peer's cluster:
	// same host key, same buckets (peer's cleanup removes them) and, when
	// peer's store is PostgreSQL, the same database (hence the same users
	// and workspaces); its own working directory, mounts and cache. See
	// startGateways.
	peer *gateway
}

// gateway is a running `sftpgate serve` daemon configured by a test, with
// its own working directory, mount root and cache, on the shared MinIO.
type gateway struct {
	t       testing.TB
	minio   *testenv.MinIO
	dir     string // the test's temporary directory
	work    string // --workdir
	mounts  string // mountRoot
	tmp     string // tmpDir
	addr    string // 127.0.0.1:port
	port    int
	metrics string // metricsAddr (127.0.0.1:port) when opts.metrics, else empty

	personalBucket, commonBucket string
	hostKeyFile                  string // the private key file (hostKeyFile)
	database                     string // the "database" key; "" for SQLite
	hostKey                      ssh.PublicKey
	hostKeys                     []ssh.PublicKey // hostKey, then those of opts.hostKeyFiles

	opts     gwOptions
	cmd      *exec.Cmd
	logPaths []string      // one log per start of the daemon
	done     chan struct{} // closed when the daemon has exited
	exit     int           // exit code, valid once done is closed

	// mu guards secrets, and cmd, done and exit where the goroutine that
	// waits for a daemon meets the test's goroutine.
	mu      sync.Mutex
	secrets []string // tokens (and keys) the test used: none may appear in the log
}

// startGateway configures and starts a daemon with the two workspaces
// personal-files (bucket personal-*, prefix {user}/) and common-files
// (bucket common-*). Cleanup stops it, checks that no mount is left under
// its mountRoot and that its log holds none of the test's tokens, and
// removes its buckets.
func startGateway(t testing.TB, opts gwOptions) *gateway {
	t.Helper()
	m := opts.minio
	if m == nil {
		m = minioServer(t)
	}
	dir := t.TempDir()
	g := &gateway{
		t:      t,
		minio:  m,
		dir:    dir,
		work:   filepath.Join(dir, "work"),
		mounts: filepath.Join(dir, "mounts"),
		tmp:    filepath.Join(dir, "tmp"),
		opts:   opts,
	}
	g.secret(m.SecretKey) // the MinIO secret key must not be logged either
	keyFile := filepath.Join(dir, "id_ed25519")
	if opts.peer != nil {
		g.personalBucket, g.commonBucket = opts.peer.personalBucket, opts.peer.commonBucket
		keyFile = opts.peer.hostKeyFile
	} else {
		g.personalBucket = m.NewBucket(t, "personal")
		g.commonBucket = m.NewBucket(t, "common")
		t.Cleanup(func() { removeBucket(t, m, g.personalBucket) })
		t.Cleanup(func() { removeBucket(t, m, g.commonBucket) })
		keyArgs := []string{"-t", "ed25519"}
		if opts.rsaHostKey {
			keyFile = filepath.Join(dir, "id_rsa")
			keyArgs = []string{"-t", "rsa", "-b", "2048"}
		}
		runCommand(t, "", nil, "ssh-keygen", append(keyArgs, "-f", keyFile, "-N", "", "-q")...)
	}
	g.hostKeyFile = keyFile
	pub, err := os.ReadFile(keyFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if g.hostKey, _, _, _, err = ssh.ParseAuthorizedKey(pub); err != nil {
		t.Fatalf("host key %s.pub: %v", keyFile, err)
	}
	g.hostKeys = []ssh.PublicKey{g.hostKey}
	var moreKeys []string
	for _, typ := range opts.hostKeyFiles {
		f := filepath.Join(dir, "more_"+typ)
		runCommand(t, "", nil, "ssh-keygen", "-t", typ, "-f", f, "-N", "", "-q")
		pub, err := os.ReadFile(f + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(pub)
		if err != nil {
			t.Fatalf("host key %s.pub: %v", f, err)
		}
		g.hostKeys = append(g.hostKeys, k)
		moreKeys = append(moreKeys, f)
	}

	if g.port, err = testenv.FreePort(); err != nil {
		t.Fatal(err)
	}
	bind := opts.bind
	if bind == "" {
		bind = "127.0.0.1"
	}
	g.addr = net.JoinHostPort(bind, strconv.Itoa(g.port))
	idle := opts.idleTimeout
	if idle == "" {
		idle = "15m"
	}
	lifespan := opts.lifespan
	if lifespan == "" {
		lifespan = "15m"
	}
	maxSessions := opts.maxSessions
	if maxSessions == 0 {
		maxSessions = 10
	}
	section := map[string]any{
		"enabled":            true,
		"hostKeyFile":        keyFile,
		"port":               g.port,
		"bind":               bind,
		"tmpDir":             g.tmp,
		"tmpFilesLifespan":   lifespan,
		"mountRoot":          g.mounts,
		"idleTimeout":        idle,
		"maxSessionsPerUser": maxSessions,
		"uploadPartSize":     "16MiB",
		"uploadConcurrency":  4,
		"minio": map[string]any{
			"endpoint":  m.Endpoint,
			"accessKey": m.AccessKey,
			"secretKey": m.SecretKey,
			"secure":    false,
		},
	}
	if maxSessions < 0 {
		delete(section, "maxSessionsPerUser")
	}
	if opts.proxyProtocol != "" {
		section["proxyProtocol"] = opts.proxyProtocol
		section["proxyTrusted"] = opts.proxyTrusted
		if opts.proxyTrusted == nil {
			section["proxyTrusted"] = []string{"127.0.0.1/32"}
		}
	}
	for k, v := range opts.keys {
		section[k] = v
	}
	if len(moreKeys) > 0 {
		section["hostKeyFiles"] = moreKeys
	}
	if opts.metrics {
		port, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		g.metrics = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		section["metricsAddr"] = g.metrics
	}
	for k, v := range opts.extra {
		section[k] = v
	}
	g.database = databaseKey(t, opts.database)
	if opts.peer != nil {
		g.database = opts.peer.database
	}
	if db := g.database; db != "" {
		section["database"] = db
		if pw := testenv.PostgresPassword(db); pw != "" {
			g.secret(pw) // the database password must not be logged
		}
	}
	cfg := map[string]any{"services": map[string]any{"pydio.gateway.sftp": section}}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(g.work, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(g.work, "pydio.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if opts.peer == nil || g.database == "" { // a SQLite node has its own store
		g.mustCLI("admin", "workspace", "create", "--slug", personalWS, "--bucket", g.personalBucket, "--prefix", "{user}/")
		g.mustCLI("admin", "workspace", "create", "--slug", commonWS, "--bucket", g.commonBucket)
	}

	g.start()
	t.Cleanup(g.cleanup)
	g.waitReady()
	return g
}

// restart stops the daemon (it must exit 0) and starts it again with the
// same working directory and configuration.
func (g *gateway) restart() {
	g.t.Helper()
	if code := g.stop(); code != 0 {
		g.t.Fatalf("sftpgate serve: got exit %d after SIGTERM, want 0", code)
	}
	if m := mountsUnder(g.t, g.mounts); len(m) != 0 {
		g.t.Errorf("mounts after the daemon exited: got %q, want none", m)
	}
	g.start()
	g.waitReady()
}

// start runs the daemon.
func (g *gateway) start() {
	t := g.t
	t.Helper()
	args := []string{"--workdir", g.work, "serve"}
	if g.opts.logJSON {
		args = append(args, "--log-format", "json")
	}
	logPath := filepath.Join(g.dir, fmt.Sprintf("daemon-%d.log", len(g.logPaths)+1))
	g.logPaths = append(g.logPaths, logPath)
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	cmd := exec.Command(g.binPath(), args...)
	if g.opts.nofile > 0 {
		// prlimit execs the daemon: same pid, limits set before it starts.
		n := strconv.Itoa(g.opts.nofile)
		cmd = exec.Command("prlimit", append([]string{"--nofile=" + n + ":" + n, g.binPath()}, args...)...)
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = sftpgateEnv()
	// If the test process dies (a -timeout panic, ^C), the daemon gets
	// SIGTERM and shuts down cleanly, unmounting its views.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	// Under g.mu: the previous daemon, if a test started this one before
	// it was reaped (a killed daemon still stuck), may exit meanwhile.
	g.mu.Lock()
	g.cmd, g.done = cmd, done
	g.mu.Unlock()
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start sftpgate serve: %v", err)
	}
	go func() {
		err := cmd.Wait()
		logf.Close()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode() // -1 when killed by a signal
		} else if err != nil {
			code = -1
		}
		g.mu.Lock()
		if g.cmd == cmd { // not a previous daemon reaped late
			g.exit = code
		}
		g.mu.Unlock()
		close(done)
	}()
}

// waitReady waits until the daemon's port accepts connections.
func (g *gateway) waitReady() {
	t := g.t
	t.Helper()
	deadline := time.Now().Add(daemonStartTimeout)
	for {
		select {
		case <-g.done:
			t.Fatalf("sftpgate serve exited with %d at start:\n%s", g.exit, g.logs())
		default:
		}
		c, err := net.DialTimeout("tcp", g.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sftpgate serve: %s not accepting connections after %v:\n%s", g.addr, daemonStartTimeout, g.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pid is the daemon's process id.
func (g *gateway) pid() int { return g.cmd.Process.Pid }

// stop sends SIGTERM, waits for the daemon to exit (SIGKILL after
// daemonStopTimeout) and returns its exit code (-1: killed). It may be
// called more than once.
func (g *gateway) stop() int {
	select {
	case <-g.done:
		return g.exit
	default:
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
		return g.exit
	case <-time.After(daemonStopTimeout):
		g.t.Errorf("sftpgate serve still running %v after SIGTERM: killed", daemonStopTimeout)
		g.cmd.Process.Kill()
		<-g.done
		return -1
	}
}

// cleanup stops the daemon and checks what it left behind.
func (g *gateway) cleanup() {
	t := g.t
	t.Helper()
	if code := g.stop(); code != 0 {
		t.Errorf("sftpgate serve: got exit %d after SIGTERM, want 0", code)
	}
	for _, mp := range mountsUnder(t, g.mounts) {
		t.Errorf("mount left behind after the daemon exited: %s", mp)
		lazyUnmount(t, mp)
	}
	logs := g.logs()
	g.mu.Lock()
	secrets := g.secrets
	g.mu.Unlock()
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("daemon log contains a secret (%.8s…)", s)
		}
	}
	if t.Failed() {
		t.Logf("daemon log (%s):\n%s", g.logPaths[len(g.logPaths)-1], tail(logs, 60))
	}
}

// logs returns what the daemon has logged so far, every start included.
func (g *gateway) logs() string {
	var sb strings.Builder
	for _, p := range g.logPaths {
		b, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintf(&sb, "(no log %s: %v)\n", p, err)
		}
		sb.Write(b)
	}
	return sb.String()
}

// secret records a token-like string that must never appear in the log.
func (g *gateway) secret(s string) {
	g.mu.Lock()
	g.secrets = append(g.secrets, s)
	g.mu.Unlock()
}

// binPath is the path of the sftpgate binary this gateway runs.
func (g *gateway) binPath() string {
	if g.opts.bin != "" {
		return g.opts.bin
	}
	return sftpgateBinary(g.t)
}

// cli runs `sftpgate --workdir <work> args...`.
func (g *gateway) cli(args ...string) cliResult {
	g.t.Helper()
	return runBinary(g.t, g.binPath(), append([]string{"--workdir", g.work}, args...)...)
}

// mustCLI runs the CLI and fails the test unless it exits 0.
func (g *gateway) mustCLI(args ...string) cliResult {
	g.t.Helper()
	r := g.cli(args...)
	if r.code != 0 {
		g.t.Fatalf("sftpgate %s: got %s, want exit 0", strings.Join(args, " "), r)
	}
	return r
}

// addUser creates a user with grants such as "personal-files" (read-write)
// or "common-files:ro", and returns a fresh 24 h token.
func (g *gateway) addUser(login string, grants ...string) string {
	g.t.Helper()
	g.mustCLI("admin", "user", "create", "-u", login)
	for _, gr := range grants {
		slug, ro := strings.CutSuffix(gr, ":ro")
		args := []string{"admin", "workspace", "grant", "--slug", slug, "-u", login}
		if ro {
			args = append(args, "--read-only")
		}
		g.mustCLI(args...)
	}
	return g.token(login, "24h")
}

// token mints a token for login that expires after expire.
func (g *gateway) token(login, expire string) string {
	g.t.Helper()
	tok := strings.TrimSpace(g.mustCLI("admin", "user", "token", "-u", login, "-e", expire, "-q").stdout)
	if !tokenRE.MatchString(tok) {
		g.t.Fatalf("admin user token -q: got %q, want a token", tok)
	}
	g.secret(tok)
	return tok
}

// dial opens an SSH connection as user with the given auth methods; the
// handshake is bounded by dialTimeout.
func (g *gateway) dial(user string, auth ...ssh.AuthMethod) (*ssh.Client, error) {
	return g.dialFrom(g.addr, "", user, auth...)
}

// dialFrom is dial to addr (the gateway's, or a load balancer's in front
// of it) from the local address local ("" for any), e.g. "127.0.0.2".
func (g *gateway) dialFrom(addr, local, user string, auth ...ssh.AuthMethod) (*ssh.Client, error) {
	d := net.Dialer{Timeout: dialTimeout}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return g.sshOn(conn, user, auth...)
}

// sshOn runs the SSH handshake as user on conn, an open connection to the
// gateway (or to its balancer), bounded by dialTimeout; conn is closed
// when it fails.
func (g *gateway) sshOn(conn net.Conn, user string, auth ...ssh.AuthMethod) (*ssh.Client, error) {
	addr := conn.RemoteAddr().String()
	conn.SetDeadline(time.Now().Add(dialTimeout))
	cfg := &ssh.ClientConfig{
		User:            user,
		Auth:            auth,
		HostKeyCallback: ssh.FixedHostKey(g.hostKey),
		Timeout:         dialTimeout,
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// login dials with the token as password.
func (g *gateway) login(user, token string) (*ssh.Client, error) {
	g.secret(token)
	return g.dial(user, ssh.Password(token))
}

// mustSSH logs in or fails the test; cleanup closes the connection.
func (g *gateway) mustSSH(user, token string) *ssh.Client {
	g.t.Helper()
	c, err := g.login(user, token)
	if err != nil {
		g.t.Fatalf("ssh login as %s: %v", user, err)
	}
	g.t.Cleanup(func() { c.Close() })
	return c
}

// mustSFTP logs in and starts an SFTP session with concurrent requests;
// cleanup closes it.
func (g *gateway) mustSFTP(user, token string) *sftp.Client {
	g.t.Helper()
	return newSFTP(g.t, g.mustSSH(user, token))
}

// newSFTP starts an SFTP client on an SSH connection; cleanup closes it.
func newSFTP(t testing.TB, c *ssh.Client) *sftp.Client {
	t.Helper()
	sc, err := newSFTPClient(c)
	if err != nil {
		t.Fatalf("sftp session: %v", err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc
}

// newSFTPClient starts an SFTP client with concurrent reads and writes
// (64 requests in flight per file).
func newSFTPClient(c *ssh.Client, opts ...sftp.ClientOption) (*sftp.Client, error) {
	return sftp.NewClient(c, append([]sftp.ClientOption{
		sftp.UseConcurrentWrites(true),
		sftp.UseConcurrentReads(true),
		sftp.MaxConcurrentRequestsPerFile(64),
	}, opts...)...)
}

// personalKey is the object key of path in login's personal workspace.
func personalKey(login, path string) string { return login + "/" + strings.TrimPrefix(path, "/") }

// mountsUnder lists the mount points in /proc/mounts under root.
func mountsUnder(t testing.TB, root string) []string {
	t.Helper()
	f, err := os.Open("/proc/mounts")
	if err != nil {
		t.Errorf("read /proc/mounts: %v", err)
		return nil
	}
	defer f.Close()
	var found []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		mp := strings.ReplaceAll(fields[1], `\040`, " ")
		if mp == root || strings.HasPrefix(mp, root+"/") {
			found = append(found, mp)
		}
	}
	return found
}

// lazyUnmount detaches a mount point that a test left behind.
func lazyUnmount(t testing.TB, mp string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "umount", "-l", mp).CombinedOutput(); err != nil {
		t.Errorf("umount -l %s: %v: %s", mp, err, out)
	}
}

// removeBucket empties and removes a bucket of the shared MinIO.
func removeBucket(t testing.TB, m *testenv.MinIO, bucket string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	objs := make(chan minio.ObjectInfo)
	go func() {
		defer close(objs)
		for o := range m.Client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
			if o.Err != nil {
				return
			}
			select {
			case objs <- o:
			case <-ctx.Done():
				return
			}
		}
	}()
	for e := range m.Client.RemoveObjects(ctx, bucket, objs, minio.RemoveObjectsOptions{}) {
		t.Logf("cleanup: remove %s/%s: %v", bucket, e.ObjectName, e.Err)
	}
	if err := m.Client.RemoveBucket(ctx, bucket); err != nil {
		t.Logf("cleanup: remove bucket %s: %v", bucket, err)
	}
}

// runCommand runs an external command with a timeout and stdin, failing
// the test unless it exits 0; it returns the combined output.
func runCommand(t testing.TB, stdin string, env []string, name string, args ...string) string {
	t.Helper()
	out, code, err := execCommand(stdin, env, name, args...)
	if err != nil || code != 0 {
		t.Fatalf("%s %s: exit %d, %v\n%s", name, strings.Join(args, " "), code, err, out)
	}
	return out
}

// execCommand runs an external command with a timeout and returns its
// combined output and exit code; err is set only when it could not run or
// was killed.
func execCommand(stdin string, env []string, name string, args ...string) (out string, code int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 10 * time.Second
	b, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() >= 0 {
		return string(b), exit.ExitCode(), nil
	}
	if err != nil {
		return string(b), -1, err
	}
	return string(b), 0, nil
}

// prng returns n bytes of a deterministic stream for seed, generated as
// it is read (never held in memory).
func prng(seed uint64, n int64) io.Reader {
	var s [32]byte
	encbin.LittleEndian.PutUint64(s[:], seed)
	return io.LimitReader(rand.NewChaCha8(s), n)
}

// prngBytes returns the first n bytes of the stream for seed.
func prngBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	io.ReadFull(prng(seed, int64(n)), b)
	return b
}

// prngSum is the hex SHA-256 of n bytes of the stream for seed.
func prngSum(seed uint64, n int64) string {
	h := sha256.New()
	io.Copy(h, prng(seed, n))
	return hex.EncodeToString(h.Sum(nil))
}

// sumOf returns the hex SHA-256 and length of everything r yields.
func sumOf(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// objectSum reads an object directly from MinIO and returns its SHA-256,
// size and info.
func objectSum(t testing.TB, m *testenv.MinIO, bucket, key string) (string, int64, minio.ObjectInfo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	obj, err := m.Client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("minio get %s/%s: %v", bucket, key, err)
	}
	defer obj.Close()
	info, err := obj.Stat()
	if err != nil {
		t.Fatalf("minio stat %s/%s: %v", bucket, key, err)
	}
	sum, n, err := sumOf(obj)
	if err != nil {
		t.Fatalf("minio read %s/%s: %v", bucket, key, err)
	}
	return sum, n, info
}

// statObject returns the info of an object, or the error.
func statObject(m *testenv.MinIO, bucket, key string) (minio.ObjectInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return m.Client.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
}

// getObject returns the content of an object, or the error.
func getObject(m *testenv.MinIO, bucket, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	obj, err := m.Client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	return io.ReadAll(obj)
}

// putObject stores data at bucket/key directly in MinIO.
func putObject(t testing.TB, m *testenv.MinIO, bucket, key string, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := m.Client.PutObject(ctx, bucket, key, strings.NewReader(string(data)), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("minio put %s/%s: %v", bucket, key, err)
	}
}

// isNotFound reports whether a minio-go error says the object is absent.
func isNotFound(err error) bool {
	return minio.ToErrorResponse(err).Code == "NoSuchKey"
}

// sftpStatus returns the SFTP status code of an error from pkg/sftp
// (the client turns some of them into os errors).
func sftpStatus(err error) (uint32, bool) {
	var se *sftp.StatusError
	switch {
	case err == nil:
		return 0, true
	case errors.As(err, &se):
		return se.Code, true
	case errors.Is(err, os.ErrPermission):
		return 3, true // SSH_FX_PERMISSION_DENIED
	case errors.Is(err, os.ErrNotExist):
		return 2, true // SSH_FX_NO_SUCH_FILE
	}
	return 0, false
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls cond every step until it is true or timeout passes.
func waitFor(timeout, step time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(step)
	}
}
