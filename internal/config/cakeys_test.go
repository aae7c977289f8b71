package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// pubLine is the authorized_keys line of a public key.
func pubLine(t *testing.T, pub any) string {
	t.Helper()
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func TestConfigTrustedUserCAKeys(t *testing.T) {
	dir := t.TempDir()
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	good := pubLine(t, edPub)
	const s = `services."pydio.gateway.sftp".trustedUserCAKeys: `
	for _, tt := range []struct {
		name    string
		content string // "" = no file
		want    string // "" = accepted
	}{
		{"one key and comments", "# our CA\n\n" + good + " ca@example\n", ""},
		{"missing file", "", "cannot read"},
		{"empty", "# nothing\n", "holds no key"},
		{"not a key", "hello\n", "line 1: auth: key: invalid: not an OpenSSH public key"},
		{"weak RSA", good + "\n" + pubLine(t, &weak.PublicKey) + "\n", "line 2: auth: key: invalid: RSA key of 1024 bits is too weak"},
		{"options", `from="10.0.0.1" ` + good + "\n", "line 1: options are not supported"},
		{"publickey off", good + "\n", "set while pubkeyAuthentication is false"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			caFile := filepath.Join(t.TempDir(), "ca.pub")
			if tt.content != "" {
				if err := os.WriteFile(caFile, []byte(tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(t.TempDir(), "pydio.json")
			body := `"trustedUserCAKeys": "` + caFile + `"`
			if tt.name == "publickey off" {
				body += `, "pubkeyAuthentication": false`
			}
			if err := os.WriteFile(path, sectionJSON(body), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, _, err := LoadConfig(path, dir)
			if tt.want == "" {
				if err != nil || len(cfg.TrustedCAs) != 1 || cfg.TrustedUserCAKeys != caFile || !cfg.PubkeyAuthentication {
					t.Fatalf("got %v, %d CA keys, want 1 key from %s", err, len(cfg.TrustedCAs), caFile)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), s) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming trustedUserCAKeys and %q", err, tt.want)
			}
		})
	}
}
