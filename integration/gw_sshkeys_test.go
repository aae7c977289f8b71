package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// keyAddedRE matches the output of "admin user key add".
var keyAddedRE = regexp.MustCompile(`^key ([0-9a-f]{12}) added for user `)

// sshKeygen makes an unencrypted key pair at dir/name (args such as
// "-t", "ed25519") and returns the private key's path.
func sshKeygen(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	f := filepath.Join(dir, name)
	runCommand(t, "", nil, "ssh-keygen", append(args, "-f", f, "-N", "", "-q", "-C", name)...)
	return f
}

// signCert signs key.pub with the CA at ca (ssh-keygen -s) and returns the
// certificate's path (key-cert.pub).
func signCert(t testing.TB, ca, key string, args ...string) string {
	t.Helper()
	runCommand(t, "", nil, "ssh-keygen", append(append([]string{"-q", "-s", ca, "-I", "test-cert"}, args...), key+".pub")...)
	return key + "-cert.pub"
}

// sftpKeyBatch runs OpenSSH sftp in batch mode logging in with the
// identity file only (plus cert, a certificate file, when not empty): no
// agent, no password.
func (g *gateway) sftpKeyBatch(t testing.TB, user, identity, cert, dir, batch string) (string, int) {
	t.Helper()
	bf := filepath.Join(t.TempDir(), "batch")
	if err := os.WriteFile(bf, []byte("lcd "+dir+"\n"+strings.TrimSpace(batch)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-b", bf, "-P", strconv.Itoa(g.port), "-i", identity,
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
		"-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "ConnectTimeout=30"}
	if cert != "" {
		args = append(args, "-o", "CertificateFile="+cert)
	}
	out, code, err := execCommand("", nil, "sftp", append(args, user+"@127.0.0.1")...)
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	return out, code
}

// TestGatewaySSHKeys logs in with OpenSSH sftp -i: a user's key works
// until it is removed or keys are turned off for the user; refused key
// files store nothing.
func TestGatewaySSHKeys(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{metrics: true})
	g.addUser("alice", personalWS)
	dir := t.TempDir()
	local := t.TempDir()
	writeLocal(t, filepath.Join(local, "small.txt"), 1, 1000)
	key := sshKeygen(t, dir, "alice_ed25519", "-t", "ed25519")
	other := sshKeygen(t, dir, "other_ed25519", "-t", "ed25519")

	m := keyAddedRE.FindStringSubmatch(g.mustCLI("admin", "user", "key", "add", "-u", "alice", "--file", key+".pub", "-l", "laptop").stdout)
	if m == nil {
		t.Fatal("key add: got no key id in the output")
	}
	id := m[1]
	before := testenv.MetricValueT(t, g.scrape(), "sftpgate_key_logins_total", "method=publickey")

	if out, code := g.sftpKeyBatch(t, "alice", key, "", local, "put small.txt /personal-files/by-key.txt"); code != 0 {
		t.Fatalf("sftp -i with alice's key: got exit %d, want 0\n%s", code, out)
	}
	if sum, _, _ := objectSum(t, g.minio, g.personalBucket, personalKey("alice", "by-key.txt")); sum != prngSum(1, 1000) {
		t.Errorf("object by-key.txt: got sha256 %s, want the file put", sum)
	}
	if got := testenv.MetricValueT(t, g.scrape(), "sftpgate_key_logins_total", "method=publickey") - before; got != 1 {
		t.Errorf("sftpgate_key_logins_total{method=publickey}: moved by %v, want 1", got)
	}
	_, rows := tableRows(t, g.mustCLI("admin", "user", "key", "list", "-u", "alice").stdout)
	if len(rows) != 1 || rows[0][0] != id || strings.Contains(strings.Join(rows[0], " "), "never") {
		t.Errorf("key list: got %q, want key %s with a last use", rows, id)
	}
	if out, code := g.sftpKeyBatch(t, "alice", other, "", local, "ls /"); code == 0 {
		t.Errorf("sftp -i with a key that is not alice's: got exit 0, want a refusal\n%s", out)
	}

	// Keys turned off for the user, then on again.
	g.mustCLI("admin", "user", "set", "-u", "alice", "--auth", "token")
	if out, code := g.sftpKeyBatch(t, "alice", key, "", local, "ls /"); code == 0 {
		t.Errorf("sftp -i with keys turned off: got exit 0, want a refusal\n%s", out)
	}
	g.mustCLI("admin", "user", "set", "-u", "alice", "--auth", "token,key")
	if out, code := g.sftpKeyBatch(t, "alice", key, "", local, "ls /"); code != 0 {
		t.Errorf("sftp -i with keys turned on again: got exit %d, want 0\n%s", code, out)
	}

	// A removed key is refused at the next login, by the running daemon.
	g.mustCLI("admin", "user", "key", "remove", id)
	if out, code := g.sftpKeyBatch(t, "alice", key, "", local, "ls /"); code == 0 {
		t.Errorf("sftp -i with a removed key: got exit 0, want a refusal\n%s", out)
	}
	logs := g.logs()
	for _, want := range []string{"unknown-key", "method-disabled"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log: got no %q, want every refusal logged with its reason", want)
		}
	}

	// A client offering several unknown keys before the token: up to 5
	// get through (refused key offers are free up to MaxAuthTries, 3),
	// 6 are one too many (the README says so).
	tok := g.token("alice", "1h")
	var many []string
	for i := 0; i < 6; i++ {
		many = append(many, "-i", sshKeygen(t, dir, "many_"+strconv.Itoa(i), "-t", "ed25519"))
	}
	for _, tt := range []struct {
		keys int
		ok   bool
	}{{5, true}, {6, false}} {
		// BatchMode=no before -b, which sets it to yes (the first value wins).
		args := append([]string{"-e", "sftp", "-o", "BatchMode=no", "-b", "-", "-P", strconv.Itoa(g.port),
			"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
			"-o", "KbdInteractiveAuthentication=no",
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "LogLevel=ERROR", "-o", "ConnectTimeout=30"}, many[:2*tt.keys]...)
		out, code, err := execCommand("ls /\n", []string{"SSHPASS=" + tok}, "sshpass", append(args, "alice@127.0.0.1")...)
		if err != nil {
			t.Fatalf("sftp: %v\n%s", err, out)
		}
		if (code == 0) != tt.ok {
			t.Errorf("token login after %d refused keys: got exit %d, want success %v\n%s", tt.keys, code, tt.ok, out)
		}
	}

	// Bad key files: refused with a message naming the problem, nothing stored.
	weak := sshKeygen(t, dir, "weak_rsa", "-t", "rsa", "-b", "1024")
	notKey := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notKey, []byte("hello, this is not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withCommand := filepath.Join(dir, "command.pub")
	pub, err := os.ReadFile(other + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(withCommand, append([]byte(`command="/bin/sh" `), pub...), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, file, want string
	}{
		{"not a public key", notKey, "not an OpenSSH public key"},
		{"private key", other, "private key"},
		{"weak RSA", weak + ".pub", "RSA key of 1024 bits is too weak"},
		{"forced command", withCommand, "forced command"},
		{"missing file", filepath.Join(dir, "missing.pub"), "no such file"},
	} {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			r := g.cli("admin", "user", "key", "add", "-u", "alice", "--file", tt.file)
			if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("key add %s: got exit %d, stderr %q, want a failure naming %q", tt.name, r.code, r.stderr, tt.want)
			}
		})
	}
	if _, rows := tableRows(t, g.mustCLI("admin", "user", "key", "list").stdout); len(rows) != 0 {
		t.Errorf("key list after refused adds: got %q, want no key", rows)
	}
}

