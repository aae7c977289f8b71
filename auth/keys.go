package auth

import (
	"context"
	"crypto/rsa"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgate/sftpgate/internal/authapi"
)

// MinRSABits is the smallest RSA key accepted as a user key.
const MinRSABits = 2048

// Login methods a user may be allowed (SetAuthMethods).
const (
	// MethodToken is the personal token given as the SSH password.
	MethodToken = "token"
	// MethodKey is an SSH public key added with AddKey.
	MethodKey = "key"
	// MethodCert is an SSH user certificate signed by a trusted CA.
	MethodCert = "cert"
)

// AllMethods are the login methods, in the order they are stored; a new
// user may use all of them.
var AllMethods = []string{MethodToken, MethodKey, MethodCert}

// Key is an SSH public key that may log in as its user.
type Key struct {
	// ID names the key (12 hex characters).
	ID string
	// Login is the user the key logs in as.
	Login string
	// Type is the key's algorithm, e.g. "ssh-ed25519".
	Type string
	// Fingerprint is the OpenSSH SHA256 fingerprint ("SHA256:...").
	Fingerprint string
	// Label is an optional note (the key's comment if none was given).
	Label string
	// From is the key's from="..." option: the address patterns it may
	// log in from; empty means any.
	From string
	// Created is when the key was added.
	Created time.Time
	// LastUsed is the last successful login with the key (zero: never).
	LastUsed time.Time
}

// harmlessKeyOptions are authorized_keys options that forbid what the
// gateway never offers anyway (it serves SFTP only: no shell, no pty, no
// forwarding, no rc file): they hold by construction.
var harmlessKeyOptions = []string{
	"restrict", "no-pty", "no-port-forwarding", "no-agent-forwarding",
	"no-x11-forwarding", "no-user-rc",
}

// ParsedKey is an authorized_keys line that passed ParseAuthorizedKey.
type ParsedKey struct {
	// Key is the public key.
	Key ssh.PublicKey
	// Comment is the line's comment.
	Comment string
	// From is the from="..." option ("" if none).
	From string
	// Line is the line, normalised (options, key, comment).
	Line string
}

// ParseAuthorizedKey checks one OpenSSH authorized_keys line: an RSA key of
// at least MinRSABits bits, an ECDSA or an Ed25519 key (security-key
// variants included), not a certificate. Options are honoured or refused,
// never ignored: from="..." (addresses, wildcards and CIDR, "!" to
// exclude; host names are refused since they are not resolved) is checked
// at every login; restrict, no-pty, no-port-forwarding,
// no-agent-forwarding, no-X11-forwarding and no-user-rc hold anyway; any
// other option is refused. The error wraps ErrInvalid and names the
// problem.
func ParseAuthorizedKey(line string) (ParsedKey, error) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "-----BEGIN") {
		if strings.Contains(line, "PRIVATE KEY") {
			return ParsedKey{}, invalid("key", "this is a private key: give the public one (the .pub file)")
		}
		return ParsedKey{}, invalid("key", "not an OpenSSH public key (an authorized_keys line such as \"ssh-ed25519 AAAA... comment\")")
	}
	pub, comment, opts, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return ParsedKey{}, invalid("key", "not an OpenSSH public key (an authorized_keys line such as \"ssh-ed25519 AAAA... comment\")")
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return ParsedKey{}, invalid("key", "this is a certificate: trust its CA with trustedUserCAKeys instead of adding it")
	}
	if err := checkKeyType(pub); err != nil {
		return ParsedKey{}, err
	}
	p := ParsedKey{Key: pub, Comment: comment}
	for _, o := range opts {
		name, val, hasVal := strings.Cut(o, "=")
		lname := strings.ToLower(name)
		switch {
		case lname == "from" && hasVal:
			pats, err := unquoteOption(val)
			if err != nil {
				return ParsedKey{}, invalid("key option from", err.Error())
			}
			if err := validateFrom(pats); err != nil {
				return ParsedKey{}, err
			}
			if p.From != "" {
				return ParsedKey{}, invalid("key option from", "given twice")
			}
			p.From = pats
		case !hasVal && slices.Contains(harmlessKeyOptions, lname):
		case lname == "command":
			return ParsedKey{}, invalid("key option command", "a forced command cannot be honoured: the gateway only serves SFTP")
		case lname == "cert-authority":
			return ParsedKey{}, invalid("key option cert-authority", "put CA keys in the trustedUserCAKeys file instead")
		default:
			return ParsedKey{}, invalid(fmt.Sprintf("key option %q", name), "not supported (supported: from=\"...\", "+strings.Join(harmlessKeyOptions, ", ")+")")
		}
	}
	var b strings.Builder
	if len(opts) > 0 {
		b.WriteString(strings.Join(opts, ","))
		b.WriteByte(' ')
	}
	b.WriteString(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))))
	if comment != "" {
		b.WriteByte(' ')
		b.WriteString(comment)
	}
	p.Line = b.String()
	return p, nil
}

