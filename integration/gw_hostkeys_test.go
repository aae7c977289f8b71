package integration

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// pinnedAlgorithms are the host key algorithms a client that knows only
// key offers (an RSA key signs with SHA-2 since OpenSSH 8.8).
func pinnedAlgorithms(key ssh.PublicKey) []string {
	if key.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	return []string{key.Type()}
}

// TestGatewayHostKeys starts a gateway with an Ed25519 hostKeyFile and RSA
// and ECDSA keys in hostKeyFiles; a client that pins any one of them, and
// offers only its algorithms, logs in and lists its workspaces: the Go
// client (as rclone's HostKeyPinning does) and OpenSSH's sftp with a
// known_hosts file holding that one key.
func TestGatewayHostKeys(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{hostKeyFiles: []string{"rsa", "ecdsa"}})
	tok := g.addUser("zed", personalWS)
	g.secret(tok)
	if got := len(g.hostKeys); got != 3 {
		t.Fatalf("got %d host keys, want 3", got)
	}
	for _, key := range g.hostKeys {
		t.Run("go client pins "+key.Type(), func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", g.addr, dialTimeout)
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(dialTimeout))
			var seen ssh.PublicKey
			cfg := &ssh.ClientConfig{
				User: "zed",
				Auth: []ssh.AuthMethod{ssh.Password(tok)},
				HostKeyCallback: func(host string, remote net.Addr, k ssh.PublicKey) error {
					seen = k
					return ssh.FixedHostKey(key)(host, remote, k)
				},
				HostKeyAlgorithms: pinnedAlgorithms(key),
				Timeout:           dialTimeout,
			}
			c, chans, reqs, err := ssh.NewClientConn(conn, g.addr, cfg)
			if err != nil {
				conn.Close()
				t.Fatalf("connect pinning %s: got %v, want success", key.Type(), err)
			}
			conn.SetDeadline(time.Time{})
			client := ssh.NewClient(c, chans, reqs)
			defer client.Close()
			if seen == nil || seen.Type() != key.Type() {
				t.Errorf("got host key %v, want the %s key", seen, key.Type())
			}
			sc := newSFTP(t, client)
			entries, err := sc.ReadDir("/")
			if err != nil {
				t.Fatalf("ReadDir /: %v", err)
			}
			if len(entries) != 1 || entries[0].Name() != personalWS {
				t.Errorf("got %d entries in /, want %s only", len(entries), personalWS)
			}
		})
		t.Run("openssh pins "+key.Type(), func(t *testing.T) {
			dir := t.TempDir()
			known := filepath.Join(dir, "known_hosts")
			line := "[127.0.0.1]:" + strconv.Itoa(g.port) + " " + string(ssh.MarshalAuthorizedKey(key))
			if err := os.WriteFile(known, []byte(line), 0o600); err != nil {
				t.Fatal(err)
			}
			batch := filepath.Join(dir, "batch")
			if err := os.WriteFile(batch, []byte("ls /\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			out, code, err := execCommand("", []string{"SSHPASS=" + tok}, "sshpass", "-e",
				"sftp", "-o", "BatchMode=no", "-b", batch, "-P", strconv.Itoa(g.port),
				"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+known,
				"-o", "GlobalKnownHostsFile=/dev/null", "-o", "PubkeyAuthentication=no",
				"-o", "LogLevel=ERROR", "-o", "ConnectTimeout=30", "zed@127.0.0.1")
			if err != nil || code != 0 {
				t.Fatalf("sftp pinning %s: got exit %d, %v, want success:\n%s", key.Type(), code, err, out)
			}
			if !strings.Contains(out, personalWS) {
				t.Errorf("got %q, want the listing of / with %s", out, personalWS)
			}
		})
	}
}

// TestCLIServeBadHostKeyFiles starts `sftpgate serve` with a hostKeyFiles
// entry that is missing, is not a private key, or repeats a key type: each
// is refused at start with a message naming the file.
func TestCLIServeBadHostKeyFiles(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ed := filepath.Join(c.dir, "id_ed25519")
	runCommand(t, "", nil, "ssh-keygen", "-t", "ed25519", "-f", ed, "-N", "", "-q")
	ed2 := filepath.Join(c.dir, "other_ed25519")
	runCommand(t, "", nil, "ssh-keygen", "-t", "ed25519", "-f", ed2, "-N", "", "-q")
	garbage := filepath.Join(c.dir, "garbage_key")
	if err := os.WriteFile(garbage, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const s = `services."pydio.gateway.sftp".`
	tests := []struct {
		name  string
		files string
		code  int
		want  []string
	}{
		{"missing", `["id_ed25519.pub", "nope"]`, 1, []string{s + "hostKeyFiles[1]", filepath.Join(c.dir, "nope"), "no such file"}},
		{"not a private key", `["` + garbage + `"]`, 1, []string{garbage, "not a usable private key"}},
		{"public key", `["id_ed25519.pub"]`, 1, []string{ed + ".pub", "not a usable private key"}},
		{"two ed25519 keys", `["other_ed25519"]`, 1, []string{ed2, ed, "ssh-ed25519"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port, err := testenv.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			cfg := filepath.Join(c.dir, "pydio.json")
			data := `{"services": {"pydio.gateway.sftp": {"enabled": true, "bind": "127.0.0.1", "port": ` + strconv.Itoa(port) +
				`, "hostKeyFile": "id_ed25519", "hostKeyFiles": ` + tt.files + `}}}`
			if err := os.WriteFile(cfg, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			c.fails(tt.code, tt.want, "serve")
		})
	}
}
