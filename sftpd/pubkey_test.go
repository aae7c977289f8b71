package sftpd

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// fakeKeys accepts the keys of a map (fingerprint → id) for alice and
// certificates for logins in certUsers; it records what KeyUsed saw.
type fakeKeys struct {
	keys      map[string]string
	certUsers map[string]bool

	mu   sync.Mutex
	used []string // "login/keyID"
}

func (k *fakeKeys) CheckKey(_ context.Context, login string, key ssh.PublicKey, _ string) (string, error) {
	id, ok := k.keys[ssh.FingerprintSHA256(key)]
	if !ok || login != testUser {
		return "", refusal{"unknown-key"}
	}
	return id, nil
}

func (k *fakeKeys) CheckCertLogin(_ context.Context, login, _ string) error {
	if !k.certUsers[login] {
		return refusal{"method-disabled"}
	}
	return nil
}

func (k *fakeKeys) KeyUsed(_ context.Context, login, keyID, _ string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.used = append(k.used, login+"/"+keyID)
	return nil
}

func (k *fakeKeys) usedList() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.used...)
}

var _ KeyAuthenticator = (*fakeKeys)(nil)

func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// lyingSigner presents pub but signs with another key.
type lyingSigner struct {
	pub    ssh.PublicKey
	signer ssh.Signer
}

func (l lyingSigner) PublicKey() ssh.PublicKey { return l.pub }
func (l lyingSigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	return l.signer.Sign(r, data)
}