// checkKeyType refuses key types other than RSA (of MinRSABits or more),
// ECDSA and Ed25519.
func checkKeyType(pub ssh.PublicKey) error {
	switch t := pub.Type(); t {
	case ssh.KeyAlgoRSA:
		ck, ok := pub.(ssh.CryptoPublicKey)
		if !ok {
			return invalid("key", "cannot read the RSA key")
		}
		rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey)
		if !ok {
			return invalid("key", "cannot read the RSA key")
		}
		if n := rk.N.BitLen(); n < MinRSABits {
			return invalid("key", fmt.Sprintf("RSA key of %d bits is too weak (at least %d)", n, MinRSABits))
		}
	case ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoED25519,
		ssh.KeyAlgoSKECDSA256, ssh.KeyAlgoSKED25519:
	default:
		return invalid("key", fmt.Sprintf("key type %q is not accepted (RSA of %d bits or more, ECDSA, Ed25519)", t, MinRSABits))
	}
	return nil
}

// unquoteOption returns the value of an option="value" (quotes required,
// \" allowed inside).
func unquoteOption(v string) (string, error) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", errors.New("the value must be in double quotes")
	}
	return strings.ReplaceAll(v[1:len(v)-1], `\"`, `"`), nil
}

// validateFrom checks a from="..." pattern list: comma-separated, each an
// IP address, an IP address with * and ? wildcards, or a CIDR block,
// optionally preceded by "!".
func validateFrom(list string) error {
	if strings.TrimSpace(list) == "" {
		return invalid("key option from", "empty pattern list")
	}
	for _, p := range strings.Split(list, ",") {
		q := strings.TrimPrefix(p, "!")
		what := fmt.Sprintf("key option from: pattern %q", p)
		switch {
		case q == "":
			return invalid(what, "empty pattern")
		case strings.Contains(q, "/"):
			if _, err := netip.ParsePrefix(q); err != nil {
				return invalid(what, "not a CIDR block")
			}
		case strings.Trim(q, "0123456789abcdefABCDEF.:*?") != "":
			return invalid(what, "host names are not resolved: use addresses, wildcards or CIDR blocks")
		}
	}
	return nil
}

// RemoteAddr returns the address of remote ("host:port" or a bare
// address), IPv4-mapped IPv6 unmapped; ok is false when it is not an IP.
func RemoteAddr(remote string) (netip.Addr, bool) { return authapi.RemoteAddr(remote) }

// matchFrom reports whether the address of remote passes the from="..."
// patterns, as OpenSSH decides it: a matching negated pattern refuses,
// else any matching pattern accepts.
func matchFrom(list, remote string) bool {
	addr, valid := RemoteAddr(remote)
	if !valid {
		return false
	}
	ip := addr.String()
	ok := false
	for _, p := range strings.Split(list, ",") {
		q, neg := strings.CutPrefix(p, "!")
		var m bool
		if strings.Contains(q, "/") {
			pf, err := netip.ParsePrefix(q)
			m = err == nil && pf.Contains(addr)
		} else {
			m, _ = path.Match(strings.ToLower(q), ip)
		}
		if m && neg {
			return false
		}
		ok = ok || m
	}
	return ok
}

