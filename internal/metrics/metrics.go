// Package metrics owns the daemon's Prometheus registry: login counts (from
// a wrapper around the authenticator), S3 request errors and upload
// durations (from a wrapper around the MinIO client's transport), and
// gauges and counters read at scrape time from the SFTP server's sessions
// and the mount manager's views. It uses its own registry, never the global
// one, and no label ever holds a login or a token.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/fusefs"
	"github.com/sftpgate/sftpgate/sftpd"
)

// Checker is the login check that Metrics wraps (sftpd.Authenticator).
type Checker interface {
	Login(ctx context.Context, login, secret, remote string) (auth.Scopes, error)
}

// SessionLister lists the live SFTP sessions (sftpd.Server).
type SessionLister interface {
	Sessions() []sftpd.SessionInfo
}

// ViewLister describes the mounted views and the running totals of the
// FUSE operations and the janitor (fusefs.Manager).
type ViewLister interface {
	Stats() []fusefs.ViewStats
	Counters() fusefs.Counters
}

var _ ViewLister = (*fusefs.Manager)(nil)

// Login results (label "result").
const (
	resultOK      = "ok"
	resultRefused = "refused"
	resultError   = "error"
)

// knownReasons bounds the "reason" label to the refusal reasons of auth.
var knownReasons = []auth.Reason{
	auth.ReasonRateLimited, auth.ReasonMalformed, auth.ReasonBadSignature,
	auth.ReasonUnknownToken, auth.ReasonWrongOwner, auth.ReasonUnknownUser,
	auth.ReasonRevoked, auth.ReasonExpired, auth.ReasonMethodDisabled,
}

// Metrics is the daemon's set of metrics. Create it with New, wrap the
// authenticator and the S3 transport with it, pass SessionEnded as sftpd's
// OnSessionEnd hook, call Observe once the server and the mount manager
// exist, and serve Handler.
type Metrics struct {
	reg       *prometheus.Registry
	logins    *prometheus.CounterVec
	keyLogins *prometheus.CounterVec
	s3Reqs    *prometheus.CounterVec
	s3Errors  *prometheus.CounterVec
	// s3GetBytes adds up the bodies of the GET responses (objects read,
	// and listings) as announced by their Content-Length.
	s3GetBytes prometheus.Counter
	uploadDur  prometheus.Histogram
	uploads    *uploadTracker
	codes      *labelSet

	sess *sessionBytes
}