func TestPublicKeyLogin(t *testing.T) {
	key, other := newSigner(t), newSigner(t)
	fk := &fakeKeys{keys: map[string]string{ssh.FingerprintSHA256(key.PublicKey()): "key1"}}
	var mu sync.Mutex
	var logins []string
	ts := startServer(t, func(c *Config) {
		c.Keys = fk
		c.OnKeyLogin = func(m string) { mu.Lock(); logins = append(logins, m); mu.Unlock() }
	})

	c, err := ssh.Dial("tcp", ts.addr, clientConfig(testUser, ssh.PublicKeys(key)))
	if err != nil {
		t.Fatalf("login with alice's key: %v", err)
	}
	c.Close()
	if got := fk.usedList(); len(got) != 1 || got[0] != "alice/key1" {
		t.Errorf("KeyUsed: got %q, want [alice/key1]", got)
	}

	// An unknown key, then the token: the key is refused (no delay, not a
	// token check), the token logs in.
	start := time.Now()
	c, err = ssh.Dial("tcp", ts.addr, clientConfig(testUser, ssh.PublicKeys(other), ssh.Password(testToken)))
	if err != nil {
		t.Fatalf("login with an unknown key then the token: %v", err)
	}
	c.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("login took %v", d)
	}
	if got := ts.auth.calls.Load(); got != 1 {
		t.Errorf("token checks: got %d, want 1", got)
	}

	// A client presenting alice's key but unable to sign with it: the key
	// passes the lookup, the signature fails, nothing is recorded.
	_, err = ssh.Dial("tcp", ts.addr, clientConfig(testUser, ssh.PublicKeys(lyingSigner{pub: key.PublicKey(), signer: other})))
	if err == nil {
		t.Fatal("login with a forged signature: got success, want refused")
	}
	if got := fk.usedList(); len(got) != 1 {
		t.Errorf("KeyUsed after a forged signature: got %q, want still one use", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(logins) != 1 || logins[0] != MethodKey {
		t.Errorf("OnKeyLogin: got %q, want [%s]", logins, MethodKey)
	}
	if log := ts.log.String(); !strings.Contains(log, "reason=unknown-key") || !strings.Contains(log, "method=publickey user=alice key=\"ssh-ed25519 SHA256:") {
		t.Errorf("log: got\n%s\nwant the refused key's reason and the accepted key's fingerprint", log)
	}
}

func TestCertificateLogin(t *testing.T) {
	ca, rogue := newSigner(t), newSigner(t)
	fk := &fakeKeys{certUsers: map[string]bool{testUser: true}}
	ts := startServer(t, func(c *Config) {
		c.Keys = fk
		c.TrustedUserCAKeys = []ssh.PublicKey{ca.PublicKey()}
	})
	now := time.Now()
	valid := func(c *ssh.Certificate) {
		c.ValidAfter, c.ValidBefore = uint64(now.Add(-time.Minute).Unix()), uint64(now.Add(time.Hour).Unix())
	}
	tests := []struct {
		name   string
		signer ssh.Signer
		mod    func(*ssh.Certificate)
		user   string
		reason string // "" = accepted
	}{
		{"good", ca, valid, testUser, ""},
		{"no expiry", ca, func(c *ssh.Certificate) { c.ValidBefore = ssh.CertTimeInfinity }, testUser, ""},
		{"source-address allows", ca, func(c *ssh.Certificate) {
			valid(c)
			c.CriticalOptions = map[string]string{"source-address": "10.0.0.0/8,127.0.0.1/32"}
		}, testUser, ""},
		{"known extensions", ca, func(c *ssh.Certificate) {
			valid(c)
			c.Extensions = map[string]string{"permit-pty": "", "permit-port-forwarding": ""}
		}, testUser, ""},
		{"expired", ca, func(c *ssh.Certificate) {
			c.ValidAfter, c.ValidBefore = uint64(now.Add(-2*time.Hour).Unix()), uint64(now.Add(-time.Hour).Unix())
		}, testUser, "expired"},
		{"not yet valid", ca, func(c *ssh.Certificate) {
			c.ValidAfter, c.ValidBefore = uint64(now.Add(time.Hour).Unix()), uint64(now.Add(2*time.Hour).Unix())
		}, testUser, `"not yet valid"`},
		{"another principal", ca, func(c *ssh.Certificate) { valid(c); c.ValidPrincipals = []string{"bob"} }, testUser, `"principal is not the login"`},
		{"untrusted CA", rogue, valid, testUser, `"untrusted CA"`},
		{"source-address excludes", ca, func(c *ssh.Certificate) {
			valid(c)
			c.CriticalOptions = map[string]string{"source-address": "10.0.0.0/8"}
		}, testUser, "source-address"},
		{"unknown critical option", ca, func(c *ssh.Certificate) {
			valid(c)
			c.CriticalOptions = map[string]string{"force-command": "/bin/true"}
		}, testUser, `unknown critical option \"force-command\"`},
		{"unknown extension", ca, func(c *ssh.Certificate) {
			valid(c)
			c.Extensions = map[string]string{"custom@example.com": ""}
		}, testUser, `unknown certificate extension \"custom@example.com\"`},
		{"host certificate", ca, func(c *ssh.Certificate) { valid(c); c.CertType = ssh.HostCert }, testUser, `"not a user certificate"`},
		{"certificates off for the user", ca, func(c *ssh.Certificate) { valid(c); c.ValidPrincipals = []string{"bob"} }, "bob", "method-disabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := newSigner(t)
			cert := &ssh.Certificate{Key: key.PublicKey(), CertType: ssh.UserCert, KeyId: tt.name,
				ValidPrincipals: []string{testUser}}
			tt.mod(cert)
			if err := cert.SignCert(rand.Reader, tt.signer); err != nil {
				t.Fatal(err)
			}
			cs, err := ssh.NewCertSigner(cert, key)
			if err != nil {
				t.Fatal(err)
			}
			before := len(fk.usedList())
			c, err := ssh.Dial("tcp", ts.addr, clientConfig(tt.user, ssh.PublicKeys(cs)))
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("got %v, want a login", err)
				}
				c.Close()
				if got := fk.usedList(); len(got) != before+1 || got[len(got)-1] != testUser+"/" {
					t.Errorf("KeyUsed: got %q, want one more alice/ (no key id)", got)
				}
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("got a login, want refused")
			}
			if want := "method=certificate user=" + tt.user; !strings.Contains(ts.log.String(), tt.reason) || !strings.Contains(ts.log.String(), want) {
				t.Errorf("log: got\n%s\nwant %q with reason=%s", ts.log.String(), want, tt.reason)
			}
			if got := len(fk.usedList()); got != before {
				t.Errorf("KeyUsed calls: got %d, want %d", got, before)
			}
		})
	}
}

func TestSourceAddressAllows(t *testing.T) {
	for _, tt := range []struct {
		list, remote string
		want         bool
	}{
		{"127.0.0.1/32", "127.0.0.1:22", true},
		{"127.0.0.1", "127.0.0.1:22", true},
		{"10.0.0.0/8, 127.0.0.0/8", "127.0.0.5:22", true},
		{"10.0.0.0/8", "127.0.0.1:22", false},
		{"::1/128", "[::1]:22", true},
		{"127.0.0.1/32", "[::ffff:127.0.0.1]:22", true},
		{"garbage", "127.0.0.1:22", false},
		{"127.0.0.1/32", "not-an-address", false},
	} {
		if got := sourceAddressAllows(tt.list, tt.remote); got != tt.want {
			t.Errorf("sourceAddressAllows(%q, %q): got %v, want %v", tt.list, tt.remote, got, tt.want)
		}
	}
}