// AddKey adds an authorized_keys line as a key of login (see
// ParseAuthorizedKey for what is accepted). An empty label takes the
// key's comment. The error wraps ErrInvalid for a refused line or label
// (nothing is stored), ErrNotFound if there is no such user, ErrExists if
// the user already has that key.
func (s *Store) AddKey(ctx context.Context, login, line, label string) (Key, error) {
	p, err := ParseAuthorizedKey(line)
	if err != nil {
		return Key{}, err
	}
	if label == "" && validateLabel(p.Comment) == nil {
		label = p.Comment
	}
	if err := validateLabel(label); err != nil {
		return Key{}, err
	}
	k := Key{Login: login, Type: p.Key.Type(), Fingerprint: ssh.FingerprintSHA256(p.Key),
		Label: label, From: p.From, Created: s.now()}
	for attempt := 0; ; attempt++ {
		id, err := newTokenID()
		if err != nil {
			return Key{}, opErr("add key", err)
		}
		k.ID = id
		err = s.writeTx(ctx, func(tx *dbTx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE login = ?`, login).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return notFound(userWhat(login))
			}
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM user_keys WHERE login = ? AND fingerprint = ?`,
				login, k.Fingerprint).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return exists(fmt.Sprintf("key %s of user %q", k.Fingerprint, login))
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO user_keys(id, login, fingerprint, type, line, label, from_patterns, created)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, k.ID, login, k.Fingerprint, k.Type, p.Line, k.Label, k.From, nanos(k.Created))
			return err
		})
		if isConstraint(err) && attempt < 3 {
			continue // id collision
		}
		if err != nil {
			return Key{}, opErr("add key", err)
		}
		return k, nil
	}
}

// Keys returns the keys of login, or of every user if login is "", by
// creation time.
func (s *Store) Keys(ctx context.Context, login string) ([]Key, error) {
	q := `SELECT id, login, type, fingerprint, label, from_patterns, created, COALESCE(last_used, 0) FROM user_keys`
	var args []any
	if login != "" {
		q += ` WHERE login = ?`
		args = append(args, login)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY created, id`, args...)
	if err != nil {
		return nil, opErr("list keys", err)
	}
	defer rows.Close()
	var ks []Key
	for rows.Next() {
		var k Key
		var created, used int64
		if err := rows.Scan(&k.ID, &k.Login, &k.Type, &k.Fingerprint, &k.Label, &k.From, &created, &used); err != nil {
			return nil, opErr("list keys", err)
		}
		k.Created = fromNanos(created)
		if used != 0 {
			k.LastUsed = fromNanos(used)
		}
		ks = append(ks, k)
	}
	if err := rows.Err(); err != nil {
		return nil, opErr("list keys", err)
	}
	return ks, nil
}

// RemoveKey deletes a key; it no longer logs in from the next login on.
// The error wraps ErrNotFound if there is no such key.
func (s *Store) RemoveKey(ctx context.Context, id string) error {
	id = strings.TrimSpace(id)
	err := s.write(ctx, func() error {
		res, err := s.db.ExecContext(ctx, `DELETE FROM user_keys WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return notFound(fmt.Sprintf("key %q", id))
		}
		return nil
	})
	return opErr("remove key", err)
}

// CheckKey decides whether pub, a plain public key (not a certificate),
// may log in as login from remote, before the client proves it holds the
// private key. It returns the key's id, a *RefusedError (rate-limited,
// unknown-key, method-disabled, source-address) or a storage error. A
// refusal does not count as a failure for the limiter: SSH clients offer
// every key they have in turn. Call KeyUsed once the signature is
// verified.
func (s *Store) CheckKey(ctx context.Context, login string, pub ssh.PublicKey, remote string) (string, error) {
	if ok, err := s.lim.allow(ctx, login, remote); err != nil {
		return "", s.storeErr("check key", err)
	} else if !ok {
		return "", refused(ReasonRateLimited)
	}
	var id, from, methods string
	err := s.db.QueryRowContext(ctx, `SELECT k.id, k.from_patterns, u.auth_methods
		FROM user_keys k JOIN users u ON u.login = k.login
		WHERE k.login = ? AND k.fingerprint = ?`, login, ssh.FingerprintSHA256(pub)).Scan(&id, &from, &methods)
	if errors.Is(err, sql.ErrNoRows) {
		return "", refused(ReasonUnknownKey)
	}
	if err != nil {
		return "", s.storeErr("check key", err)
	}
	if !slices.Contains(strings.Split(methods, ","), MethodKey) {
		return "", refused(ReasonMethodDisabled)
	}
	if from != "" && !matchFrom(from, remote) {
		return "", refused(ReasonSourceAddress)
	}
	return id, nil
}

