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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/fusefs"
	"github.com/sftpgate/sftpgate/sftpd"
)

// Checker is the login check that Metrics wraps (sftpd.Authenticator).
type Checker interface {
	Check(ctx context.Context, login, secret, remote string) error
}

// SessionLister lists the live SFTP sessions (sftpd.Server).
type SessionLister interface {
	Sessions() []sftpd.SessionInfo
}

// ViewLister describes the mounted views (fusefs.Manager).
type ViewLister interface {
	Stats() []fusefs.ViewStats
}

// pollInterval is how often the session byte counts are sampled between
// scrapes, so that the bytes of a session that ends are not lost (only
// those of its last interval are).
const pollInterval = time.Second

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
	auth.ReasonRevoked, auth.ReasonExpired,
}

// Metrics is the daemon's set of metrics. Create it with New, wrap the
// authenticator and the S3 transport with it, call Observe once the server
// and the mount manager exist, serve Handler, and Close it at shutdown.
type Metrics struct {
	reg       *prometheus.Registry
	logins    *prometheus.CounterVec
	s3Reqs    *prometheus.CounterVec
	s3Errors  *prometheus.CounterVec
	uploadDur prometheus.Histogram
	uploads   *uploadTracker
	codes     *labelSet

	sess *sessionBytes // set by Observe

	stop chan struct{}
	wg   sync.WaitGroup
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
		s3Reqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sftpgate_s3_requests_total",
			Help: "HTTP requests sent to the object store, by method.",
		}, []string{"method"}),
		s3Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sftpgate_s3_request_errors_total",
			Help: `Object store requests that failed, by method and S3 error code ("NoSuchKey", "AccessDenied", …; "network" when no response came back).`,
		}, []string{"method", "code"}),
		uploadDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sftpgate_s3_upload_duration_seconds",
			Help:    "Time to upload one object to the store: one PUT, or a multipart upload from its creation to its completion.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}),
		uploads: newUploadTracker(),
		codes:   newLabelSet(maxErrorCodes),
		stop:    make(chan struct{}),
	}
	m.logins.WithLabelValues(resultOK, "none")
	m.logins.WithLabelValues(resultError, "internal")
	m.logins.WithLabelValues(resultRefused, "other")
	for _, r := range knownReasons {
		m.logins.WithLabelValues(resultRefused, string(r))
	}
	m.reg.MustRegister(
		m.logins, m.s3Reqs, m.s3Errors, m.uploadDur,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Observe registers the collectors that read the sessions and the views at
// scrape time, and starts sampling the session byte counts. Call it once.
func (m *Metrics) Observe(sessions SessionLister, views ViewLister) {
	m.sess = &sessionBytes{src: sessions, last: map[string]sftpd.SessionInfo{}}
	m.reg.MustRegister(&stateCollector{sess: m.sess, views: views})
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(pollInterval)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				m.sess.sample()
			}
		}
	}()
}

// Close stops the sampling goroutine and waits for it. Scrapes still work.
func (m *Metrics) Close() {
	select {
	case <-m.stop:
		return
	default:
	}
	close(m.stop)
	m.wg.Wait()
}

// Auth wraps a login check so that every result is counted. The error is
// returned unchanged (the SSH layer logs its Why()).
func (m *Metrics) Auth(c Checker) Checker { return countingChecker{c: c, m: m} }

type countingChecker struct {
	c Checker
	m *Metrics
}

var _ sftpd.Authenticator = countingChecker{}

// Check implements sftpd.Authenticator.
func (cc countingChecker) Check(ctx context.Context, login, secret, remote string) error {
	err := cc.c.Check(ctx, login, secret, remote)
	result, reason := loginLabels(err)
	cc.m.logins.WithLabelValues(result, reason).Inc()
	return err
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
// last sample of every live session plus the totals of the ended ones.
type sessionBytes struct {
	src SessionLister

	// mu guards the fields below.
	mu                 sync.Mutex
	last               map[string]sftpd.SessionInfo
	endedUp, endedDown int64
}

// sample reads the live sessions and returns their number and the byte
// totals so far. A session gone since the last sample adds its last seen
// counts to the ended totals.
func (s *sessionBytes) sample() (live int, up, down int64) {
	now := s.src.Sessions()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]sftpd.SessionInfo, len(now))
	for _, si := range now {
		seen[si.ID] = si
	}
	for id, old := range s.last {
		if _, ok := seen[id]; !ok {
			s.endedUp += old.BytesUp
			s.endedDown += old.BytesDown
		}
	}
	s.last = seen
	up, down = s.endedUp, s.endedDown
	for _, si := range now {
		up += si.BytesUp
		down += si.BytesDown
	}
	return len(now), up, down
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
		"File data written by SFTP clients (sampled every second: the last second of a session that ends may be missed).", nil, nil)
	descDown = prometheus.NewDesc("sftpgate_sftp_download_bytes_total",
		"File data read by SFTP clients (sampled every second: the last second of a session that ends may be missed).", nil, nil)
	descViews = prometheus.NewDesc("sftpgate_views_mounted",
		`Mounted FUSE views, by mode ("rw": the users' own, "ro": read-only admin views).`, []string{"mode"}, nil)
	descWriteback = prometheus.NewDesc("sftpgate_writeback_bytes",
		`Bytes of the write-back cache of mounted views, by state ("dirty": waiting for upload, "clean": kept for resumed uploads).`, []string{"state"}, nil)
	descInflight = prometheus.NewDesc("sftpgate_writeback_uploads_in_flight",
		"Uploads of local copies to the store running now.", nil, nil)
	descOpenFiles = prometheus.NewDesc("sftpgate_open_files",
		"Files open in the mounted views.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessions, descUp, descDown, descViews, descWriteback, descInflight, descOpenFiles} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	live, up, down := c.sess.sample()
	ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(live))
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.CounterValue, float64(up))
	ch <- prometheus.MustNewConstMetric(descDown, prometheus.CounterValue, float64(down))

	var rw, ro, open, inflight int
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
	}
	ch <- prometheus.MustNewConstMetric(descViews, prometheus.GaugeValue, float64(rw), "rw")
	ch <- prometheus.MustNewConstMetric(descViews, prometheus.GaugeValue, float64(ro), "ro")
	ch <- prometheus.MustNewConstMetric(descWriteback, prometheus.GaugeValue, float64(dirty), "dirty")
	ch <- prometheus.MustNewConstMetric(descWriteback, prometheus.GaugeValue, float64(clean), "clean")
	ch <- prometheus.MustNewConstMetric(descInflight, prometheus.GaugeValue, float64(inflight))
	ch <- prometheus.MustNewConstMetric(descOpenFiles, prometheus.GaugeValue, float64(open))
}