// New returns the metrics with their own registry (Go runtime and process
// collectors included).
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sftpgate_logins_total",
			Help: `SSH logins checked, by result ("ok", "refused", "error") and reason (the refusal reason, "none" when ok, "internal" on errors).`,
		}, []string{"result", "reason"}),
		keyLogins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sftpgate_key_logins_total",
			Help: `Successful SSH public-key logins, by method ("publickey" for a user's key, "certificate" for a CA-signed certificate); tokens are counted in sftpgate_logins_total.`,
		}, []string{"method"}),
		s3Reqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sftpgate_s3_requests_total",
			Help: "HTTP requests sent to the object store, by method.",
		}, []string{"method"}),
		s3Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sftpgate_s3_request_errors_total",
			Help: `Object store requests that failed, by method and S3 error code ("NoSuchKey", "AccessDenied", …; "network" when no response came back).`,
		}, []string{"method", "code"}),
		s3GetBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sftpgate_s3_get_bytes_total",
			Help: "Bytes of the GET responses of the object store (objects read, listings), by their Content-Length.",
		}),
		uploadDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sftpgate_s3_upload_duration_seconds",
			Help:    "Time to upload one object to the store: one PUT, or a multipart upload from its creation to its completion.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}),
		uploads: newUploadTracker(),
		codes:   newLabelSet(maxErrorCodes),
		sess:    &sessionBytes{},
	}
	m.logins.WithLabelValues(resultOK, "none")
	m.logins.WithLabelValues(resultError, "internal")
	m.logins.WithLabelValues(resultRefused, "other")
	for _, r := range knownReasons {
		m.logins.WithLabelValues(resultRefused, string(r))
	}
	m.keyLogins.WithLabelValues(sftpd.MethodKey)
	m.keyLogins.WithLabelValues(sftpd.MethodCert)
	m.reg.MustRegister(
		m.logins, m.keyLogins, m.s3Reqs, m.s3Errors, m.s3GetBytes, m.uploadDur,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Observe registers the collectors that read the sessions, the views and
// the views' running totals at scrape time. Call it once.
func (m *Metrics) Observe(sessions SessionLister, views ViewLister) {
	m.sess.mu.Lock()
	m.sess.src = sessions
	m.sess.mu.Unlock()
	m.reg.MustRegister(&stateCollector{sess: m.sess, views: views}, &countersCollector{views: views})
}

// SessionEnded adds the final byte counts of an ended session to the
// totals; it is sftpd's Config.OnSessionEnd hook.
func (m *Metrics) SessionEnded(si sftpd.SessionInfo) { m.sess.end(si) }

// KeyLogin counts a successful public-key or certificate login; it is
// sftpd's Config.OnKeyLogin hook.
func (m *Metrics) KeyLogin(method string) {
	if method != sftpd.MethodKey && method != sftpd.MethodCert {
		return
	}
	m.keyLogins.WithLabelValues(method).Inc()
}

// Auth wraps a login check so that every result is counted. The error is
// returned unchanged (the SSH layer logs its Why()).
func (m *Metrics) Auth(c Checker) Checker { return countingChecker{c: c, m: m} }

type countingChecker struct {
	c Checker
	m *Metrics
}

var _ sftpd.Authenticator = countingChecker{}

// Login implements sftpd.Authenticator; the scopes are returned unchanged.
func (cc countingChecker) Login(ctx context.Context, login, secret, remote string) (auth.Scopes, error) {
	scopes, err := cc.c.Login(ctx, login, secret, remote)
	result, reason := loginLabels(err)
	cc.m.logins.WithLabelValues(result, reason).Inc()
	return scopes, err
}

// loginLabels maps a Check result to the result and reason labels; the
// reason is one of knownReasons, "none" or "internal", never free text.
func loginLabels(err error) (result, reason string) {
	if err == nil {
		return resultOK, "none"
	}
	var re *auth.RefusedError
	if errors.As(err, &re) {
		for _, r := range knownReasons {
			if re.Reason == r {
				return resultRefused, string(r)
			}
		}
		return resultRefused, "other"
	}
	return resultError, "internal"
}

// sessionBytes keeps the running byte totals of the SFTP sessions: the
// live sessions' counts read at scrape time plus the exact final totals of
// the ended ones, reported by sftpd's OnSessionEnd hook (SessionEnded).
type sessionBytes struct {
	// mu guards the fields below.
	mu                 sync.Mutex
	src                SessionLister // nil until Observe
	endedUp, endedDown int64
	// ended holds the sessions already added to the ended totals that may
	// still be listed by src (the hook runs just before a session leaves
	// the list); an entry goes at the first sample that no longer sees it.
	ended map[string]bool
}

// end adds a finished session's final counts to the totals.
func (s *sessionBytes) end(si sftpd.SessionInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended == nil {
		s.ended = make(map[string]bool)
	}
	if s.ended[si.ID] {
		return
	}
	s.ended[si.ID] = true
	s.endedUp += si.BytesUp
	s.endedDown += si.BytesDown
}

// sample reads the live sessions and returns their number and the byte
// totals so far.
func (s *sessionBytes) sample() (live int, up, down int64) {
	s.mu.Lock()
	src := s.src
	s.mu.Unlock()
	var now []sftpd.SessionInfo
	if src != nil {
		now = src.Sessions()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	listed := make(map[string]bool, len(now))
	up, down = s.endedUp, s.endedDown
	for _, si := range now {
		listed[si.ID] = true
		if s.ended[si.ID] {
			continue
		}
		live++
		up += si.BytesUp
		down += si.BytesDown
	}
	for id := range s.ended {
		if !listed[id] {
			delete(s.ended, id)
		}
	}
	return live, up, down
}

// stateCollector reports, at scrape time, what the sessions and the views
// hold.
type stateCollector struct {
	sess  *sessionBytes
	views ViewLister
}

var _ prometheus.Collector = (*stateCollector)(nil)

var (
	descSessions = prometheus.NewDesc("sftpgate_sessions_active",
		"SFTP sessions open now.", nil, nil)
	descUp = prometheus.NewDesc("sftpgate_sftp_upload_bytes_total",
		"File data written by SFTP clients (live sessions at scrape time plus the final counts of ended ones).", nil, nil)
	descDown = prometheus.NewDesc("sftpgate_sftp_download_bytes_total",
		"File data read by SFTP clients (live sessions at scrape time plus the final counts of ended ones).", nil, nil)
	descViews = prometheus.NewDesc("sftpgate_views_mounted",
		`Mounted FUSE views, by mode ("rw": the users' own, "ro": read-only admin views).`, []string{"mode"}, nil)
	descWriteback = prometheus.NewDesc("sftpgate_writeback_bytes",
		`Bytes of the write-back cache of mounted views, by state ("dirty": waiting for upload, "clean": kept for resumed uploads).`, []string{"state"}, nil)
	descInflight = prometheus.NewDesc("sftpgate_writeback_uploads_in_flight",
		"Uploads of local copies to the store running now.", nil, nil)
	descOpenFiles = prometheus.NewDesc("sftpgate_open_files",
		"Files open in the mounted views.", nil, nil)
	descWritebackFiles = prometheus.NewDesc("sftpgate_writeback_files",
		`Local copies in the write-back cache of mounted views, by state ("dirty": waiting for upload, "clean": kept for resumed uploads).`, []string{"state"}, nil)
)

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessions, descUp, descDown, descViews, descWriteback, descWritebackFiles, descInflight, descOpenFiles} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	live, up, down := c.sess.sample()
	ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(live))
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.CounterValue, float64(up))
	ch <- prometheus.MustNewConstMetric(descDown, prometheus.CounterValue, float64(down))

	var rw, ro, open, inflight, dirtyFiles, cleanFiles int
	var dirty, clean int64
	for _, v := range c.views.Stats() {
		if v.ReadOnly {
			ro++
		} else {
			rw++
		}
		open += v.OpenFiles
		inflight += v.UploadsInFlight
		dirty += v.DirtyBytes
		clean += v.CleanBytes
		dirtyFiles += v.DirtyFiles
		cleanFiles += v.CleanFiles
	}
	ch <- prometheus.MustNewConstMetric(descViews, prometheus.GaugeValue, float64(rw), "rw")
	ch <- prometheus.MustNewConstMetric(descViews, prometheus.GaugeValue, float64(ro), "ro")
	ch <- prometheus.MustNewConstMetric(descWriteback, prometheus.GaugeValue, float64(dirty), "dirty")
	ch <- prometheus.MustNewConstMetric(descWriteback, prometheus.GaugeValue, float64(clean), "clean")
	ch <- prometheus.MustNewConstMetric(descWritebackFiles, prometheus.GaugeValue, float64(dirtyFiles), "dirty")
	ch <- prometheus.MustNewConstMetric(descWritebackFiles, prometheus.GaugeValue, float64(cleanFiles), "clean")
	ch <- prometheus.MustNewConstMetric(descInflight, prometheus.GaugeValue, float64(inflight))
	ch <- prometheus.MustNewConstMetric(descOpenFiles, prometheus.GaugeValue, float64(open))
}

