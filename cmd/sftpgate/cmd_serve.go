package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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
			return serve(cmd.Context(), cfg, log, nil)
		}),
	}
	lf.add(cmd)
	return cmd
}

// serve runs the gateway until ctx is done, then shuts it down. ready, if
// not nil, is called once the SSH listener accepts connections.
func serve(ctx context.Context, cfg *Config, log *slog.Logger, ready func(addr string)) error {
	if !cfg.Enabled {
		return fmt.Errorf(`the SFTP gateway is disabled: set services."pydio.gateway.sftp".enabled to true in %s`, cfg.Path)
	}
	hostKeys, err := sftpd.LoadHostKeys(cfg.HostKeys()...)
	if err != nil {
		return err
	}
	for _, dir := range []string{cfg.Workdir, cfg.MountRoot} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	// The control socket first: a second daemon on the same working
	// directory stops here, before touching the mounts.
	ctl, err := listenControl(cfg.Workdir, log.With("component", "control"))
	if err != nil {
		return err
	}
	defer ctl.close()
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

	st, err := auth.Open(filepath.Join(cfg.Workdir, storeFile))
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
		Client:       client,
		Grants:       grantSource{st},
		MountRoot:    cfg.MountRoot,
		TmpDir:       cfg.TmpDir,
		LegacyTmpDir: cfg.LegacyTmpDir,
		ValidKey:     workspaceKeys(workspaces),
		Lifespan:     cfg.TmpFilesLifespan,
		IdleDelay:    mountIdleDelay,
		PartSize:     cfg.UploadPartSize,
		Concurrency:  cfg.UploadConcurrency,
		MinFree:      cfg.TmpMinFree,
		Logger:       log.With("component", "fusefs"),
	})
	if err != nil {
		return fmt.Errorf("mount manager: %w", err)
	}
	shutdownMounts := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		if err := mounts.Shutdown(sctx); err != nil {
			log.Error("mount manager shutdown", "err", err)
		}
	}

	var authn sftpd.Authenticator = st
	var onSessionEnd func(sftpd.SessionInfo)
	if met != nil {
		authn = met.Auth(st)
		onSessionEnd = met.SessionEnded
	}
	srv, err := sftpd.New(sftpd.Config{
		HostKeys:           hostKeys,
		Auth:               authn,
		Mounts:             mounts,
		Logger:             log.With("component", "sftpd"),
		IdleTimeout:        cfg.IdleTimeout,
		MaxSessionsPerUser: cfg.MaxSessionsPerUser,
		GracePeriod:        sessionGrace,
		OnSessionEnd:       onSessionEnd,
	})
	if err != nil {
		shutdownMounts()
		return err
	}
	l, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		shutdownMounts()
		return fmt.Errorf("listen on %s (bind, port): %w", cfg.Addr(), err)
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
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("ssh shutdown", "err", err)
	}
	cancel()
	shutdownMounts()
	log.Info("stopped")
	if serveErr != nil && !errors.Is(serveErr, sftpd.ErrServerClosed) {
		return fmt.Errorf("serve: %w", serveErr)
	}
	return nil
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
		ws = append(ws, fusefs.Workspace{Slug: a.Slug, Bucket: a.Bucket, Prefix: a.Prefix, ReadOnly: a.ReadOnly})
	}
	return ws, nil
}
