package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/spf13/cobra"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/fusefs"
	"github.com/sftpgate/sftpgate/internal/embedstore"
	"github.com/sftpgate/sftpgate/internal/metrics"
	"github.com/sftpgate/sftpgate/sftpd"
)

// shutdownTimeout bounds the whole shutdown after SIGINT/SIGTERM: the
// sessions' grace period, the upload of what is dirty, the unmounts.
const shutdownTimeout = 5 * time.Minute

// sessionGrace is how long open sessions may go on after a stop signal.
const sessionGrace = 10 * time.Second

// logFlags are the flags of the commands that run the daemon.
type logFlags struct {
	format, level string
}

func (f *logFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.format, "log-format", "text", `log format: "text" or "json"`)
	cmd.Flags().StringVar(&f.level, "log-level", "info", `log level: "debug", "info", "warn" or "error"`)
}

// logger builds the daemon's logger on stderr.
func (f *logFlags) logger(cmd *cobra.Command) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.level)); err != nil {
		return nil, usagef("--log-level: %q is not one of debug, info, warn, error", f.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f.format {
	case "text":
		return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), opts)), nil
	}
	return nil, usagef("--log-format: %q is not one of text, json", f.format)
}

// newServeCmd is "sftpgate serve": the daemon.
func newServeCmd() *cobra.Command {
	var lf logFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the SFTP gateway",
		Long: `Run the SFTP gateway with the configuration in <workdir>/pydio.json (or
--config): the SSH listener on bind:port, a FUSE mount per logged-in user
under mountRoot, and, when no "minio" key is configured, the embedded object
store with its data in <workdir>/data.

SIGINT or SIGTERM stops accepting connections, lets open sessions finish
for a grace period, completes the uploads of the files their clients
closed, unmounts every view and exits 0. A transfer cut by the end of the
grace period is never published as a partial object: its data is kept for
a resume.`,
		Example: `  sftpgate --workdir /var/lib/sftpgate serve
  sftpgate --config /etc/cells/pydio.json serve --log-format json`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			log, err := lf.logger(cmd)
			if err != nil {
				return err
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, lf, log, nil)
		}),
	}
	lf.add(cmd)
	return cmd
}