// countersCollector reports, at scrape time, the running totals of the
// mount manager: FUSE operations by type and errno, janitor removals,
// the read-ahead budget.
type countersCollector struct {
	views ViewLister
}

var _ prometheus.Collector = (*countersCollector)(nil)

var (
	descFuseOps = prometheus.NewDesc("sftpgate_fuse_operations_total",
		`FUSE operations answered by the mounted views, by operation ("lookup", "write", …) and errno ("ok", "ENOENT", "EACCES", "EPERM", "EROFS", "ENOSPC", "EEXIST", "ENOTEMPTY", "EINTR", "EIO", "ENOTSUP", "EINVAL", "other").`, []string{"op", "errno"}, nil)
	descJanitorFiles = prometheus.NewDesc("sftpgate_janitor_removed_files_total",
		"Clean local copies removed by the janitor once unused for tmpFilesLifespan.", nil, nil)
	descJanitorBytes = prometheus.NewDesc("sftpgate_janitor_removed_bytes_total",
		"Bytes of the clean local copies removed by the janitor.", nil, nil)
	descReadAhead = prometheus.NewDesc("sftpgate_readahead_bytes",
		`Read-ahead memory: "budget" (readAheadBudget), "reserved" by the files being read now, "in_use" in buffers now.`, []string{"state"}, nil)
	descReadAheadFallbacks = prometheus.NewDesc("sftpgate_readahead_fallbacks_total",
		"Reads answered straight from the store, without read-ahead, for lack of read-ahead budget.", nil, nil)
	descStagedUploads = prometheus.NewDesc("sftpgate_staged_uploads",
		"Staged uploads recorded: streamed uploads with parts sent, being written or interrupted and waiting for a resume on any node (the whole cluster's, as this node last read them).", nil, nil)
	descStagedBytes = prometheus.NewDesc("sftpgate_staged_bytes",
		"Bytes staged by those uploads (parts sent, not yet completed).", nil, nil)
	descStagedCompleted = prometheus.NewDesc("sftpgate_staged_uploads_completed_total",
		"Staged uploads this node resumed and completed.", nil, nil)
	descStagedExpired = prometheus.NewDesc("sftpgate_staged_uploads_expired_total",
		"Staged uploads this node's janitor aborted, not resumed within tmpFilesLifespan.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *countersCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFuseOps, descJanitorFiles, descJanitorBytes, descReadAhead, descReadAheadFallbacks,
		descStagedUploads, descStagedBytes, descStagedCompleted, descStagedExpired} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *countersCollector) Collect(ch chan<- prometheus.Metric) {
	cs := c.views.Counters()
	sums := map[[2]string]int64{} // errnos sharing a label ("other") add up
	var keys [][2]string
	for _, oc := range cs.Ops {
		k := [2]string{oc.Op, errnoLabel(oc.Errno)}
		if _, ok := sums[k]; !ok {
			keys = append(keys, k)
		}
		sums[k] += oc.N
	}
	for _, k := range keys {
		ch <- prometheus.MustNewConstMetric(descFuseOps, prometheus.CounterValue, float64(sums[k]), k[0], k[1])
	}
	ch <- prometheus.MustNewConstMetric(descJanitorFiles, prometheus.CounterValue, float64(cs.JanitorRemovedFiles))
	ch <- prometheus.MustNewConstMetric(descJanitorBytes, prometheus.CounterValue, float64(cs.JanitorRemovedBytes))
	ra := cs.ReadAhead
	ch <- prometheus.MustNewConstMetric(descReadAhead, prometheus.GaugeValue, float64(ra.Budget), "budget")
	ch <- prometheus.MustNewConstMetric(descReadAhead, prometheus.GaugeValue, float64(ra.Reserved), "reserved")
	ch <- prometheus.MustNewConstMetric(descReadAhead, prometheus.GaugeValue, float64(ra.InUse), "in_use")
	ch <- prometheus.MustNewConstMetric(descReadAheadFallbacks, prometheus.CounterValue, float64(ra.Fallbacks))
	sg := cs.Staging
	ch <- prometheus.MustNewConstMetric(descStagedUploads, prometheus.GaugeValue, float64(sg.Count))
	ch <- prometheus.MustNewConstMetric(descStagedBytes, prometheus.GaugeValue, float64(sg.Bytes))
	ch <- prometheus.MustNewConstMetric(descStagedCompleted, prometheus.CounterValue, float64(sg.Completed))
	ch <- prometheus.MustNewConstMetric(descStagedExpired, prometheus.CounterValue, float64(sg.Expired))
}

// errnoLabel names an errno of fusefs.OpCount: "ok" for 0, "other" for
// fusefs.OtherErrno, else its symbolic name ("ENOENT").
func errnoLabel(e syscall.Errno) string {
	switch e {
	case 0:
		return "ok"
	case fusefs.OtherErrno:
		return "other"
	case syscall.ENOTSUP: // the same number as EOPNOTSUPP, named so by unix
		return "ENOTSUP"
	}
	if name := unix.ErrnoName(e); name != "" {
		return name
	}
	return "other"
}
