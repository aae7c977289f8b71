package integration

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// dialAlgos logs in as user with the token, the client offering only the
// algorithms of algos (empty lists: the client's defaults).
func (g *gateway) dialAlgos(user, tok string, algos ssh.Config) (*ssh.Client, error) {
	g.secret(tok)
	conn, err := net.DialTimeout("tcp", g.addr, dialTimeout)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(dialTimeout))
	cfg := &ssh.ClientConfig{
		Config:          algos,
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.Password(tok)},
		HostKeyCallback: ssh.FixedHostKey(g.hostKey),
		Timeout:         dialTimeout,
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, g.addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

type algoCase struct {
	name  string
	algos ssh.Config
	ok    bool
	err   string // part of the client's error when refused
}

func runAlgoCases(t *testing.T, g *gateway, tok string, cases []algoCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			c, err := g.dialAlgos("alice", tok, tt.algos)
			if err == nil {
				defer c.Close()
			}
			switch {
			case tt.ok && err != nil:
				t.Fatalf("got %v, want a login", err)
			case !tt.ok && err == nil:
				t.Fatalf("got a login, want a refusal (%s)", tt.err)
			case !tt.ok && !strings.Contains(err.Error(), tt.err):
				t.Fatalf("got %v, want an error with %q", err, tt.err)
			}
			if tt.ok {
				newSFTP(t, c) // a session works over the algorithms chosen
			}
		})
	}
}

// TestGatewayAlgorithms: by default a client offering only SHA-1 key
// exchange or MACs is refused while one with modern algorithms logs in;
// configured lists are what the server offers.
func TestGatewayAlgorithms(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		g := startGateway(t, gwOptions{})
		tok := g.addUser("alice", personalWS)
		runAlgoCases(t, g, tok, []algoCase{
			{name: "client defaults", ok: true},
			{name: "kex dh-group14-sha1 only", algos: ssh.Config{KeyExchanges: []string{ssh.InsecureKeyExchangeDH14SHA1}}, err: "no common algorithm for key exchange"},
			{name: "kex dh-group14-sha256 only", algos: ssh.Config{KeyExchanges: []string{ssh.KeyExchangeDH14SHA256}}, err: "no common algorithm for key exchange"},
			{name: "mac hmac-sha1 only", algos: ssh.Config{Ciphers: []string{ssh.CipherAES128CTR}, MACs: []string{ssh.HMACSHA1}}, err: "no common algorithm"},
			{name: "mac hmac-sha1-96 only", algos: ssh.Config{Ciphers: []string{ssh.CipherAES128CTR}, MACs: []string{ssh.InsecureHMACSHA196}}, err: "no common algorithm"},
			{name: "mac hmac-sha2-256 without etm", algos: ssh.Config{Ciphers: []string{ssh.CipherAES128CTR}, MACs: []string{ssh.HMACSHA256}}, err: "no common algorithm"},
			{name: "curve25519 aes128-ctr etm", algos: ssh.Config{KeyExchanges: []string{ssh.KeyExchangeCurve25519}, Ciphers: []string{ssh.CipherAES128CTR}, MACs: []string{ssh.HMACSHA256ETM}}, ok: true},
			{name: "dh-group16 aes256-gcm", algos: ssh.Config{KeyExchanges: []string{ssh.KeyExchangeDH16SHA512}, Ciphers: []string{ssh.CipherAES256GCM}}, ok: true},
			{name: "ecdh-p256", algos: ssh.Config{KeyExchanges: []string{ssh.KeyExchangeECDHP256}}, ok: true},
		})
		if _, code, err := execCommand("", nil, "ssh", "-V"); err == nil && code == 0 {
			// OpenSSH offering only the SHA-1 group is refused too.
			out, code, _ := execCommand("", nil, "ssh", "-p", strings.TrimPrefix(g.addr, "127.0.0.1:"),
				"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
				"-o", "KexAlgorithms=diffie-hellman-group14-sha1", "-o", "ConnectTimeout=30", "alice@127.0.0.1", "true")
			if code == 0 || !strings.Contains(out, "no matching key exchange method") {
				t.Errorf("OpenSSH with diffie-hellman-group14-sha1 only: got exit %d, want a refusal:\n%s", code, out)
			}
		}
	})
	t.Run("configured", func(t *testing.T) {
		g := startGateway(t, gwOptions{extra: map[string]any{
			"kexAlgorithms": []string{ssh.KeyExchangeCurve25519},
			"ciphers":       []string{ssh.CipherAES256CTR},
			"macs":          []string{ssh.HMACSHA512ETM},
		}})
		tok := g.addUser("alice", personalWS)
		exact := ssh.Config{KeyExchanges: []string{ssh.KeyExchangeCurve25519}, Ciphers: []string{ssh.CipherAES256CTR}, MACs: []string{ssh.HMACSHA512ETM}}
		runAlgoCases(t, g, tok, []algoCase{
			{name: "client defaults", ok: true},
			{name: "the configured ones", algos: exact, ok: true},
			{name: "kex ecdh-p256", algos: ssh.Config{KeyExchanges: []string{ssh.KeyExchangeECDHP256}}, err: "no common algorithm for key exchange"},
			{name: "cipher aes128-gcm", algos: ssh.Config{Ciphers: []string{ssh.CipherAES128GCM}}, err: "no common algorithm"},
			{name: "mac hmac-sha2-256-etm", algos: ssh.Config{MACs: []string{ssh.HMACSHA256ETM}}, err: "no common algorithm"},
		})
	})
	t.Run("bad names refused at start", func(t *testing.T) {
		dir := t.TempDir()
		key := filepath.Join(dir, "id_ed25519")
		runCommand(t, "", nil, "ssh-keygen", "-t", "ed25519", "-f", key, "-N", "", "-q")
		for _, tt := range []struct{ key, value, want string }{
			{"kexAlgorithms", `["curve25519-sha256", "diffie-hellman-group42"]`, `kexAlgorithms: unknown algorithm "diffie-hellman-group42"`},
			{"ciphers", `["aes128-ctr", "des"]`, `ciphers: unknown algorithm "des"`},
			{"macs", `["hmac-md5"]`, `macs: unknown algorithm "hmac-md5"`},
			{"macs", `[]`, `macs: the list is empty`},
		} {
			conf := `{"services": {"pydio.gateway.sftp": {"enabled": true, "hostKeyFile": "` + key + `", "port": 1, "` + tt.key + `": ` + tt.value + `}}}`
			if err := os.WriteFile(filepath.Join(dir, "pydio.json"), []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			r := runSftpgate(t, "--workdir", dir, "serve")
			if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("serve with %s %s: got %s, want a refusal with %q", tt.key, tt.value, r, tt.want)
			}
		}
	})
}