// serve runs the gateway until ctx is done, then shuts it down. ready, if
// not nil, is called once the SSH listener accepts connections. lf is how
// log was built (the FUSE watchdog logs the same way).
//
// A daemon killed before (kill -9, OOM) never blocks the start: its
// control socket is found stale, its mounts are aborted and detached, the
// process is waited for (oldDaemonWait at most) and its SSH port retried
// (portRetry at most). See fusefs/watchdog.go for what frees it earlier.
func serve(ctx context.Context, cfg *Config, lf logFlags, log *slog.Logger, ready func(addr string)) error {
	if !cfg.Enabled {
		return fmt.Errorf(`the SFTP gateway is disabled: set services."pydio.gateway.sftp".enabled to true in %s`, cfg.Path)
	}
	hostKeys, err := sftpd.LoadHostKeys(cfg.HostKeys()...)
	if err != nil {
		return err
	}
	warnLowNoFile(log, cfg)
	for _, dir := range []string{cfg.Workdir, cfg.MountRoot} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	// The control socket first: a second daemon on the same working
	// directory stops here, before touching the mounts.
	ctl, oldPid, err := listenControl(cfg.Workdir, log.With("component", "control"))
	if err != nil {
		return err
	}
	defer ctl.close()
	wd, err := startWatchdog(cfg.MountRoot, lf, log.With("component", "fuse-watchdog"))
	if err != nil {
		return err
	}
	// Whether this process leaves no mount and no session behind: the
	// watchdog is stopped then, else left to outlive it.
	cleanExit := true
	defer func() { wd.stop(cleanExit) }()
	var met *metrics.Metrics
	if cfg.MetricsAddr != "" {
		met = metrics.New()
	}
	metricsLn, err := listenMetrics(cfg.MetricsAddr)
	if err != nil {
		return err
	}
	var stopMetrics func() // set once the metrics are served
	defer func() {
		if stopMetrics != nil {
			stopMetrics()
		} else if metricsLn != nil {
			metricsLn.Close()
		}
	}()

	st, err := openConfiguredStore(cfg.Database, cfg.Workdir)
	if err != nil {
		return fmt.Errorf("open identity store: %w", err)
	}
	defer st.Close()

	var wrap func(http.RoundTripper) http.RoundTripper
	if met != nil {
		wrap = met.Transport
	}
	client, stopStore, err := objectStore(ctx, cfg, log, wrap)
	if err != nil {
		return err
	}
	defer stopStore()

	// The journals found in the cache at start are trusted only for the
	// keys of the workspaces configured now.
	workspaces, err := st.Workspaces(ctx)
	if err != nil {
		return fmt.Errorf("list workspaces: %w", err)
	}
	mounts, err := fusefs.NewManager(ctx, fusefs.Options{
		Client:           client,
		Grants:           grantSource{st},
		MountRoot:        cfg.MountRoot,
		TmpDir:           cfg.TmpDir,
		LegacyTmpDir:     cfg.LegacyTmpDir,
		ValidKey:         workspaceKeys(workspaces),
		Lifespan:         cfg.TmpFilesLifespan,
		IdleDelay:        mountIdleDelay,
		PartSize:         cfg.UploadPartSize,
		Concurrency:      cfg.UploadConcurrency,
		MinFree:          cfg.TmpMinFree,
		MaxCleanFiles:    cfg.MaxCachedFiles,
		MaxUserCopies:    cfg.MaxPendingFilesPerUser,
		MaxUserCopyBytes: cfg.MaxPendingBytesPerUser,
		MaxFileSize:      cfg.MaxFileSize,
		ReadAheadBudget:  cfg.ReadAheadBudget,
		Quotas:           quotaSource{st},
		Logger:           log.With("component", "fusefs"),
	})
	if err != nil {
		return fmt.Errorf("mount manager: %w", err)
	}
	shutdownMounts := func() bool {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		if err := mounts.Shutdown(sctx); err != nil {
			log.Error("mount manager shutdown", "err", err)
			return false
		}
		return true
	}
	// The manager aborted the mounts a killed daemon left: it can finish
	// exiting now, and close the SSH port.
	waitOldDaemon(ctx, oldPid, log)

	var authn sftpd.Authenticator = st
	var onSessionEnd func(sftpd.SessionInfo)
	var onKeyLogin func(string)
	var keys sftpd.KeyAuthenticator
	if cfg.PubkeyAuthentication {
		keys = st
	}
	if met != nil {
		onKeyLogin = met.KeyLogin
		authn = met.Auth(st)
		onSessionEnd = met.SessionEnded
	}
	srv, err := sftpd.New(sftpd.Config{
		HostKeys:             hostKeys,
		Auth:                 authn,
		Keys:                 keys,
		TrustedUserCAKeys:    cfg.TrustedCAs,
		OnKeyLogin:           onKeyLogin,
		Mounts:               mounts,
		Logger:               log.With("component", "sftpd"),
		IdleTimeout:          cfg.IdleTimeout,
		MaxSessionsPerUser:   cfg.MaxSessionsPerUser,
		MaxHandlesPerSession: cfg.MaxHandlesPerSession,
		MaxHandlesPerUser:    cfg.MaxHandlesPerUser,
		MaxFileSize:          cfg.MaxFileSize,
		GatherPerSession:     cfg.MaxWriteGatherPerSession,
		GatherPerUser:        cfg.MaxWriteGatherPerUser,
		HandshakeTimeout:     cfg.LoginGraceTime,
		MaxStartups:          cfg.MaxStartups,
		MaxStartupsPerSource: cfg.MaxStartupsPerSource,
		KeyExchanges:         cfg.KexAlgorithms,
		Ciphers:              cfg.Ciphers,
		MACs:                 cfg.MACs,
		GracePeriod:          sessionGrace,
		OnSessionEnd:         onSessionEnd,
	})
	if err != nil {
		cleanExit = shutdownMounts()
		return err
	}
	l, err := listenRetry(ctx, cfg.Addr(), portRetry, log)
	if err != nil {
		cleanExit = shutdownMounts()
		return err
	}
	holds := newAdminMounts(mounts, log.With("component", "control"))
	ctl.serve((&daemonControl{sessions: srv, views: mounts, users: st, holds: holds, log: log.With("component", "control")}).handle)
	if met != nil {
		met.Observe(srv, mounts)
		stopMetrics = serveMetrics(metricsLn, met.Handler(), log)
		log.Info("metrics listening", "addr", metricsLn.Addr().String(), "path", "/metrics")
	}
	log.Info("sftp gateway listening", "addr", l.Addr().String(), "mountRoot", cfg.MountRoot, "tmpDir", cfg.TmpDir, "control", ctl.path)
	if ready != nil {
		ready(l.Addr().String())
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("stopping: closing the listener, letting sessions finish", "grace", sessionGrace)
	case serveErr = <-served:
		log.Error("ssh listener failed", "err", serveErr)
	}
	ctl.close()
	holds.close()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	sessionsClosed := true
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("ssh shutdown", "err", err)
		sessionsClosed = false
	}
	cancel()
	cleanExit = shutdownMounts() && sessionsClosed
	log.Info("stopped")
	if serveErr != nil && !errors.Is(serveErr, sftpd.ErrServerClosed) {
		return fmt.Errorf("serve: %w", serveErr)
	}
	return nil
}

// Start-up after a killed daemon.
const (
	oldDaemonWait = 15 * time.Second // for a killed daemon to finish exiting
	portRetry     = 10 * time.Second // for its SSH port to be free
	startPoll     = 100 * time.Millisecond
)

