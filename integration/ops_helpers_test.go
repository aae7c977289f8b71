package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/pkg/sftp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// Bounds of the operations harness (names prefixed "ops" to stay apart
// from the other harnesses of the package).
const (
	opsStartTimeout = 30 * time.Second
	opsStopTimeout  = 60 * time.Second
	opsDialTimeout  = 20 * time.Second
)

// opsDaemon is a running `sftpgate serve` with a real MinIO, set up as a
// user would: host key, pydio.json, users, workspace, grants and tokens
// made with the CLI.
type opsDaemon struct {
	t         *testing.T
	minio     *testenv.MinIO
	workdir   string
	mountRoot string
	sshAddr   string
	metrics   string // host:port
	hostKey   ssh.PublicKey
	bucket    string

	cmd    *exec.Cmd
	stderr *opsBuffer
	exited chan struct{}
	err    error // of cmd.Wait, set before exited is closed
}

// opsBuffer is a goroutine-safe log buffer.
type opsBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *opsBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *opsBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startOpsDaemon sets up a working directory for users (each granted the
// workspace "files" = bucket ops-b1, prefix {user}/) and starts the daemon.
// Cleanup stops it (SIGTERM, then SIGKILL) and fails the test if a mount
// is left under the mount root.
func startOpsDaemon(t *testing.T, users ...string) *opsDaemon {
	t.Helper()
	m := testenv.StartMinIOT(t)
	base := t.TempDir()
	d := &opsDaemon{
		t: t, minio: m, workdir: filepath.Join(base, "work"), mountRoot: filepath.Join(base, "mounts"),
		bucket: "ops-b1", stderr: &opsBuffer{}, exited: make(chan struct{}),
	}
	if err := os.MkdirAll(d.workdir, 0o700); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(d.workdir, "host_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if d.hostKey, _, _, _, err = ssh.ParseAuthorizedKey(pub); err != nil {
		t.Fatal(err)
	}
	sshPort, metricsPort := opsFreePort(t), opsFreePort(t)
	d.sshAddr = fmt.Sprintf("127.0.0.1:%d", sshPort)
	d.metrics = fmt.Sprintf("127.0.0.1:%d", metricsPort)
	cfg := map[string]any{"services": map[string]any{"pydio.gateway.sftp": map[string]any{
		"enabled": true, "hostKeyFile": key, "port": sshPort, "bind": "127.0.0.1",
		"tmpDir": filepath.Join(base, "tmp"), "mountRoot": d.mountRoot, "metricsAddr": d.metrics,
		"minio": map[string]any{"endpoint": m.Endpoint, "accessKey": m.AccessKey, "secretKey": m.SecretKey},
	}}}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.workdir, "pydio.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	d.ok("admin", "workspace", "create", "--slug", "files", "--bucket", d.bucket, "--prefix", "{user}/")
	for _, u := range users {
		d.ok("admin", "user", "create", "-u", u)
		d.ok("admin", "workspace", "grant", "--slug", "files", "-u", u)
	}

	d.cmd = exec.Command(sftpgateBinary(t), "--workdir", d.workdir, "serve")
	d.cmd.Stderr = d.stderr
	d.cmd.Env = opsEnv()
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start serve: %v", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(d.cleanup)
	deadline := time.Now().Add(opsStartTimeout)
	for {
		if c, err := net.Dial("unix", filepath.Join(d.workdir, "sftpgate.sock")); err == nil {
			c.Close()
			if c, err := net.Dial("tcp", d.sshAddr); err == nil {
				c.Close()
				break
			}
		}
		select {
		case <-d.exited:
			t.Fatalf("serve exited at start: %v\n%s", d.err, d.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready after %v:\n%s", opsStartTimeout, d.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return d
}

// opsEnv is the environment of the binary, without $CELLS_WORKING_DIR.
func opsEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CELLS_WORKING_DIR=") {
			env = append(env, kv)
		}
	}
	return env
}

func opsFreePort(t *testing.T) int {
	t.Helper()
	p, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// stop sends SIGTERM and waits for the exit (SIGKILL after
// opsStopTimeout); it returns the exit code, -1 if killed.
func (d *opsDaemon) stop() int {
	d.t.Helper()
	select {
	case <-d.exited:
	default:
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(opsStopTimeout):
			d.cmd.Process.Kill()
			<-d.exited
			d.t.Errorf("serve did not stop %v after SIGTERM; killed\n%s", opsStopTimeout, d.stderr)
			return -1
		}
	}
	return d.cmd.ProcessState.ExitCode()
}

// cleanup stops the daemon and fails the test if a FUSE mount is left under
// the mount root (detaching it first).
func (d *opsDaemon) cleanup() {
	d.stop()
	for _, mp := range mountsUnder(d.t, d.mountRoot) {
		d.t.Errorf("mount left behind: %s", mp)
		if out, err := exec.Command("umount", "-l", mp).CombinedOutput(); err != nil {
			d.t.Errorf("umount -l %s: %v: %s", mp, err, out)
		}
	}
	if d.t.Failed() {
		d.t.Logf("daemon log:\n%s", opsTail(d.stderr.String(), 6000))
	}
}

func opsTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// run runs `sftpgate --workdir W args...`.
func (d *opsDaemon) run(args ...string) cliResult {
	d.t.Helper()
	return runSftpgate(d.t, append([]string{"--workdir", d.workdir}, args...)...)
}

// ok runs the command and fails the test unless it exits 0.
func (d *opsDaemon) ok(args ...string) cliResult {
	d.t.Helper()
	r := d.run(args...)
	if r.code != 0 {
		d.t.Fatalf("sftpgate %s: got %s, want exit 0", strings.Join(args, " "), r)
	}
	return r
}

// opsMountRow is a row of `mounts --json`.
type opsMountRow struct {
	User            string     `json:"user"`
	Path            string     `json:"path"`
	Mode            string     `json:"mode"`
	Since           time.Time  `json:"since"`
	Sessions        int        `json:"sessions"`
	OpenFiles       int        `json:"open_files"`
	DirtyBytes      int64      `json:"dirty_bytes"`
	UploadsInFlight int        `json:"uploads_in_flight"`
	CleanBytes      int64      `json:"clean_bytes"`
	HeldUntil       *time.Time `json:"held_until"`
}

// mounts runs `mounts --json` and returns the row of user's view of mode
// ("rw" or "ro"), if any.
func (d *opsDaemon) mounts(user, mode string) (opsMountRow, bool) {
	d.t.Helper()
	r := d.ok("mounts", "--json")
	var rows []opsMountRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		d.t.Fatalf("mounts --json: %v\n%s", err, r.stdout)
	}
	for _, row := range rows {
		if row.User == user && row.Mode == mode {
			return row, true
		}
	}
	return opsMountRow{}, false
}