// TestGatewayLongUserNameLog: a 200 KB user name with a newline in it is
// refused, and its log lines stay short, on one line, escaped.
func TestGatewayLongUserNameLog(t *testing.T) {
	g := startGateway(t, gwOptions{})
	g.addUser("alice", personalWS)
	name := "evil\nforged=line " + strings.Repeat("a", 200<<10)
	before := len(g.logs())
	c, err := g.dial(name, ssh.Password("not-a-token"))
	if err == nil {
		c.Close()
		t.Fatalf("a login with a 200 KB user name succeeded")
	}
	var logs string
	waitFor(10*time.Second, 50*time.Millisecond, func() bool {
		logs = g.logs()[before:]
		return strings.Contains(logs, "result=refused")
	})
	longest := 0
	for _, line := range strings.Split(logs, "\n") {
		longest = max(longest, len(line))
		if strings.HasPrefix(line, "forged=line") {
			t.Errorf("the user name's newline started a log line: %.80q", line)
		}
		if strings.Contains(line, "result=refused") {
			t.Logf("refusal line (%d bytes): %.200s…", len(line), line)
			if !strings.Contains(line, "more bytes") {
				t.Errorf("the refusal line does not say the name was cut: %.300q", line)
			}
		}
	}
	if !strings.Contains(logs, "result=refused") {
		t.Fatalf("no refusal logged:\n%s", tail(logs, 20))
	}
	if longest > 2048 {
		t.Errorf("longest log line: got %d bytes, want at most 2048", longest)
	}
}
