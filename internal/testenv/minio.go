// Package testenv starts the real services the tests run against: a MinIO
// server built by the Makefile (bin/minio) on a loopback address with a
// temporary data directory. Tests never talk to anything but loopback.
package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// MinIO is a running MinIO server owned by a test or a test binary.
type MinIO struct {
	// Endpoint is host:port on 127.0.0.1.
	Endpoint string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string
	// Client is a minio-go client for the server, for tests that check
	// what really landed in the store.
	Client *minio.Client
	// Dir is the server's data directory.
	Dir string

	cmd  *exec.Cmd
	done chan struct{}
}

// MinIOBinary returns the path of the MinIO server binary: $SFTPGATE_MINIO_BIN,
// else bin/minio at the repository root (built by `make minio`).
func MinIOBinary() (string, error) {
	if p := os.Getenv("SFTPGATE_MINIO_BIN"); p != "" {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "bin", "minio")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("testenv: no MinIO binary at %s: run `make minio` (or `make test`)", p)
	}
	return p, nil
}

// RepoRoot returns the directory holding go.mod.
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("testenv: cannot locate source")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..")), nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartMinIO starts a MinIO server with a data directory under dir and waits
// until it answers. Stop it with Stop. It is killed if the calling process
// dies (Pdeathsig), so a crashed test leaves no server behind.
func StartMinIO(dir string) (*MinIO, error) {
	return StartMinIOWith(dir)
}

// StartMinIOWith is StartMinIO with more arguments for `minio server`
// (such as --sftp="address=127.0.0.1:PORT" for its SFTP server).
func StartMinIOWith(dir string, args ...string) (*MinIO, error) {
	bin, err := MinIOBinary()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		m, err := startMinIOOnce(bin, dir, args)
		if err == nil {
			return m, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func startMinIOOnce(bin, dir string, args []string) (*MinIO, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	cport, err := FreePort()
	if err != nil {
		return nil, err
	}
	data, err := os.MkdirTemp(dir, "minio-data-")
	if err != nil {
		return nil, err
	}
	m := &MinIO{
		Endpoint:  fmt.Sprintf("127.0.0.1:%d", port),
		AccessKey: "sftpgate-test",
		SecretKey: "sftpgate-test-secret",
		Dir:       data,
		done:      make(chan struct{}),
	}
	logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("minio-%d.log", port)))
	if err != nil {
		return nil, err
	}
	cmdArgs := []string{"server", "--quiet",
		"--address", m.Endpoint,
		"--console-address", fmt.Sprintf("127.0.0.1:%d", cport)}
	cmdArgs = append(append(cmdArgs, args...), data)
	m.cmd = exec.Command(bin, cmdArgs...)
	m.cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1",
	)
	m.cmd.Stdout = logf
	m.cmd.Stderr = logf
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("testenv: start minio: %w", err)
	}
	go func() {
		m.cmd.Wait()
		logf.Close()
		close(m.done)
	}()
	m.Client, err = minio.New(m.Endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""),
	})
	if err != nil {
		m.Stop()
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-m.done:
			log, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("testenv: minio exited at start: %s", strings.TrimSpace(string(log)))
		default:
		}
		resp, err := http.Get("http://" + m.Endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err = m.Client.ListBuckets(ctx)
				cancel()
				if err == nil {
					return m, nil
				}
			}
		}
		if time.Now().After(deadline) {
			m.Stop()
			return nil, fmt.Errorf("testenv: minio not ready after 60s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// PID is the server's process id (its CPU time is in /proc/PID/stat).
func (m *MinIO) PID() int { return m.cmd.Process.Pid }

// Stop kills the server and waits for it to exit.
func (m *MinIO) Stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		m.cmd.Process.Kill()
		<-m.done
	}
}

// StartMinIOT starts a MinIO server for one test and stops it in cleanup.
func StartMinIOT(t testing.TB) *MinIO {
	t.Helper()
	m, err := StartMinIO(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m
}

var bucketSeq struct {
	mu sync.Mutex
	n  int
}

// NewBucket creates a bucket with a unique name on m and returns the name.
func (m *MinIO) NewBucket(t testing.TB, prefix string) string {
	t.Helper()
	bucketSeq.mu.Lock()
	bucketSeq.n++
	n := bucketSeq.n
	bucketSeq.mu.Unlock()
	name := fmt.Sprintf("%s-%d-%d", prefix, os.Getpid()%100000, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Client.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
	return name
}
