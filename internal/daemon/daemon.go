// Package daemon runs the gateway: Run wires the identity store, the
// object store, the mount manager (fusefs) and the SSH server (sftpd)
// together, serves the metrics and the control socket (admin mounts,
// sessions), and shuts them down in order. It returns data to the control
// socket's clients (internal/control); the command line words it.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/fusefs"
	"github.com/sftpgate/sftpgate/internal/config"
	"github.com/sftpgate/sftpgate/internal/metrics"
	"github.com/sftpgate/sftpgate/sftpd"
)

// Run runs the gateway configured by cfg until ctx is done, then shuts it
// down: it stops accepting connections and control requests, lets the
// sessions finish for cfg.SessionGrace, completes the uploads of what their
// clients closed and unmounts every view (cfg.ShutdownTimeout for all of
// it). ready, if not nil, is called once the SSH listener accepts
// connections, with its address.
//
// A daemon killed before (kill -9, OOM) never blocks the start: its
// control socket is found stale, its mounts are aborted and detached, the
// process is waited for (cfg.OldDaemonWait at most) and its SSH port
// retried (cfg.PortRetry at most). See fusefs/watchdog.go for what frees
// it earlier.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger, ready func(addr string)) error {
	if !cfg.Enabled {
		return fmt.Errorf(`the SFTP gateway is disabled: set services."pydio.gateway.sftp".enabled to true in %s`, cfg.Path)
	}
	hostKeys, err := sftpd.LoadHostKeys(cfg.HostKeys()...)
	if err != nil {
		return err
	}
	warnLowNoFile(log, cfg)
	defer startGCTuner(log).stop()
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
	wd, err := startWatchdog(cfg, log.With("component", "fuse-watchdog"))
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

	st, err := config.OpenStore(cfg.Database, cfg.Workdir)
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

	mounts, err := newMountManager(ctx, cfg, st, client, log)
	if err != nil {
		return err
	}
	shutdownMounts := func() bool {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		if err := mounts.Shutdown(sctx); err != nil {
			log.Error("mount manager shutdown", "err", err)
			return false
		}
		return true
	}
	// The manager aborted the mounts a killed daemon left: it can finish
	// exiting now, and close the SSH port.
	waitOldDaemon(ctx, oldPid, cfg.OldDaemonWait, log)

	srv, err := newSSHServer(cfg, hostKeys, st, mounts, met, log)
	if err != nil {
		cleanExit = shutdownMounts()
		return err
	}
	l, err := listenRetry(ctx, cfg.Addr(), cfg.PortRetry, log)
	if err != nil {
		cleanExit = shutdownMounts()
		return err
	}
	holds := newAdminMounts(mounts, log.With("component", "control"))
	dc := &daemonControl{sessions: srv, views: mounts, users: st, holds: holds, log: log.With("component", "control")}
	if st.Shared() {
		// A node of a cluster: registered in the shared store, its
		// sessions and mounts listed by every node (see cluster.go).
		if dc.node, err = newClusterNode(cfg.Workdir, st, l.Addr().String(), dc, log.With("component", "cluster")); err != nil {
			l.Close()
			cleanExit = shutdownMounts()
			return err
		}
		dc.node.start(ctx)
	}
	ctl.serve(dc.handle)
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
		log.Info("stopping: closing the listener, letting sessions finish", "grace", cfg.SessionGrace)
	case serveErr = <-served:
		log.Error("ssh listener failed", "err", serveErr)
	}
	// Shutdown order: control requests, admin mounts, SSH sessions (their
	// grace period), then the views (uploads, unmounts).
	ctl.close()
	holds.close()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	sessionsClosed := true
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("ssh shutdown", "err", err)
		sessionsClosed = false
	}
	cancel()
	if dc.node != nil {
		dc.node.stop()
	}
	cleanExit = shutdownMounts() && sessionsClosed
	log.Info("stopped")
	if serveErr != nil && !errors.Is(serveErr, sftpd.ErrServerClosed) {
		return fmt.Errorf("serve: %w", serveErr)
	}
	return nil
}

// newMountManager starts the mount manager on the object store client,
// with the identity store st as the source of grants and quotas.
func newMountManager(ctx context.Context, cfg *config.Config, st *auth.Store, client storeClient, log *slog.Logger) (*fusefs.Manager, error) {
	// The journals found in the cache at start are trusted only for the
	// keys of the workspaces configured now.
	workspaces, err := st.Workspaces(ctx)
	if err != nil {
		return nil, fmt.Errorf("list workspaces: %w", err)
	}
	o := mountOptions(cfg)
	o.Client = client
	o.Grants = grantSource{st}
	o.ValidKey = workspaceKeys(workspaces)
	o.Quotas = quotaSource{st}
	if st.Shared() {
		// Nodes of a cluster: an interrupted upload is resumed through
		// any of them (fusefs/staging.go).
		o.Staging = st
	}
	o.Logger = log.With("component", "fusefs")
	mounts, err := fusefs.NewManager(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("mount manager: %w", err)
	}
	return mounts, nil
}

