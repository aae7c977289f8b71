package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/fusefs"
	"github.com/sftpgate/sftpgate/internal/testenv"
	"github.com/sftpgate/sftpgate/sftpd"
)

// scrape serves m's handler once and parses the text format.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: got status %d, want 200", rec.Code)
	}
	fams, err := testenv.ParseMetrics(rec.Body)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return fams
}

type fakeChecker struct{ err error }

func (f fakeChecker) Login(context.Context, string, string, string) (auth.Scopes, error) {
	return nil, f.err
}

func TestAuthCounts(t *testing.T) {
	m := New()
	tests := []struct {
		err            error
		result, reason string
	}{
		{nil, "ok", "none"},
		{&auth.RefusedError{Reason: auth.ReasonExpired}, "refused", "expired"},
		{fmt.Errorf("check: %w", &auth.RefusedError{Reason: auth.ReasonRateLimited}), "refused", "rate-limited"},
		{&auth.RefusedError{Reason: "something new bob"}, "refused", "other"},
		{errors.New("database is locked"), "error", "internal"},
	}
	for _, tt := range tests {
		before := testenv.MetricValueT(t, scrape(t, m), "sftpgate_logins_total", "result="+tt.result, "reason="+tt.reason)
		_, err := m.Auth(fakeChecker{tt.err}).Login(context.Background(), "bob", "secret", "127.0.0.1:1")
		if err != tt.err {
			t.Errorf("Check: got %v, want the wrapped checker's %v unchanged", err, tt.err)
		}
		after := testenv.MetricValueT(t, scrape(t, m), "sftpgate_logins_total", "result="+tt.result, "reason="+tt.reason)
		if after-before != 1 {
			t.Errorf("logins{result=%q,reason=%q} after %v: got +%v, want +1", tt.result, tt.reason, tt.err, after-before)
		}
	}
	for name, f := range scrape(t, m) {
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if strings.Contains(l.GetValue(), "bob") || strings.Contains(l.GetValue(), "secret") {
					t.Errorf("%s has label %s=%q: a login or secret leaked", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}

type fakeSessions struct {
	mu   sync.Mutex
	list []sftpd.SessionInfo
}

func (f *fakeSessions) Sessions() []sftpd.SessionInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sftpd.SessionInfo(nil), f.list...)
}

func (f *fakeSessions) set(list ...sftpd.SessionInfo) {
	f.mu.Lock()
	f.list = list
	f.mu.Unlock()
}

type fakeViews []fusefs.ViewStats

func (f fakeViews) Stats() []fusefs.ViewStats { return f }

func (f fakeViews) Counters() fusefs.Counters { return fusefs.Counters{} }

// fakeCounters is a ViewLister with fixed running totals.
type fakeCounters struct {
	fakeViews
	c fusefs.Counters
}

func (f fakeCounters) Counters() fusefs.Counters { return f.c }

func TestStateCollector(t *testing.T) {
	m := New()
	sess := &fakeSessions{}
	views := fakeViews{
		{User: "bob", OpenFiles: 2, DirtyBytes: 100, CleanBytes: 10, DirtyFiles: 2, CleanFiles: 1, UploadsInFlight: 1},
		{User: "bob", ReadOnly: true, OpenFiles: 1},
		{User: "carol", DirtyBytes: 1, CleanBytes: 2, DirtyFiles: 1, CleanFiles: 3},
	}
	m.Observe(sess, views)

	sess.set(sftpd.SessionInfo{ID: "a-1", BytesUp: 1000, BytesDown: 5}, sftpd.SessionInfo{ID: "b-1", BytesUp: 7})
	fams := scrape(t, m)
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"sftpgate_sessions_active", nil, 2},
		{"sftpgate_sftp_upload_bytes_total", nil, 1007},
		{"sftpgate_sftp_download_bytes_total", nil, 5},
		{"sftpgate_views_mounted", []string{"mode=rw"}, 2},
		{"sftpgate_views_mounted", []string{"mode=ro"}, 1},
		{"sftpgate_writeback_bytes", []string{"state=dirty"}, 101},
		{"sftpgate_writeback_bytes", []string{"state=clean"}, 12},
		{"sftpgate_writeback_files", []string{"state=dirty"}, 3},
		{"sftpgate_writeback_files", []string{"state=clean"}, 4},
		{"sftpgate_writeback_uploads_in_flight", nil, 1},
		{"sftpgate_open_files", nil, 3},
	}
	for _, c := range checks {
		if got := testenv.MetricValueT(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v: got %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// a-1 grows, then ends: sftpd reports its final counts through the
	// hook just before it leaves the list.
	sess.set(sftpd.SessionInfo{ID: "a-1", BytesUp: 3000, BytesDown: 5}, sftpd.SessionInfo{ID: "b-1", BytesUp: 7})
	m.SessionEnded(sftpd.SessionInfo{ID: "a-1", BytesUp: 3100, BytesDown: 6})
	fams = scrape(t, m)
	if got := testenv.MetricValueT(t, fams, "sftpgate_sftp_upload_bytes_total"); got != 3107 {
		t.Errorf("upload bytes while ended a-1 is still listed: got %v, want 3107 (no byte counted twice)", got)
	}
	if got := testenv.MetricValueT(t, fams, "sftpgate_sessions_active"); got != 1 {
		t.Errorf("sessions while ended a-1 is still listed: got %v, want 1", got)
	}
	sess.set(sftpd.SessionInfo{ID: "b-1", BytesUp: 8}, sftpd.SessionInfo{ID: "c-1", BytesUp: 1})
	fams = scrape(t, m)
	if got := testenv.MetricValueT(t, fams, "sftpgate_sftp_upload_bytes_total"); got != 3109 {
		t.Errorf("upload bytes after a-1 ended: got %v, want 3109", got)
	}
	if got := testenv.MetricValueT(t, fams, "sftpgate_sftp_download_bytes_total"); got != 6 {
		t.Errorf("download bytes after a-1 ended: got %v, want 6", got)
	}
	if got := testenv.MetricValueT(t, fams, "sftpgate_sessions_active"); got != 2 {
		t.Errorf("sessions after a-1 ended: got %v, want 2", got)
	}
}

func TestCountersCollector(t *testing.T) {
	m := New()
	m.Observe(&fakeSessions{}, fakeCounters{c: fusefs.Counters{
		JanitorRemovedFiles: 3,
		JanitorRemovedBytes: 4096,
		ReadAhead:           fusefs.ReadAheadStats{Budget: 256 << 20, Reserved: 6 << 20, InUse: 4 << 20, Fallbacks: 9},
		Ops: []fusefs.OpCount{
			{Op: "lookup", Errno: 0, N: 10},
			{Op: "lookup", Errno: syscall.ENOENT, N: 4},
			{Op: "write", Errno: 0, N: 7},
			{Op: "create", Errno: syscall.EROFS, N: 1},
			{Op: "getxattr", Errno: syscall.ENOTSUP, N: 2},
			{Op: "read", Errno: fusefs.OtherErrno, N: 5},
		},
	}})
	fams := scrape(t, m)
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"sftpgate_fuse_operations_total", []string{"op=lookup", "errno=ok"}, 10},
		{"sftpgate_fuse_operations_total", []string{"op=lookup", "errno=ENOENT"}, 4},
		{"sftpgate_fuse_operations_total", []string{"op=write", "errno=ok"}, 7},
		{"sftpgate_fuse_operations_total", []string{"op=create", "errno=EROFS"}, 1},
		{"sftpgate_fuse_operations_total", []string{"op=getxattr", "errno=ENOTSUP"}, 2},
		{"sftpgate_fuse_operations_total", []string{"op=read", "errno=other"}, 5},
		{"sftpgate_janitor_removed_files_total", nil, 3},
		{"sftpgate_janitor_removed_bytes_total", nil, 4096},
		{"sftpgate_readahead_bytes", []string{"state=budget"}, 256 << 20},
		{"sftpgate_readahead_bytes", []string{"state=reserved"}, 6 << 20},
		{"sftpgate_readahead_bytes", []string{"state=in_use"}, 4 << 20},
		{"sftpgate_readahead_fallbacks_total", nil, 9},
	} {
		t.Run(tt.name+fmt.Sprint(tt.labels), func(t *testing.T) {
			if got := testenv.MetricValueT(t, fams, tt.name, tt.labels...); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	for _, name := range []string{"sftpgate_fuse_operations_total", "sftpgate_janitor_removed_files_total", "sftpgate_janitor_removed_bytes_total", "sftpgate_readahead_fallbacks_total"} {
		if got := fams[name].GetType(); got != dto.MetricType_COUNTER {
			t.Errorf("%s: got type %v, want counter", name, got)
		}
	}
	if got := fams["sftpgate_readahead_bytes"].GetType(); got != dto.MetricType_GAUGE {
		t.Errorf("sftpgate_readahead_bytes: got type %v, want gauge", got)
	}
	if got := fams["sftpgate_writeback_files"].GetType(); got != dto.MetricType_GAUGE {
		t.Errorf("sftpgate_writeback_files: got type %v, want gauge", got)
	}
}

func TestErrnoLabel(t *testing.T) {
	for _, tt := range []struct {
		e    syscall.Errno
		want string
	}{
		{0, "ok"},
		{syscall.ENOENT, "ENOENT"},
		{syscall.EACCES, "EACCES"},
		{syscall.EPERM, "EPERM"},
		{syscall.EROFS, "EROFS"},
		{syscall.ENOSPC, "ENOSPC"},
		{syscall.EEXIST, "EEXIST"},
		{syscall.ENOTEMPTY, "ENOTEMPTY"},
		{syscall.EINTR, "EINTR"},
		{syscall.EIO, "EIO"},
		{syscall.ENOTSUP, "ENOTSUP"},
		{syscall.EINVAL, "EINVAL"},
		{fusefs.OtherErrno, "other"},
		{syscall.Errno(100000), "other"},
	} {
		if got := errnoLabel(tt.e); got != tt.want {
			t.Errorf("errnoLabel(%d): got %q, want %q", uintptr(tt.e), got, tt.want)
		}
	}
}

// TestSessionEndedNeverScraped checks that the bytes of a session that
// starts and ends between two scrapes are counted exactly, once.
func TestSessionEndedNeverScraped(t *testing.T) {
	m := New()
	sess := &fakeSessions{}
	m.Observe(sess, fakeViews{})
	m.SessionEnded(sftpd.SessionInfo{ID: "a-1", BytesUp: 42, BytesDown: 2})
	m.SessionEnded(sftpd.SessionInfo{ID: "a-1", BytesUp: 42, BytesDown: 2}) // reported twice: counted once
	fams := scrape(t, m)
	if got := testenv.MetricValueT(t, fams, "sftpgate_sftp_upload_bytes_total"); got != 42 {
		t.Errorf("upload bytes of a session never scraped live: got %v, want 42", got)
	}
	if got := testenv.MetricValueT(t, fams, "sftpgate_sftp_download_bytes_total"); got != 2 {
		t.Errorf("download bytes of a session never scraped live: got %v, want 2", got)
	}
}

// s3Handler imitates the S3 answers the transport must understand.
func s3Handler(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodHead && r.URL.Path == "/b/missing":
		w.Header().Set("x-minio-error-code", "NoSuchKey")
		w.WriteHeader(http.StatusNotFound)
	case r.Method == http.MethodHead && (r.URL.Path == "/b/plain404" || r.URL.Path == "/nobucket"):
		w.WriteHeader(http.StatusNotFound)
	case r.Method == http.MethodGet && r.URL.Path == "/b/denied":
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<Error><Code>AccessDenied</Code><Message>Access Denied.</Message><Key>denied</Key></Error>`)
	case r.Method == http.MethodGet && r.URL.Path == "/b/weird":
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, `<Error><Code>bad code with spaces</Code></Error>`)
	case r.Method == http.MethodPost && q.Has("uploads"):
		io.WriteString(w, `<InitiateMultipartUploadResult><UploadId>u1</UploadId></InitiateMultipartUploadResult>`)
	case r.Method == http.MethodPost && q.Has("uploadId"):
		time.Sleep(20 * time.Millisecond)
		io.WriteString(w, `<CompleteMultipartUploadResult/>`)
	default:
		io.Copy(io.Discard, r.Body)
	}
}

func TestTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(s3Handler))
	t.Cleanup(srv.Close)
	m := New()
	client := &http.Client{Transport: m.Transport(http.DefaultTransport)}
	do := func(method, path, body string, hdr ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: read body: %v", method, path, err)
		}
		return resp.StatusCode, string(b)
	}

	if code, body := do(http.MethodGet, "/b/denied", ""); code != 403 || !strings.Contains(body, "<Code>AccessDenied</Code><Message>Access Denied.</Message>") {
		t.Errorf("GET denied: got %d %q, want 403 and the whole error body", code, body)
	}
	do(http.MethodHead, "/b/missing", "")
	do(http.MethodHead, "/b/plain404", "")
	do(http.MethodHead, "/nobucket", "")
	if code, body := do(http.MethodGet, "/b/weird", ""); code != 500 || !strings.Contains(body, "bad code with spaces") {
		t.Errorf("GET weird: got %d %q, want 500 and its body", code, body)
	}
	do(http.MethodPut, "/b/file.bin", "0123456789")                                 // an upload
	do(http.MethodPut, "/b/dir/", "")                                               // a directory marker: no upload
	do(http.MethodPut, "/b/copy.bin", "", "x-amz-copy-source", "/b/file.bin")       // a copy: no upload
	do(http.MethodPut, "/b/big.bin?partNumber=1&uploadId=u1", "part")               // a part: no upload on its own
	do(http.MethodPost, "/b/big.bin?uploads=", "")                                  // multipart start
	do(http.MethodPut, "/b/big.bin?partNumber=1&uploadId=u1", "part")               // its part
	do(http.MethodPost, "/b/big.bin?uploadId=u1", "<CompleteMultipartUpload/>")     // its end: an upload
	do(http.MethodPost, "/b/never.bin?uploadId=u9", "<CompleteMultipartUpload/>")   // unknown start: not timed
	do(http.MethodPost, "/b/aborted.bin?uploads=", "")                              // started…
	do(http.MethodDelete, "/b/aborted.bin?uploadId=u2", "")                         // …and aborted
	do(http.MethodPost, "/b/aborted.bin?uploadId=u2", "<CompleteMultipartUpload/>") // so not timed

	fams := scrape(t, m)
	errs := []struct {
		method, code string
		want         float64
	}{
		{"GET", "AccessDenied", 1},
		{"HEAD", "NoSuchKey", 2},
		{"HEAD", "NoSuchBucket", 1},
		{"GET", "other", 1},
	}
	for _, e := range errs {
		if got := testenv.MetricValueT(t, fams, "sftpgate_s3_request_errors_total", "method="+e.method, "code="+e.code); got != e.want {
			t.Errorf("errors{method=%s,code=%s}: got %v, want %v", e.method, e.code, got, e.want)
		}
	}
	if got := testenv.MetricValueT(t, fams, "sftpgate_s3_requests_total", "method=PUT"); got != 5 {
		t.Errorf("PUT requests: got %v, want 5", got)
	}
	h := fams["sftpgate_s3_upload_duration_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 2 {
		t.Errorf("uploads timed: got %d, want 2 (one PUT, one multipart)", h.GetSampleCount())
	}
	if h.GetSampleSum() < 0.02 {
		t.Errorf("upload durations sum: got %vs, want at least the 20ms of the multipart completion", h.GetSampleSum())
	}
}

func TestTransportNetworkError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(s3Handler))
	url := srv.URL
	srv.Close() // nothing listens any more
	m := New()
	client := &http.Client{Transport: m.Transport(http.DefaultTransport)}
	if resp, err := client.Get(url + "/b/k"); err == nil {
		resp.Body.Close()
		t.Fatal("GET on a closed server: got no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/b/k", nil)
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
	}
	if got := testenv.MetricValueT(t, scrape(t, m), "sftpgate_s3_request_errors_total", "method=GET", "code=network"); got != 1 {
		t.Errorf("network errors: got %v, want 1 (a cancelled request is not an error)", got)
	}
}

func TestLabelSetBound(t *testing.T) {
	s := newLabelSet(2)
	for _, tt := range []struct{ in, want string }{
		{"NoSuchKey", "NoSuchKey"}, {"AccessDenied", "AccessDenied"}, {"SlowDown", "other"},
		{"NoSuchKey", "NoSuchKey"}, {"", "other"}, {"a b", "other"}, {strings.Repeat("x", 65), "other"},
	} {
		if got := s.get(tt.in); got != tt.want {
			t.Errorf("get(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}
