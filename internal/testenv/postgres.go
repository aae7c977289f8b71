package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoPostgres is returned by StartPostgres when the PostgreSQL server
// binaries are not installed.
var ErrNoPostgres = errors.New("testenv: postgresql server binaries not found (install the distribution's postgresql package, or set SFTPGATE_POSTGRES_BIN to its bin directory)")

// Postgres is a PostgreSQL server owned by a test or a test binary: a
// cluster made by initdb in a temporary directory, run as an unprivileged
// user (PostgreSQL refuses root), listening on 127.0.0.1 only, with
// password (SCRAM) authentication for the user "postgres".
type Postgres struct {
	// Host and Port are where the server listens (127.0.0.1).
	Host string
	Port int
	// User and Password are the superuser's credentials.
	User, Password string
	// Dir holds the cluster (Dir/data), the socket and the server log.
	Dir string

	bin  string
	cred *syscall.Credential // nil when not root

	// mu guards cmd and done (Stop and Start may come from a test's
	// goroutine while another waits).
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}

	// seqMu guards seq, the number of databases NewDatabase made.
	seqMu sync.Mutex
	seq   int
}

// PostgresBinDir returns the directory of initdb and postgres:
// $SFTPGATE_POSTGRES_BIN, else `pg_config --bindir`, else the newest
// /usr/lib/postgresql/*/bin. It returns ErrNoPostgres if none has them.
func PostgresBinDir() (string, error) {
	var cands []string
	if d := os.Getenv("SFTPGATE_POSTGRES_BIN"); d != "" {
		cands = append(cands, d)
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		cands = append(cands, strings.TrimSpace(string(out)))
	}
	globbed, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(globbed, func(i, j int) bool { return pgMajor(globbed[i]) > pgMajor(globbed[j]) })
	cands = append(cands, globbed...)
	for _, d := range cands {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", ErrNoPostgres
}

// pgMajor returns the version number in /usr/lib/postgresql/<n>/bin.
func pgMajor(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// postgresCredential returns the credential to run PostgreSQL as when this
// process is root: the user sftpgate-pg if it exists, else nobody.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"sftpgate-pg", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 == nil && err2 == nil {
			return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
		}
	}
	return nil, errors.New("testenv: running as root and no unprivileged user (sftpgate-pg or nobody) to run PostgreSQL as")
}

// StartPostgres makes a cluster in a new temporary directory and starts
// the server on a free loopback port, waiting until it accepts logins.
// Stop it with Stop; Close also removes the directory. The server is
// killed if the calling process dies (Pdeathsig).
func StartPostgres() (*Postgres, error) {
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	// Not under t.TempDir: its parents are private to root, and the
	// server runs as another user. The name carries this process's pid so
	// that a later run removes what a killed one left.
	dir, err := OwnedTempDir(postgresDirPrefix)
	if err != nil {
		return nil, err
	}
	p := &Postgres{Host: "127.0.0.1", User: "postgres", Password: "sftpgate-pg-test", Dir: dir, bin: bin, cred: cred}
	fail := func(err error) (*Postgres, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(err)
		}
	}
	pw := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pw, []byte(p.Password+"\n"), 0o600); err != nil {
		return fail(err)
	}
	if cred != nil {
		if err := os.Chown(pw, int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(err)
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", p.User,
		"--pwfile="+pw, "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("testenv: initdb: %v: %s", err, strings.TrimSpace(string(out))))
	}
	os.Remove(pw)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			return fail(err)
		}
		p.Port = port
		if lastErr = p.Start(); lastErr == nil {
			return p, nil
		}
	}
	return fail(lastErr)
}

// postgresDirPrefix starts the name of a server's directory in
// os.TempDir() (see OwnedTempDir).
const postgresDirPrefix = "sftpgate-pg-"

// Start starts the server (again, after Stop) on its port and waits until
// it accepts logins.
func (p *Postgres) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	logf, err := os.OpenFile(filepath.Join(p.Dir, "server.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), "-D", filepath.Join(p.Dir, "data"),
		"-h", p.Host, "-p", strconv.Itoa(p.Port), "-k", p.Dir,
		"-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=16MB")
	cmd.Dir = p.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("testenv: start postgres: %w", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(p.Dir, "server.log"))
			return fmt.Errorf("testenv: postgres exited at start: %s", lastLines(string(log), 5))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(ctx, p.URL("postgres"))
		if err == nil {
			conn.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		if time.Now().After(deadline) {
			p.stopLocked()
			return fmt.Errorf("testenv: postgres not ready after 60s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop shuts the server down at once (SIGQUIT, PostgreSQL's "immediate"
// mode, as pg_ctl stop -m immediate) and waits for it to exit. Open
// connections break; Start brings the server back with its data. The
// server runs with fsync off (tests need no safety against power loss),
// but a commit is still written before it returns, so what a test
// committed survives Stop.
func (p *Postgres) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopLocked()
}

func (p *Postgres) stopLocked() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

// Close stops the server and removes its directory.
func (p *Postgres) Close() {
	p.Stop()
	os.RemoveAll(p.Dir)
}

// URL returns the URL of database db as the superuser.
func (p *Postgres) URL(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(p.User, p.Password),
		Host:     fmt.Sprintf("%s:%d", p.Host, p.Port),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDatabase creates an empty database named name and returns its URL.
func (p *Postgres) CreateDatabase(name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("testenv: create database %s: %w", name, err)
	}
	return p.URL(name), nil
}

// NewDatabase creates a database with a unique name for one test and
// returns its URL.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	p.seqMu.Lock()
	p.seq++
	n := p.seq
	p.seqMu.Unlock()
	u, err := p.CreateDatabase(fmt.Sprintf("t%d_%d", os.Getpid(), n))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// StartPostgresT starts a PostgreSQL server for one test and closes it in
// cleanup. When the binaries are absent the test is skipped, unless
// SFTPGATE_REQUIRE_POSTGRES is set (as on CI), which makes it fail.
func StartPostgresT(t testing.TB) *Postgres {
	t.Helper()
	p, err := StartPostgres()
	if err != nil {
		SkipNoPostgres(t, err)
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// SkipNoPostgres skips t if err is ErrNoPostgres and
// SFTPGATE_REQUIRE_POSTGRES is unset; otherwise it does nothing.
func SkipNoPostgres(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrNoPostgres) && os.Getenv("SFTPGATE_REQUIRE_POSTGRES") == "" {
		t.Skipf("%v; set SFTPGATE_REQUIRE_POSTGRES=1 to make this a failure", err)
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// PostgresPassword returns the password in a postgres:// URL ("" if none).
func PostgresPassword(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return ""
	}
	pw, _ := u.User.Password()
	return pw
}