// mountOptions are the settings of the mount manager from cfg, every one
// given explicitly: none is left to fusefs's zero-value defaults.
func mountOptions(cfg *config.Config) fusefs.Options {
	minFree := cfg.TmpMinFree
	if minFree == 0 {
		minFree = -1 // tmpMinFree "0" turns the reserve off; fusefs reads zero as its default
	}
	return fusefs.Options{
		MountRoot:        cfg.MountRoot,
		TmpDir:           cfg.TmpDir,
		LegacyTmpDir:     cfg.LegacyTmpDir,
		Lifespan:         cfg.TmpFilesLifespan,
		IdleDelay:        cfg.MountIdleDelay,
		PartSize:         cfg.UploadPartSize,
		Concurrency:      cfg.UploadConcurrency,
		MinFree:          minFree,
		MaxCleanFiles:    cfg.MaxCachedFiles,
		MaxUserCopies:    cfg.MaxPendingFilesPerUser,
		MaxUserCopyBytes: cfg.MaxPendingBytesPerUser,
		MaxFileSize:      cfg.MaxFileSize,
		ReadAheadBudget:  cfg.ReadAheadBudget,
		AttrTTL:          cfg.AttrTTL,
		GrantsTTL:        cfg.GrantsTTL,
		StagingLease:     stagingLease,
	}
}

// newSSHServer makes the SSH server: logins checked by st, sessions rooted
// in the views of mounts, counted by met when not nil.
func newSSHServer(cfg *config.Config, hostKeys []ssh.Signer, st *auth.Store, mounts *fusefs.Manager, met *metrics.Metrics, log *slog.Logger) (*sftpd.Server, error) {
	c := sshConfig(cfg)
	c.HostKeys = hostKeys
	c.Auth = st
	c.Mounts = mounts
	c.Logger = log.With("component", "sftpd")
	if cfg.PubkeyAuthentication {
		c.Keys = st
	}
	if met != nil {
		c.OnKeyLogin = met.KeyLogin
		c.Auth = met.Auth(st)
		c.OnSessionEnd = met.SessionEnded
	}
	return sftpd.New(c)
}

// sshConfig are the settings of the SSH server from cfg, every one given
// explicitly: none is left to sftpd's zero-value defaults.
func sshConfig(cfg *config.Config) sftpd.Config {
	return sftpd.Config{
		TrustedUserCAKeys:    cfg.TrustedCAs,
		IdleTimeout:          cfg.IdleTimeout,
		MaxSessionsPerUser:   cfg.MaxSessionsPerUser,
		MaxHandlesPerSession: cfg.MaxHandlesPerSession,
		MaxHandlesPerUser:    cfg.MaxHandlesPerUser,
		MaxFileSize:          cfg.MaxFileSize,
		GatherPerSession:     cfg.MaxWriteGatherPerSession,
		GatherPerUser:        cfg.MaxWriteGatherPerUser,
		HandshakeTimeout:     cfg.LoginGraceTime,
		ProxyProtocol:        cfg.ProxyProtocol,
		ProxyTrusted:         cfg.ProxyTrusted,
		MaxStartups:          cfg.MaxStartups,
		MaxStartupsPerSource: cfg.MaxStartupsPerSource,
		KeyExchanges:         cfg.KexAlgorithms,
		Ciphers:              cfg.Ciphers,
		MACs:                 cfg.MACs,
		MaxAuthTries:         cfg.MaxAuthTries,
		FailureDelay:         cfg.FailureDelay,
		GracePeriod:          cfg.SessionGrace,
	}
}

// startPoll is how often the start looks again at a killed daemon and its
// SSH port.
const startPoll = 100 * time.Millisecond

// waitOldDaemon waits (within at most, or until ctx is done) for the
// process pid, a daemon that held the control socket without answering,
// to finish exiting. pid 0 means none.
func waitOldDaemon(ctx context.Context, pid int, within time.Duration, log *slog.Logger) {
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
		if time.Since(start) > within {
			log.Warn("the previous daemon is still exiting, starting anyway", "pid", pid, "state", string(st.State), "threads", st.Threads, "waited", within)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(startPoll):
		}
	}
}

// listenRetry listens on addr, retrying for within (cfg.PortRetry) while the
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

// warnLowNoFile logs a warning when the process may open fewer files than
// two users at maxHandlesPerUser need (about two descriptors per handle
// open for writing, see README "Limits").
func warnLowNoFile(log *slog.Logger, cfg *config.Config) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	if need := uint64(4*cfg.MaxHandlesPerUser + 256); rl.Cur < need {
		log.Warn("open-file limit low for maxHandlesPerUser: raise RLIMIT_NOFILE (LimitNOFILE)",
			"nofile", rl.Cur, "maxHandlesPerUser", cfg.MaxHandlesPerUser, "want_at_least", need)
	}
}
