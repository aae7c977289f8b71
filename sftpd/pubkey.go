package sftpd

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgate/sftpgate/internal/authapi"
)

// KeyAuthenticator checks public-key and certificate logins (auth.Store
// is one).
type KeyAuthenticator interface {
	// CheckKey decides, before the client signs, whether a plain public
	// key may log in as login; it returns the key's id or a refusal.
	CheckKey(ctx context.Context, login string, key ssh.PublicKey, remote string) (keyID string, err error)
	// CheckCertLogin decides whether login may log in with a certificate
	// the server has already checked.
	CheckCertLogin(ctx context.Context, login, remote string) error
	// KeyUsed records a login whose signature verified (keyID "" for a
	// certificate).
	KeyUsed(ctx context.Context, login, keyID, remote string) error
}

// Login methods, as logged and as given to Config.OnKeyLogin.
const (
	MethodKey  = "publickey"
	MethodCert = "certificate"
)

// Permissions extensions set by the public-key callback and read back
// once the signature is verified.
const (
	extMethod = "sftpgate-method"
	extKeyID  = "sftpgate-key-id"
	extDesc   = "sftpgate-key"
)

// knownCertExtensions are the certificate extensions OpenSSH defines;
// each grants something the gateway never offers (it serves SFTP only) or,
// for no-touch-required, relaxes a check that the gateway keeps. Any other
// extension refuses the certificate.
var knownCertExtensions = []string{
	"permit-X11-forwarding", "permit-agent-forwarding", "permit-port-forwarding",
	"permit-pty", "permit-user-rc", "no-touch-required",
}

// keyRefusal is a refusal of a key or certificate found by sftpd itself.
type keyRefusal string

// Error returns the refusal with the package prefix.
func (r keyRefusal) Error() string { return "sftpd: key refused: " + string(r) }

// Why returns the reason, for the login audit event.
func (r keyRefusal) Why() string { return string(r) }

// checkPublicKey is the PublicKeyCallback: a certificate is checked
// against TrustedUserCAKeys, then the store decides; a plain key is looked
// up in the store. A refusal is logged but not delayed, and does not
// count as a failed login (clients offer their keys in turn).
func (c *serverConn) checkPublicKey(user string, key ssh.PublicKey) (*ssh.Permissions, error) {
	if cert, ok := key.(*ssh.Certificate); ok {
		desc := fmt.Sprintf("%s ID %s (serial %d) CA %s", ssh.FingerprintSHA256(cert.Key),
			strconv.Quote(CleanLogText(cert.KeyId)), cert.Serial, ssh.FingerprintSHA256(cert.SignatureKey))
		if err := c.checkCert(user, cert); err != nil {
			c.log.Info("login", "result", "refused", "method", MethodCert, "user", user, "key", desc, "reason", refusalReason(err, ""))
			return nil, errRefused
		}
		perms := &ssh.Permissions{
			CriticalOptions: maps.Clone(cert.CriticalOptions),
			Extensions:      map[string]string{extMethod: MethodCert, extDesc: desc},
		}
		return perms, nil
	}
	fp := ssh.FingerprintSHA256(key)
	id, err := c.srv.cfg.Keys.CheckKey(c.srv.ctx, user, key, c.remote)
	if err != nil {
		c.log.Info("login", "result", "refused", "method", MethodKey, "user", user, "key", key.Type()+" "+fp, "reason", refusalReason(err, ""))
		return nil, errRefused
	}
	return &ssh.Permissions{Extensions: map[string]string{extMethod: MethodKey, extKeyID: id, extDesc: key.Type() + " " + fp}}, nil
}

// checkCert checks a user certificate: signed by a trusted CA, for the
// principal user, within its validity, only known critical options
// (source-address, which must allow the client) and extensions; then
// asks the store.
func (c *serverConn) checkCert(user string, cert *ssh.Certificate) error {
	cas := c.srv.cfg.TrustedUserCAKeys
	trusted := func(k ssh.PublicKey) bool {
		m := k.Marshal()
		return slices.ContainsFunc(cas, func(ca ssh.PublicKey) bool { return bytes.Equal(ca.Marshal(), m) })
	}
	now := time.Now()
	switch {
	case cert.CertType != ssh.UserCert:
		return keyRefusal("not a user certificate")
	case len(cas) == 0:
		return keyRefusal("no trusted CA (trustedUserCAKeys)")
	case !trusted(cert.SignatureKey):
		return keyRefusal("untrusted CA")
	case !slices.Contains(cert.ValidPrincipals, user):
		return keyRefusal("principal is not the login")
	case cert.ValidAfter != 0 && now.Before(time.Unix(int64(min(cert.ValidAfter, 1<<63-1)), 0)):
		return keyRefusal("not yet valid")
	case cert.ValidBefore != ssh.CertTimeInfinity && !now.Before(time.Unix(int64(min(cert.ValidBefore, 1<<63-1)), 0)):
		return keyRefusal("expired")
	}
	for name, val := range cert.CriticalOptions {
		if name != "source-address" {
			return keyRefusal(fmt.Sprintf("unknown critical option %s", strconv.Quote(CleanLogText(name))))
		}
		if !sourceAddressAllows(val, c.remote) {
			return keyRefusal("source-address")
		}
	}
	for name := range cert.Extensions {
		if !slices.Contains(knownCertExtensions, name) {
			return keyRefusal(fmt.Sprintf("unknown certificate extension %s", strconv.Quote(CleanLogText(name))))
		}
	}
	// The signature, and the checks above again, by x/crypto.
	checker := ssh.CertChecker{IsUserAuthority: trusted, Clock: func() time.Time { return now }, SupportedCriticalOptions: []string{"source-address"}}
	if err := checker.CheckCert(user, cert); err != nil {
		return keyRefusal("certificate check failed")
	}
	return c.srv.cfg.Keys.CheckCertLogin(c.srv.ctx, user, c.remote)
}

// sourceAddressAllows reports whether remote's address is in the
// certificate's source-address list (comma-separated addresses and CIDR
// blocks).
func sourceAddressAllows(list, remote string) bool {
	addr, ok := authapi.RemoteAddr(remote)
	if !ok {
		return false
	}
	for _, p := range strings.Split(list, ",") {
		p = strings.TrimSpace(p)
		if pf, err := netip.ParsePrefix(p); err == nil && pf.Contains(addr) {
			return true
		}
		if a, err := netip.ParseAddr(p); err == nil && a.Unmap() == addr {
			return true
		}
	}
	return false
}

// publicKeyVerified is the VerifiedPublicKeyCallback: the client proved
// it holds the key; the login succeeds.
func (c *serverConn) publicKeyVerified(user string, perms *ssh.Permissions) (*ssh.Permissions, error) {
	method, id := perms.Extensions[extMethod], perms.Extensions[extKeyID]
	if err := c.srv.cfg.Keys.KeyUsed(c.srv.ctx, user, id, c.remote); err != nil {
		c.log.Warn("login: recording the key's use failed", "user", user, "err", err)
	}
	c.log.Info("login", "result", "ok", "method", method, "user", user, "key", perms.Extensions[extDesc])
	if c.srv.cfg.OnKeyLogin != nil {
		c.srv.cfg.OnKeyLogin(method)
	}
	return perms, nil
}