// TestGatewaySSHCertificates logs in with certificates made by ssh-keygen
// -s: a good one logs in; expired, not-yet-valid, another principal, an
// untrusted CA, a source-address that excludes the client and an unknown
// critical option or extension are refused.
func TestGatewaySSHCertificates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := sshKeygen(t, dir, "ca", "-t", "ed25519")
	rogue := sshKeygen(t, dir, "rogue_ca", "-t", "ed25519")
	caFile := filepath.Join(dir, "trusted_ca")
	caPub, err := os.ReadFile(ca + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, append([]byte("# the test CA\n"), caPub...), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, gwOptions{metrics: true, extra: map[string]any{"trustedUserCAKeys": caFile}})
	g.addUser("alice", personalWS)
	local := t.TempDir()

	// Each case has its own key pair, its certificate signed as given.
	for _, tt := range []struct {
		name   string
		ca     string
		args   []string
		ok     bool
		reason string // logged for a refusal
	}{
		{"good", ca, []string{"-n", "alice", "-V", "-5m:+1h"}, true, ""},
		{"source-address that allows", ca, []string{"-n", "alice", "-O", "source-address=127.0.0.0/8"}, true, ""},
		{"expired", ca, []string{"-n", "alice", "-V", "20200101:20200102"}, false, "expired"},
		{"not yet valid", ca, []string{"-n", "alice", "-V", "+1d:+2d"}, false, "not yet valid"},
		{"another principal", ca, []string{"-n", "bob", "-V", "-5m:+1h"}, false, "principal is not the login"},
		{"untrusted CA", rogue, []string{"-n", "alice", "-V", "-5m:+1h"}, false, "untrusted CA"},
		{"source-address that excludes", ca, []string{"-n", "alice", "-O", "source-address=10.0.0.0/8"}, false, "source-address"},
		{"unknown critical option", ca, []string{"-n", "alice", "-O", "force-command=/bin/true"}, false, `unknown critical option \"force-command\"`},
		{"unknown extension", ca, []string{"-n", "alice", "-O", "extension:custom@example.com"}, false, `unknown certificate extension \"custom@example.com\"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			key := sshKeygen(t, t.TempDir(), "user_key", "-t", "ed25519")
			cert := signCert(t, tt.ca, key, tt.args...)
			out, code := g.sftpKeyBatch(t, "alice", key, cert, local, "ls /")
			if tt.ok {
				if code != 0 || !strings.Contains(out, "personal-files") {
					t.Errorf("sftp with the certificate: got exit %d, want 0 and the workspaces listed\n%s", code, out)
				}
				return
			}
			if code == 0 {
				t.Errorf("sftp with the certificate: got exit 0, want a refusal\n%s", out)
			}
			if !strings.Contains(g.logs(), tt.reason) {
				t.Errorf("log: got no %q, want the refusal's reason", tt.reason)
			}
		})
	}
	if got := testenv.MetricValueT(t, g.scrape(), "sftpgate_key_logins_total", "method=certificate"); got != 2 {
		t.Errorf("sftpgate_key_logins_total{method=certificate}: got %v, want 2", got)
	}

	// Certificates turned off for the user.
	g.mustCLI("admin", "user", "set", "-u", "alice", "--auth", "token,key")
	key := sshKeygen(t, t.TempDir(), "user_key", "-t", "ed25519")
	cert := signCert(t, ca, key, "-n", "alice")
	if out, code := g.sftpKeyBatch(t, "alice", key, cert, local, "ls /"); code == 0 {
		t.Errorf("sftp with certificates turned off: got exit 0, want a refusal\n%s", out)
	}
}