// opsSessionRow is a row of `sessions --json`.
type opsSessionRow struct {
	ID        string    `json:"id"`
	User      string    `json:"user"`
	Remote    string    `json:"remote"`
	Since     time.Time `json:"since"`
	BytesUp   int64     `json:"bytes_up"`
	BytesDown int64     `json:"bytes_down"`
	Op        string    `json:"op"`
}

func (d *opsDaemon) sessions() []opsSessionRow {
	d.t.Helper()
	r := d.ok("sessions", "--json")
	var rows []opsSessionRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		d.t.Fatalf("sessions --json: %v\n%s", err, r.stdout)
	}
	return rows
}

// token mints a token for user with the CLI.
func (d *opsDaemon) token(user string) string {
	d.t.Helper()
	return strings.TrimSpace(d.ok("admin", "user", "token", "-u", user, "-e", "1h", "-q").stdout)
}

// sftp logs in as user with secret and opens an SFTP client; both are
// closed at cleanup.
func (d *opsDaemon) sftp(user, secret string) (*sftp.Client, error) {
	d.t.Helper()
	c, err := ssh.Dial("tcp", d.sshAddr, &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.Password(secret)},
		HostKeyCallback: ssh.FixedHostKey(d.hostKey),
		Timeout:         opsDialTimeout,
	})
	if err != nil {
		return nil, err
	}
	sc, err := sftp.NewClient(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	d.t.Cleanup(func() {
		sc.Close()
		c.Close()
	})
	return sc, nil
}

// scrape fetches /metrics and parses it with the text parser.
func (d *opsDaemon) scrape() map[string]*dto.MetricFamily {
	d.t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + d.metrics + "/metrics")
	if err != nil {
		d.t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		d.t.Fatalf("scrape: got status %s, want 200", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		d.t.Fatalf("scrape: parse: %v", err)
	}
	return fams
}

// opsValue is the value of the sample of family name with the given
// labels ("k=v"): counter, gauge, or a histogram's count.
func opsValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric family %s", name)
	}
	for _, m := range f.GetMetric() {
		match := true
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			found := false
			for _, lp := range m.GetLabel() {
				found = found || (lp.GetName() == k && lp.GetValue() == v)
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no sample of %s with labels %v", name, labels)
	return 0
}

// opsObject returns the content of an object, or the error.
func (d *opsDaemon) opsObject(key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o, err := d.minio.Client.GetObject(ctx, d.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer o.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(o); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
