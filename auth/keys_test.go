package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// authorizedLine returns the authorized_keys line of a public key, with
// options prepended and a comment appended.
func authorizedLine(t testing.TB, pub any, options, comment string) (string, ssh.PublicKey) {
	t.Helper()
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("NewPublicKey: %v", err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	if options != "" {
		line = options + " " + line
	}
	if comment != "" {
		line += " " + comment
	}
	return line, k
}

func newEd25519(t testing.TB) ed25519.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func TestParseAuthorizedKey(t *testing.T) {
	ed := newEd25519(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	line := func(pub any, opts string) string { l, _ := authorizedLine(t, pub, opts, "me@host"); return l }
	tests := []struct {
		name    string
		line    string
		from    string
		wantErr string // "" = accepted
	}{
		{"ed25519", line(ed, ""), "", ""},
		{"ecdsa", line(&ec.PublicKey, ""), "", ""},
		{"rsa 2048", line(&rsa2048.PublicKey, ""), "", ""},
		{"rsa 1024", line(&rsa1024.PublicKey, ""), "", "RSA key of 1024 bits is too weak"},
		{"from honoured", line(ed, `from="10.0.0.0/8,!10.1.2.3,192.168.1.*"`), "10.0.0.0/8,!10.1.2.3,192.168.1.*", ""},
		{"harmless options", line(ed, `restrict,no-pty,no-port-forwarding`), "", ""},
		{"command refused", line(ed, `command="/bin/sh"`), "", "forced command"},
		{"cert-authority refused", line(ed, `cert-authority`), "", "trustedUserCAKeys"},
		{"unknown option", line(ed, `permitopen="host:22"`), "", `key option "permitopen"`},
		{"from host name", line(ed, `from="*.example.com"`), "", "host names are not resolved"},
		{"from bad cidr", line(ed, `from="10.0.0.0/99"`), "", "not a CIDR block"},
		{"not a key", "hello world", "", "not an OpenSSH public key"},
		{"private key", "-----BEGIN OPENSSH PRIVATE KEY-----", "", "private key"},
		{"empty", "", "", "not an OpenSSH public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseAuthorizedKey(tt.line)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an ErrInvalid naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want accepted", err)
			}
			if p.From != tt.from {
				t.Errorf("From: got %q, want %q", p.From, tt.from)
			}
			if p.Comment != "me@host" {
				t.Errorf("Comment: got %q, want me@host", p.Comment)
			}
		})
	}
}

func TestParseAuthorizedKeyRefusesCertificate(t *testing.T) {
	_, caPriv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(caPriv)
	if err != nil {
		t.Fatal(err)
	}
	_, k := authorizedLine(t, newEd25519(t), "", "")
	cert := &ssh.Certificate{Key: k, CertType: ssh.UserCert, ValidPrincipals: []string{"alice"}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, signer); err != nil {
		t.Fatal(err)
	}
	_, err = ParseAuthorizedKey(string(ssh.MarshalAuthorizedKey(cert)))
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("got %v, want a refusal naming the certificate", err)
	}
}

func TestMatchFrom(t *testing.T) {
	tests := []struct {
		list, remote string
		want         bool
	}{
		{"127.0.0.1", "127.0.0.1:2000", true},
		{"127.0.0.2", "127.0.0.1:2000", false},
		{"127.0.0.0/8", "127.0.0.1:2000", true},
		{"127.0.0.0/8,!127.0.0.1", "127.0.0.1:2000", false},
		{"!127.0.0.1,10.*", "10.2.3.4:1", true},
		{"10.?.3.4", "10.2.3.4:1", true},
		{"10.?.3.4", "10.22.3.4:1", false},
		{"::1", "[::1]:22", true},
		{"127.0.0.1", "[::ffff:127.0.0.1]:22", true},
		{"127.0.0.1", "not-an-address", false},
	}
	for _, tt := range tests {
		if got := matchFrom(tt.list, tt.remote); got != tt.want {
			t.Errorf("matchFrom(%q, %q): got %v, want %v", tt.list, tt.remote, got, tt.want)
		}
	}
}

