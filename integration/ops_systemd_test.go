package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// TestOpsSystemdUnit checks packaging/sftpgate.service: its settings, that
// systemd-analyze verify accepts it (with ExecStart pointed at the built
// binary, which verify wants to exist), and that the binary accepts the
// command line of ExecStart.
func TestOpsSystemdUnit(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "packaging", "sftpgate.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(data)
	settings := map[string]string{}
	for _, line := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = v
		}
	}
	const execStart = "/usr/local/bin/sftpgate --workdir /var/lib/sftpgate serve --log-format json"
	for k, want := range map[string]string{
		"Type":        "simple",
		"ExecStart":   execStart,
		"KillSignal":  "SIGTERM",
		"LimitNOFILE": "65536",
		"Restart":     "on-failure",
		"WantedBy":    "multi-user.target",
	} {
		if got := settings[k]; got != want {
			t.Errorf("%s: got %q, want %q", k, got, want)
		}
	}
	// The daemon's shutdown (sessions' grace, uploads, unmounts) is bounded
	// by 5 minutes: systemd must wait longer before SIGKILL.
	if stop, err := strconv.Atoi(settings["TimeoutStopSec"]); err != nil || stop <= 5*60 {
		t.Errorf("TimeoutStopSec: got %q, want more than 300 (seconds)", settings["TimeoutStopSec"])
	}

	verify, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	bin := sftpgateBinary(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "sftpgate.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/sftpgate", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, verify, "verify", path).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "sftpgate.service") {
		t.Errorf("systemd-analyze verify complains about the unit:\n%s", out)
	}

	// The flags of ExecStart exist (--help parses them without running).
	args := append(strings.Fields(execStart)[1:], "--help")
	if r := runSftpgate(t, args...); r.code != 0 || !strings.Contains(r.stdout, "--log-format") {
		t.Errorf("sftpgate %s: got %s, want the help of serve", strings.Join(args, " "), r)
	}
}