// waitOldDaemon waits (oldDaemonWait at most, or until ctx is done) for
// the process pid, a daemon that held the control socket without
// answering, to finish exiting. pid 0 means none.
func waitOldDaemon(ctx context.Context, pid int, log *slog.Logger) {
	if pid == 0 {
		return
	}
	start := time.Now()
	for {
		st, err := fusefs.ReadProcStat(pid)
		if err != nil || st.Done() {
			log.Info("the previous daemon has exited", "pid", pid, "waited", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > oldDaemonWait {
			log.Warn("the previous daemon is still exiting, starting anyway", "pid", pid, "state", string(st.State), "threads", st.Threads, "waited", oldDaemonWait)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(startPoll):
		}
	}
}

// listenRetry listens on addr, retrying for within (portRetry) while the
// port is in use (a killed daemon may still be closing its sockets).
func listenRetry(ctx context.Context, addr string, within time.Duration, log *slog.Logger) (net.Listener, error) {
	start := time.Now()
	for logged := false; ; {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("listen on %s (bind, port): %w", addr, err)
		}
		if time.Since(start) >= within {
			return nil, fmt.Errorf("listen on %s (bind, port): still in use after %v: is another program using the port? %w", addr, within, err)
		}
		if !logged {
			log.Warn("the SSH port is in use, retrying", "addr", addr, "for", within)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("listen on %s (bind, port): %w", addr, ctx.Err())
		case <-time.After(startPoll):
		}
	}
}

// mountIdleDelay is how long a view stays mounted after its last session.
const mountIdleDelay = 30 * time.Second

// objectStore connects to the configured MinIO server (checking endpoint
// and credentials) or starts the embedded store. stop releases it.
// wrap, if not nil, wraps the client's HTTP transport (metrics).
func objectStore(ctx context.Context, cfg *Config, log *slog.Logger, wrap func(http.RoundTripper) http.RoundTripper) (client *minio.Client, stop func(), err error) {
	if cfg.MinIO == nil {
		es, err := embedstore.Start(ctx, cfg.DataDir(), log.With("component", "embedstore"))
		if err != nil {
			return nil, nil, err
		}
		client, err := es.Client(wrap)
		if err != nil {
			es.Stop()
			return nil, nil, err
		}
		log.Info(`no "minio" configured: serving buckets from the embedded object store`, "data", cfg.DataDir())
		return client, es.Stop, nil
	}
	m := cfg.MinIO
	opts := &minio.Options{
		Creds:  credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""),
		Secure: m.Secure,
		Region: m.Region,
	}
	if wrap != nil {
		base, err := minio.DefaultTransport(m.Secure)
		if err != nil {
			return nil, nil, fmt.Errorf("minio transport: %w", err)
		}
		opts.Transport = wrap(base)
	}
	client, err = minio.New(m.Endpoint, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("minio.endpoint %q: %w", m.Endpoint, err)
	}
	if err := checkMinIO(ctx, client, m); err != nil {
		return nil, nil, err
	}
	log.Info("connected to MinIO", "endpoint", m.Endpoint, "secure", m.Secure)
	return client, func() {}, nil
}

// checkMinIO makes one authenticated request and says which setting is
// wrong when it fails.
func checkMinIO(ctx context.Context, c *minio.Client, m *MinIOConfig) error {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_, err := c.ListBuckets(cctx)
	if err == nil {
		return nil
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch er.Code {
		case "InvalidAccessKeyId":
			return fmt.Errorf("minio.accessKey %q is not known to %s", m.AccessKey, m.Endpoint)
		case "SignatureDoesNotMatch":
			return fmt.Errorf("minio.secretKey is wrong for accessKey %q on %s", m.AccessKey, m.Endpoint)
		case "AccessDenied":
			return fmt.Errorf("minio.accessKey %q may not list buckets on %s: %s", m.AccessKey, m.Endpoint, er.Message)
		}
		return fmt.Errorf("minio %s: %s (%s)", m.Endpoint, er.Message, er.Code)
	}
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return fmt.Errorf("minio.secure is true but %s speaks plain http", m.Endpoint)
	}
	return fmt.Errorf("minio.endpoint %s cannot be reached: %w", m.Endpoint, err)
}

// grantSource gives fusefs the workspaces of a user from the identity
// store, on every call: grants added or revoked show up at the next refresh.
type grantSource struct{ st *auth.Store }

var _ fusefs.Grants = grantSource{}

// Workspaces implements fusefs.Grants. A user deleted meanwhile has none.
func (g grantSource) Workspaces(ctx context.Context, user string) ([]fusefs.Workspace, error) {
	acc, err := g.st.Access(ctx, user)
	if errors.Is(err, auth.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ws := make([]fusefs.Workspace, 0, len(acc))
	for _, a := range acc {
		ws = append(ws, fusefs.Workspace{Slug: a.Slug, Bucket: a.Bucket, Prefix: a.Prefix, ReadOnly: a.ReadOnly, Personal: a.Personal})
	}
	return ws, nil
}

// warnLowNoFile logs a warning when the process may open fewer files than
// two users at maxHandlesPerUser need (about two descriptors per handle
// open for writing, see README "Limits").
func warnLowNoFile(log *slog.Logger, cfg *Config) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	if need := uint64(4*cfg.MaxHandlesPerUser + 256); rl.Cur < need {
		log.Warn("open-file limit low for maxHandlesPerUser: raise RLIMIT_NOFILE (LimitNOFILE)",
			"nofile", rl.Cur, "maxHandlesPerUser", cfg.MaxHandlesPerUser, "want_at_least", need)
	}
}
