package sftpd

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgate/sftpgate/internal/authapi"
)

// errRefused is what the SSH layer sees for a refused login; the client
// only learns that the method failed.
var errRefused = errors.New("sftpd: login refused")

// sshConfig builds the SSH server configuration of one connection (the
// callbacks log with the connection's id).
func (c *serverConn) sshConfig() *ssh.ServerConfig {
	s := c.srv
	cfg := &ssh.ServerConfig{
		Config:        ssh.Config{KeyExchanges: s.cfg.KeyExchanges, Ciphers: s.cfg.Ciphers, MACs: s.cfg.MACs},
		MaxAuthTries:  s.cfg.MaxAuthTries,
		ServerVersion: "SSH-2.0-sftpgate",
		PasswordCallback: func(meta ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
			return c.checkLogin(meta.User(), string(password), "password", time.Now())
		},
		KeyboardInteractiveCallback: func(meta ssh.ConnMetadata, client ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			answers, err := client("", "", []string{"Password: "}, []bool{false})
			start := time.Now()
			if err != nil {
				return nil, err
			}
			if len(answers) != 1 {
				c.log.Info("login", "result", "refused", "method", "keyboard-interactive", "user", meta.User(), "reason", "wrong number of answers")
				c.pad(start)
				return nil, errRefused
			}
			return c.checkLogin(meta.User(), answers[0], "keyboard-interactive", start)
		},
	}
	if s.cfg.Keys != nil {
		cfg.PublicKeyCallback = func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			return c.checkPublicKey(meta.User(), key)
		}
		cfg.VerifiedPublicKeyCallback = func(meta ssh.ConnMetadata, _ ssh.PublicKey, perms *ssh.Permissions, _ string) (*ssh.Permissions, error) {
			return c.publicKeyVerified(meta.User(), perms)
		}
	}
	for _, k := range s.cfg.HostKeys {
		cfg.AddHostKey(k)
	}
	return cfg
}

// Algorithm kinds, as named in errors (and as the configuration keys).
const (
	AlgoKeyExchange = "kexAlgorithms"
	AlgoCipher      = "ciphers"
	AlgoMAC         = "macs"
)

// DefaultKeyExchanges are the key exchanges offered by default: the
// hybrid post-quantum one, curve25519, the NIST curves and the 4096-bit
// Diffie-Hellman group with SHA-512; nothing with SHA-1 and no 2048-bit
// group.
var DefaultKeyExchanges = []string{
	ssh.KeyExchangeMLKEM768X25519, ssh.KeyExchangeCurve25519,
	ssh.KeyExchangeECDHP256, ssh.KeyExchangeECDHP384, ssh.KeyExchangeECDHP521,
	ssh.KeyExchangeDH16SHA512,
}

// DefaultMACs are the MACs offered by default: encrypt-then-MAC SHA-2
// only (the AES-GCM ciphers need none).
var DefaultMACs = []string{ssh.HMACSHA256ETM, ssh.HMACSHA512ETM}

// DefaultCiphers are the ciphers offered by default, AES only. A client takes the
// first of its own list that the server offers, and OpenSSH lists
// chacha20-poly1305 first, which golang.org/x/crypto runs without
// assembly: for a 512 MiB OpenSSH sftp put the daemon spent 4.6 s of CPU
// with it, 4.0 s with aes128-ctr (OpenSSH's next choice), 2.8 s with
// aes128-gcm; put/get went from 102/199 MiB/s to 112/292. Every client
// that has chacha20 also has these. Dropping it also takes away one of
// the two modes the Terrapin attack needs against clients without strict
// key exchange.
var DefaultCiphers = []string{
	ssh.CipherAES128GCM, ssh.CipherAES256GCM,
	ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR,
}

// scopesKey is the key of a login's scopes in ssh.Permissions.ExtraData.
type scopesKey struct{}

// loginScopes returns the scopes of the login that perms come from (nil,
// unscoped, for a login that carries none).
func loginScopes(perms *ssh.Permissions) authapi.Scopes {
	if perms == nil {
		return nil
	}
	s, _ := perms.ExtraData[scopesKey{}].(authapi.Scopes)
	return s
}

// checkLogin asks the Authenticator and writes the login audit event. A
// refusal takes at least FailureDelay from start.
func (c *serverConn) checkLogin(user, secret, method string, start time.Time) (*ssh.Permissions, error) {
	scopes, err := c.srv.cfg.Auth.Login(c.srv.ctx, user, secret, c.remote)
	if err == nil {
		c.log.Info("login", "result", "ok", "method", method, "user", user, "scopes", len(scopes))
		// The scopes ride on the permissions of the method that succeeded.
		return &ssh.Permissions{ExtraData: map[any]any{scopesKey{}: scopes}}, nil
	}
	c.log.Info("login", "result", "refused", "method", method, "user", user, "reason", refusalReason(err, secret))
	c.pad(start)
	return nil, errRefused
}

// pad sleeps until FailureDelay has passed since start (or shutdown).
func (c *serverConn) pad(start time.Time) {
	d := c.srv.cfg.FailureDelay - time.Since(start)
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.srv.ctx.Done():
	}
}

// refusalReason is the logged reason of a refused login: the error's Why()
// if it has one, else its text; the secret is cut out either way.
func refusalReason(err error, secret string) string {
	var w interface{ Why() string }
	reason := err.Error()
	if errors.As(err, &w) {
		reason = w.Why()
	}
	if secret != "" {
		reason = strings.ReplaceAll(reason, secret, "[redacted]")
	}
	return reason
}

// KnownAlgorithms returns the names golang.org/x/crypto/ssh implements for
// kind (AlgoKeyExchange, AlgoCipher or AlgoMAC), the insecure ones
// included (an administrator may need one for an old client).
func KnownAlgorithms(kind string) []string {
	sup, insec := ssh.SupportedAlgorithms(), ssh.InsecureAlgorithms()
	switch kind {
	case AlgoKeyExchange:
		return append(append(sup.KeyExchanges, "curve25519-sha256@libssh.org"), insec.KeyExchanges...)
	case AlgoCipher:
		return append(sup.Ciphers, insec.Ciphers...)
	case AlgoMAC:
		return append(sup.MACs, insec.MACs...)
	}
	return nil
}

// CheckAlgorithms returns an error naming kind and the first unknown or
// repeated name of list, or saying that list is empty.
func CheckAlgorithms(kind string, list []string) error {
	known := KnownAlgorithms(kind)
	if known == nil {
		return fmt.Errorf("sftpd: unknown algorithm kind %q", kind)
	}
	if len(list) == 0 {
		return fmt.Errorf("%s: the list is empty", kind)
	}
	for i, name := range list {
		if !slices.Contains(known, name) {
			return fmt.Errorf("%s: unknown algorithm %s (known: %s)", kind, strconv.Quote(CleanLogText(name)), strings.Join(known, ", "))
		}
		if slices.Contains(list[:i], name) {
			return fmt.Errorf("%s: %q is listed twice", kind, name)
		}
	}
	return nil
}
