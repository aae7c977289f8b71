package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// ConnectTimeout is how long OpenPostgres (and every new connection
// afterwards) waits for the server when the URL sets no connect_timeout.
const ConnectTimeout = 10 * time.Second

// IsPostgresURL reports whether database names a PostgreSQL database
// ("postgres://…" or "postgresql://…") rather than the embedded SQLite.
func IsPostgresURL(database string) bool {
	return strings.HasPrefix(database, "postgres://") || strings.HasPrefix(database, "postgresql://")
}

// RedactURL returns a PostgreSQL URL with its password (in the user info
// or the password parameter) replaced by "****", for printing and logs.
// A URL that does not parse comes back as "postgres://****" (it may hold
// a password anywhere).
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "postgres://****"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "****")
		}
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "****")
		u.RawQuery = q.Encode()
	}
	return strings.Replace(u.String(), ":%2A%2A%2A%2A@", ":****@", 1)
}

// OpenPostgres opens the store in the PostgreSQL database at rawURL
// ("postgres://user:password@host:port/db?sslmode=…", as libpq reads it),
// applying the schema migrations (under an advisory lock, so that several
// nodes starting together migrate once) and generating the token-signing
// key on first use. The failed-login limiter is then shared by every
// store on the database (see LimiterConfig for its rules).
//
// An error names the server (host:port, never the password) and, when it
// is known, the cause: DNS, connection refused, timeout, authentication,
// TLS or a missing database.
func OpenPostgres(rawURL string, opts ...Option) (*Store, error) {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if o.now == nil {
		o.now = time.Now
	}
	cc, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("auth: postgres %s: bad URL", RedactURL(rawURL))
	}
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = ConnectTimeout
	}
	server := net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port)))
	pdb := stdlib.OpenDB(*cc)
	pdb.SetMaxOpenConns(16)
	pdb.SetMaxIdleConns(4)
	pdb.SetConnMaxIdleTime(5 * time.Minute)
	d := &db{DB: pdb, dialect: dialectPostgres}
	dbc := newDBClock(d, o.now)
	s := &Store{db: d, now: o.now, dbc: dbc, lim: newDBLimiter(d, o.limiter, o.now, dbc), where: "postgres " + server}
	ctx, cancel := context.WithTimeout(context.Background(), cc.ConnectTimeout+2*BusyTimeout)
	defer cancel()
	if err := pdb.PingContext(ctx); err != nil {
		pdb.Close()
		return nil, fmt.Errorf("auth: postgres %s: %s: %w", server, describeDBError(err), err)
	}
	if err := s.init(ctx); err != nil {
		pdb.Close()
		return nil, fmt.Errorf("auth: postgres %s: %w", server, err)
	}
	return s, nil
}

// describeDBError names the cause of a database connection error in a few
// words ("DNS lookup failed", "connection refused", "authentication
// failed", "TLS failed", …), or "error" when it is none of those.
func describeDBError(err error) string {
	var (
		dnsErr  *net.DNSError
		pgErr   *pgconn.PgError
		certErr x509.UnknownAuthorityError
		hostErr x509.HostnameError
		recErr  tls.RecordHeaderError
		certInv x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &dnsErr):
		return "DNS lookup failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.As(err, &pgErr):
		switch {
		case pgErr.Code == "28P01" || pgErr.Code == "28000":
			return "authentication failed"
		case pgErr.Code == "3D000":
			return "database does not exist"
		case strings.HasPrefix(pgErr.Code, "08"), strings.HasPrefix(pgErr.Code, "57P"):
			return "server unavailable"
		}
		return "server error " + pgErr.Code
	case errors.As(err, &certErr), errors.As(err, &hostErr), errors.As(err, &recErr), errors.As(err, &certInv),
		strings.Contains(err.Error(), "tls:"), strings.Contains(err.Error(), "server refused TLS connection"):
		return "TLS failed"
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return "timed out"
	case errors.Is(err, sql.ErrConnDone), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, io.EOF), errors.Is(err, syscall.EPIPE):
		return "connection lost"
	}
	return "error"
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
