package sftpd

import (
	"errors"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// errRefused is what the SSH layer sees for a refused login; the client
// only learns that the method failed.
var errRefused = errors.New("sftpd: login refused")

// sshConfig builds the SSH server configuration of one connection (the
// callbacks log with the connection's id).
func (c *serverConn) sshConfig() *ssh.ServerConfig {
	s := c.srv
	cfg := &ssh.ServerConfig{
		Config:        ssh.Config{Ciphers: serverCiphers},
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
	for _, k := range s.cfg.HostKeys {
		cfg.AddHostKey(k)
	}
	return cfg
}

// serverCiphers are the ciphers offered, AES only. A client takes the
// first of its own list that the server offers, and OpenSSH lists
// chacha20-poly1305 first, which golang.org/x/crypto runs without
// assembly: for a 512 MiB OpenSSH sftp put the daemon spent 4.6 s of CPU
// with it, 4.0 s with aes128-ctr (OpenSSH's next choice), 2.8 s with
// aes128-gcm; put/get went from 102/199 MiB/s to 112/292. Every client
// that has chacha20 also has these. Dropping it also takes away one of
// the two modes the Terrapin attack needs against clients without strict
// key exchange.
var serverCiphers = []string{
	ssh.CipherAES128GCM, ssh.CipherAES256GCM,
	ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR,
}

// checkLogin asks the Authenticator and writes the login audit event. A
// refusal takes at least FailureDelay from start.
func (c *serverConn) checkLogin(user, secret, method string, start time.Time) (*ssh.Permissions, error) {
	err := c.srv.cfg.Auth.Check(c.srv.ctx, user, secret, c.remote)
	if err == nil {
		c.log.Info("login", "result", "ok", "method", method, "user", user)
		return &ssh.Permissions{}, nil
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