// CheckCertLogin decides whether login may log in from remote with a user
// certificate that the SSH layer has already checked (trusted CA,
// principal, validity, critical options). It returns nil, a
// *RefusedError (rate-limited, unknown-user, method-disabled) or a storage
// error; like CheckKey, a refusal does not count as a failure.
func (s *Store) CheckCertLogin(ctx context.Context, login, remote string) error {
	if ok, err := s.lim.allow(ctx, login, remote); err != nil {
		return s.storeErr("check certificate", err)
	} else if !ok {
		return refused(ReasonRateLimited)
	}
	var methods string
	err := s.db.QueryRowContext(ctx, `SELECT auth_methods FROM users WHERE login = ?`, login).Scan(&methods)
	if errors.Is(err, sql.ErrNoRows) {
		return refused(ReasonUnknownUser)
	}
	if err != nil {
		return s.storeErr("check certificate", err)
	}
	if !slices.Contains(strings.Split(methods, ","), MethodCert) {
		return refused(ReasonMethodDisabled)
	}
	return nil
}

// KeyUsed records a successful key or certificate login (keyID "" for a
// certificate): the key's last use, and a success for the limiter.
func (s *Store) KeyUsed(ctx context.Context, login, keyID, remote string) error {
	s.lim.success(ctx, login, remote)
	if keyID == "" {
		return nil
	}
	err := s.write(ctx, func() error {
		_, err := s.db.ExecContext(ctx, `UPDATE user_keys SET last_used = ? WHERE id = ?`, nanos(s.now()), keyID)
		return err
	})
	return opErr("record key use", err)
}

// ParseAuthMethods parses a comma-separated list of login methods (token,
// key, cert), at least one, none twice. The error wraps ErrInvalid.
func ParseAuthMethods(list string) ([]string, error) {
	var ms []string
	for _, m := range strings.Split(list, ",") {
		m = strings.TrimSpace(m)
		switch {
		case !slices.Contains(AllMethods, m):
			return nil, invalid(fmt.Sprintf("login method %q", m), "unknown (known: "+strings.Join(AllMethods, ", ")+")")
		case slices.Contains(ms, m):
			return nil, invalid(fmt.Sprintf("login method %q", m), "listed twice")
		}
		ms = append(ms, m)
	}
	// Stored in the order of AllMethods.
	slices.SortFunc(ms, func(a, b string) int { return slices.Index(AllMethods, a) - slices.Index(AllMethods, b) })
	return ms, nil
}

// SetAuthMethods sets the login methods login may use (a non-empty subset
// of AllMethods); the change holds from the next login. The error wraps
// ErrInvalid or ErrNotFound.
func (s *Store) SetAuthMethods(ctx context.Context, login string, methods []string) error {
	ms, err := ParseAuthMethods(strings.Join(methods, ","))
	if err != nil {
		return err
	}
	err = s.write(ctx, func() error {
		res, err := s.db.ExecContext(ctx, `UPDATE users SET auth_methods = ? WHERE login = ?`, strings.Join(ms, ","), login)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return notFound(userWhat(login))
		}
		return nil
	})
	return opErr("set login methods", err)
}

// tokenMethodAllowed reports whether login may log in with a token; true
// when there is no such user (the token check then says why it fails).
func (s *Store) tokenMethodAllowed(ctx context.Context, login string) (bool, error) {
	var methods string
	err := s.db.QueryRowContext(ctx, `SELECT auth_methods FROM users WHERE login = ?`, login).Scan(&methods)
	if errors.Is(err, sql.ErrNoRows) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return slices.Contains(strings.Split(methods, ","), MethodToken), nil
}
