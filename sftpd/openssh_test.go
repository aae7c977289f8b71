package sftpd

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// openssh runs an OpenSSH client binary (ssh or sftp) against ts as alice,
// answering the password prompt through SSH_ASKPASS.
func openssh(t *testing.T, ts *testServer, bin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	path, lerr := exec.LookPath(bin)
	if lerr != nil {
		t.Skipf("%s not installed: this test checks real OpenSSH clients", bin)
	}
	dir := t.TempDir()
	askpass := filepath.Join(dir, "askpass")
	if err := os.WriteFile(askpass, []byte("#!/bin/sh\necho '"+testToken+"'\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(ts.addr)
	portFlag := "-p"
	if bin == "sftp" {
		portFlag = "-P"
	}
	all := []string{"-F", "/dev/null", portFlag, port,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"-o", "BatchMode=no", "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=keyboard-interactive,password"}
	all = append(all, args...)
	all = append(all, testUser+"@"+host)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, all...)
	cmd.Env = append(os.Environ(), "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = nil
	err = cmd.Run()
	return out.String(), errb.String(), err
}

func TestOpenSSHShellMessage(t *testing.T) {
	ts := startServer(t, nil)
	_, stderr, err := openssh(t, ts, "ssh", "-T")
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Errorf("ssh: got %v, want exit status 1", err)
	}
	if !strings.Contains(stderr, sftpOnlyMessage) {
		t.Errorf("ssh stderr: got %q, want %q", stderr, sftpOnlyMessage)
	}
}

func TestOpenSSHSftp(t *testing.T) {
	ts := startServer(t, nil)
	root := ts.root(t)
	local := t.TempDir()
	data := randomBytes(t, 2<<20+77)
	src := filepath.Join(local, "src.bin")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// A partial upload that reput must complete.
	if err := os.WriteFile(filepath.Join(root, "partial.bin"), data[:1<<20+5], 0o644); err != nil {
		t.Fatal(err)
	}
	batch := filepath.Join(local, "batch")
	back := filepath.Join(local, "back.bin")
	script := strings.Join([]string{
		"put " + src + " /full.bin",
		"reput " + src + " /partial.bin",
		"get /full.bin " + back,
		"mkdir /d",
		"rename /full.bin /d/renamed.bin",
		"ls -l /d",
		"df /",
		"rm /d/renamed.bin",
		"rmdir /d",
	}, "\n") + "\n"
	if err := os.WriteFile(batch, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := openssh(t, ts, "sftp", "-b", batch)
	if err != nil {
		t.Fatalf("sftp: %v\nstdout: %s\nstderr: %s", err, stdout, stderr)
	}
	for _, f := range []string{filepath.Join(root, "partial.bin"), back} {
		got, err := os.ReadFile(f)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: got %d bytes (%v), want the %d uploaded", filepath.Base(f), len(got), err, len(data))
		}
	}
	if !strings.Contains(stdout, "renamed.bin") {
		t.Errorf("ls output: %q, want renamed.bin", stdout)
	}
	if _, err := os.Stat(filepath.Join(root, "d")); !os.IsNotExist(err) {
		t.Errorf("/d after rmdir: %v", err)
	}
}