func TestKeysStore(t *testing.T) { eachStore(t, testKeysStore) }

func testKeysStore(t *testing.T, open opener) {
	ctx := context.Background()
	clk := newFakeClock()
	s, _ := open(t, WithClock(clk.Now))
	mustUser(t, s, "alice")
	mustUser(t, s, "bob")
	line, pub := authorizedLine(t, newEd25519(t), "", "alice@laptop")
	const remote = "127.0.0.1:40000"

	if _, err := s.AddKey(ctx, "nobody", line, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("AddKey for a missing user: got %v, want ErrNotFound", err)
	}
	k, err := s.AddKey(ctx, "alice", line, "")
	if err != nil {
		t.Fatalf("AddKey: %v", err)
	}
	if k.Label != "alice@laptop" || k.Type != ssh.KeyAlgoED25519 || k.Fingerprint != ssh.FingerprintSHA256(pub) {
		t.Errorf("AddKey: got %+v", k)
	}
	if _, err := s.AddKey(ctx, "alice", line, "again"); !errors.Is(err, ErrExists) {
		t.Errorf("AddKey twice: got %v, want ErrExists", err)
	}
	if _, err := s.AddKey(ctx, "alice", "garbage", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddKey garbage: got %v, want ErrInvalid", err)
	}
	if ks, err := s.Keys(ctx, ""); err != nil || len(ks) != 1 {
		t.Fatalf("Keys after refusals: got %d keys, %v, want 1 (nothing stored for refused ones)", len(ks), err)
	}

	id, err := s.CheckKey(ctx, "alice", pub, remote)
	if err != nil || id != k.ID {
		t.Fatalf("CheckKey: got %q, %v, want %q, nil", id, err, k.ID)
	}
	if _, err := s.CheckKey(ctx, "bob", pub, remote); reasonOf(err) != string(ReasonUnknownKey) {
		t.Errorf("CheckKey as another user: got %v, want unknown-key", err)
	}
	_, other := authorizedLine(t, newEd25519(t), "", "")
	if _, err := s.CheckKey(ctx, "alice", other, remote); reasonOf(err) != string(ReasonUnknownKey) {
		t.Errorf("CheckKey with an unknown key: got %v, want unknown-key", err)
	}

	clk.Advance(time.Minute)
	if err := s.KeyUsed(ctx, "alice", k.ID, remote); err != nil {
		t.Fatalf("KeyUsed: %v", err)
	}
	ks, err := s.Keys(ctx, "alice")
	if err != nil || len(ks) != 1 || !ks[0].LastUsed.Equal(clk.Now()) {
		t.Fatalf("Keys: got %+v, %v, want last used %v", ks, err, clk.Now())
	}

	// Login methods.
	if err := s.SetAuthMethods(ctx, "alice", []string{"token", "cert"}); err != nil {
		t.Fatalf("SetAuthMethods: %v", err)
	}
	if _, err := s.CheckKey(ctx, "alice", pub, remote); reasonOf(err) != string(ReasonMethodDisabled) {
		t.Errorf("CheckKey with keys off: got %v, want method-disabled", err)
	}
	if err := s.CheckCertLogin(ctx, "alice", remote); err != nil {
		t.Errorf("CheckCertLogin with certs on: got %v, want nil", err)
	}
	if err := s.SetAuthMethods(ctx, "alice", []string{"key"}); err != nil {
		t.Fatalf("SetAuthMethods: %v", err)
	}
	if err := s.CheckCertLogin(ctx, "alice", remote); reasonOf(err) != string(ReasonMethodDisabled) {
		t.Errorf("CheckCertLogin with certs off: got %v, want method-disabled", err)
	}
	secret, _ := mustMint(t, s, "alice", MintOptions{Expires: time.Hour})
	if err := s.Check(ctx, "alice", secret, remote); reasonOf(err) != string(ReasonMethodDisabled) {
		t.Errorf("Check with tokens off: got %v, want method-disabled", err)
	}
	if err := s.CheckCertLogin(ctx, "nobody", remote); reasonOf(err) != string(ReasonUnknownUser) {
		t.Errorf("CheckCertLogin for a missing user: got %v, want unknown-user", err)
	}
	if u, err := s.User(ctx, "alice"); err != nil || strings.Join(u.AuthMethods, ",") != "key" {
		t.Errorf("User: got %+v, %v, want methods key", u, err)
	}
	for _, bad := range [][]string{{}, {"password"}, {"key", "key"}} {
		if err := s.SetAuthMethods(ctx, "alice", bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetAuthMethods(%q): got %v, want ErrInvalid", bad, err)
		}
	}
	if err := s.SetAuthMethods(ctx, "nobody", []string{"key"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetAuthMethods for a missing user: got %v, want ErrNotFound", err)
	}

	// Removal is effective at once; a deleted user's keys go with it.
	if err := s.RemoveKey(ctx, k.ID); err != nil {
		t.Fatalf("RemoveKey: %v", err)
	}
	if _, err := s.CheckKey(ctx, "alice", pub, remote); reasonOf(err) != string(ReasonUnknownKey) {
		t.Errorf("CheckKey after removal: got %v, want unknown-key", err)
	}
	if err := s.RemoveKey(ctx, k.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("RemoveKey twice: got %v, want ErrNotFound", err)
	}
	line2, pub2 := authorizedLine(t, newEd25519(t), "", "")
	if _, err := s.AddKey(ctx, "bob", line2, "b"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckKey(ctx, "bob", pub2, remote); reasonOf(err) != string(ReasonUnknownKey) {
		t.Errorf("CheckKey of a deleted user: got %v, want unknown-key", err)
	}
}

func TestCheckKeyFromAndLimiter(t *testing.T) { eachStore(t, testCheckKeyFromAndLimiter) }

func testCheckKeyFromAndLimiter(t *testing.T, open opener) {
	ctx := context.Background()
	s, _ := open(t)
	mustUser(t, s, "alice")
	line, pub := authorizedLine(t, newEd25519(t), `from="127.0.0.2"`, "")
	if _, err := s.AddKey(ctx, "alice", line, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckKey(ctx, "alice", pub, "127.0.0.2:5000"); err != nil {
		t.Errorf("CheckKey from an allowed address: got %v, want nil", err)
	}
	// Refused keys do not count as failed logins: many of them in a row
	// leave the token login possible.
	_, other := authorizedLine(t, newEd25519(t), "", "")
	for i := 0; i < 50; i++ {
		if _, err := s.CheckKey(ctx, "alice", other, "127.0.0.1:5000"); reasonOf(err) != string(ReasonUnknownKey) {
			t.Fatalf("attempt %d: got %v, want unknown-key", i, err)
		}
	}
	if _, err := s.CheckKey(ctx, "alice", pub, "127.0.0.1:5000"); reasonOf(err) != string(ReasonSourceAddress) {
		t.Errorf("CheckKey from another address: got %v, want source-address", err)
	}
	secret, _ := mustMint(t, s, "alice", MintOptions{Expires: time.Hour})
	if err := s.Check(ctx, "alice", secret, "127.0.0.1:5000"); err != nil {
		t.Errorf("token login after 50 refused keys: got %v, want nil", err)
	}
	// The limiter applies to keys too: wrong passwords lock keys out.
	for i := 0; i < DefaultMaxFailures; i++ {
		_ = s.Check(ctx, "alice", "wrong", "127.0.0.3:5000")
	}
	if _, err := s.CheckKey(ctx, "alice", pub, "127.0.0.3:5000"); reasonOf(err) != string(ReasonRateLimited) {
		t.Errorf("CheckKey after %d wrong passwords: got %v, want rate-limited", DefaultMaxFailures, err)
	}
	if err := s.CheckCertLogin(ctx, "alice", "127.0.0.3:5000"); reasonOf(err) != string(ReasonRateLimited) {
		t.Errorf("CheckCertLogin after %d wrong passwords: got %v, want rate-limited", DefaultMaxFailures, err)
	}
}
