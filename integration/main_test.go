// Package integration holds the end-to-end tests: the real sftpgate binary,
// a real MinIO server, real FUSE mounts and real SFTP clients.
package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// TestMain runs the tests and removes the binary built by sftpgateBinary.
func TestMain(m *testing.M) {
	if os.Getenv(envMemSFTP) != "" {
		serveMemSFTP() // the benchmark's memory SFTP server, a process of its own
		return
	}
	restoreFusectl := testenv.KeepFusectl()
	code := m.Run()
	stopSharedMinIO()
	stopSharedPostgres()
	restoreFusectl()
	binary.cleanup()
	os.Exit(code)
}

// binary is the sftpgate binary the tests run, located or built once.
var binary builtBinary

// builtBinary locates or builds the sftpgate binary on first use.
type builtBinary struct {
	once sync.Once
	path string
	dir  string // temporary directory of a binary built here, removed by cleanup
	err  error
}

// sftpgateBinary returns the path of the sftpgate binary: $SFTPGATE_BIN
// (set by the Makefile, which builds it first), else ./cmd/sftpgate built
// once into a temporary directory for the whole test run.
func sftpgateBinary(t testing.TB) string {
	t.Helper()
	binary.once.Do(binary.locate)
	if binary.err != nil {
		t.Fatalf("sftpgate binary: %v", binary.err)
	}
	return binary.path
}

func (b *builtBinary) locate() {
	if p := os.Getenv("SFTPGATE_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			b.err = fmt.Errorf("$SFTPGATE_BIN: %w (run `make build`, or unset it to build one)", err)
			return
		}
		b.path = p
		return
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		b.err = err
		return
	}
	b.dir, err = os.MkdirTemp("", "sftpgate-bin-")
	if err != nil {
		b.err = err
		return
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		b.err = fmt.Errorf("no go tool in $PATH to build ./cmd/sftpgate: %w", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	path := filepath.Join(b.dir, "sftpgate")
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", path, "./cmd/sftpgate")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		b.err = fmt.Errorf("go build ./cmd/sftpgate: %w\n%s", err, out)
		return
	}
	b.path = path
}

func (b *builtBinary) cleanup() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// cliResult is what one run of the binary printed and returned.
type cliResult struct {
	stdout, stderr string
	code           int
}

// String describes the run for failure messages.
func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// cliTimeout bounds every run of the binary in CLI tests.
const cliTimeout = time.Minute

// runSftpgate runs the sftpgate binary with args (no stdin) and returns its
// output and exit code. $CELLS_WORKING_DIR is removed from its environment
// so that only --workdir chooses the working directory.
func runSftpgate(t testing.TB, args ...string) cliResult {
	t.Helper()
	return runBinary(t, sftpgateBinary(t), args...)
}

// runBinary is runSftpgate with the given sftpgate binary.
func runBinary(t testing.TB, bin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = sftpgateEnv()
	err := cmd.Run()
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		res.code = exit.ExitCode()
	default:
		t.Fatalf("sftpgate %s: %v\n%s", strings.Join(args, " "), err, res)
	}
	return res
}

// sftpgateEnv is the environment to run the binary with: this process's,
// without $CELLS_WORKING_DIR, so that only --workdir chooses the working
// directory.
func sftpgateEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CELLS_WORKING_DIR=") {
			env = append(env, kv)
		}
	}
	return env
}
