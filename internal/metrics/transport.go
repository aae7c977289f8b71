package metrics

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sftpgate/sftpgate/fusefs/objstore"
)

// maxErrorBody is how much of an error response body is read to find its
// <Code>; the body is handed on whole.
const maxErrorBody = 64 << 10

// maxErrorCodes bounds the distinct values of the "code" label; codes past
// it are counted as "other".
const maxErrorCodes = 64

// maxPendingUploads bounds the multipart uploads whose start is remembered.
const maxPendingUploads = 4096

// Transport wraps the MinIO client's transport: it counts requests and
// error responses by S3 error code, and times object uploads. Responses
// reach the client unchanged.
func (m *Metrics) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &countingTransport{base: base, m: m}
}

type countingTransport struct {
	base http.RoundTripper
	m    *Metrics
}

var _ http.RoundTripper = (*countingTransport)(nil)

// RoundTrip implements http.RoundTripper.
func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	method := methodLabel(req.Method)
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	t.m.s3Reqs.WithLabelValues(method).Inc()
	if err != nil {
		if !errors.Is(err, context.Canceled) && req.Context().Err() == nil {
			t.m.s3Errors.WithLabelValues(method, "network").Inc()
		}
		return resp, err
	}
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotModified {
		code := errorCode(req, resp)
		t.m.s3Errors.WithLabelValues(method, t.m.codes.get(code)).Inc()
		if req.URL.Query().Has("uploadId") && req.Method != http.MethodPut {
			t.m.uploads.forget(req)
		}
		return resp, nil
	}
	if d, ok := t.m.uploads.done(req, start); ok {
		t.m.uploadDur.Observe(d.Seconds())
	}
	if req.Method == http.MethodGet && resp.ContentLength > 0 {
		t.m.s3GetBytes.Add(float64(resp.ContentLength))
	}
	return resp, nil
}

// methodLabel bounds the "method" label.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete:
		return m
	}
	return "OTHER"
}

// errorCode finds the S3 error code of an error response: the <Code> of
// its XML body, else the x-minio-error-code header (HEAD responses have no
// body), else the name the object-store layer derives from the status.
// The part of the body read is put back in front of the rest.
func errorCode(req *http.Request, resp *http.Response) string {
	if req.Method != http.MethodHead && resp.Body != nil && resp.Body != http.NoBody {
		buf, rerr := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		rest := io.Reader(resp.Body)
		if rerr != nil {
			rest = errReader{rerr}
		}
		resp.Body = readCloser{Reader: io.MultiReader(bytes.NewReader(buf), rest), Closer: resp.Body}
		var e struct {
			Code string `xml:"Code"`
		}
		if xml.Unmarshal(buf, &e) == nil && e.Code != "" {
			return e.Code
		}
	}
	if c := resp.Header.Get("x-minio-error-code"); c != "" {
		return c
	}
	if c := objstore.CodeForStatus(resp.StatusCode, hasObjectKey(req)); c != "" {
		return c
	}
	return "HTTP" + strconv.Itoa(resp.StatusCode)
}

type readCloser struct {
	io.Reader
	io.Closer
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// hasObjectKey tells whether a path-style request names an object
// ("/bucket/key"), not only a bucket.
func hasObjectKey(req *http.Request) bool {
	_, key := bucketKey(req)
	return key != ""
}

// bucketKey splits the path of a path-style request (what minio-go uses for
// MinIO endpoints) into bucket and key.
func bucketKey(req *http.Request) (bucket, key string) {
	p := strings.TrimPrefix(req.URL.Path, "/")
	bucket, key, _ = strings.Cut(p, "/")
	return bucket, key
}

// uploadTracker times object uploads: a plain PUT of an object (not a
// copy, not a directory marker), or a multipart upload from its creation
// (POST ?uploads) to its completion (POST ?uploadId=…).
type uploadTracker struct {
	// mu guards started.
	mu      sync.Mutex
	started map[string]time.Time // host + path → creation of its multipart upload
}

func newUploadTracker() *uploadTracker {
	return &uploadTracker{started: map[string]time.Time{}}
}

// done is called after a successful response. It returns the duration of
// an upload that req completes.
func (u *uploadTracker) done(req *http.Request, start time.Time) (time.Duration, bool) {
	_, key := bucketKey(req)
	if key == "" || strings.HasSuffix(key, "/") {
		return 0, false
	}
	q := req.URL.Query()
	id := req.URL.Host + req.URL.Path
	switch {
	case req.Method == http.MethodPut && req.URL.RawQuery == "" && req.Header.Get("x-amz-copy-source") == "":
		return time.Since(start), true
	case req.Method == http.MethodPost && q.Has("uploads"):
		u.mu.Lock()
		if len(u.started) >= maxPendingUploads {
			for k := range u.started { // drop one: uploads never completed nor aborted
				delete(u.started, k)
				break
			}
		}
		u.started[id] = start
		u.mu.Unlock()
	case req.Method == http.MethodPost && q.Has("uploadId"):
		u.mu.Lock()
		t0, ok := u.started[id]
		delete(u.started, id)
		u.mu.Unlock()
		if ok {
			return time.Since(t0), true
		}
	case req.Method == http.MethodDelete && q.Has("uploadId"):
		u.forget(req)
	}
	return 0, false
}

// forget drops the multipart upload of req's object (aborted or failed).
func (u *uploadTracker) forget(req *http.Request) {
	u.mu.Lock()
	delete(u.started, req.URL.Host+req.URL.Path)
	u.mu.Unlock()
}

// validCode is the shape of an S3 error code worth a label value.
var validCode = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// labelSet bounds the values of a label: the first max distinct valid
// values are kept, the others become "other".
type labelSet struct {
	max int

	// mu guards seen.
	mu   sync.Mutex
	seen map[string]bool
}

func newLabelSet(max int) *labelSet { return &labelSet{max: max, seen: map[string]bool{}} }

func (s *labelSet) get(v string) string {
	if !validCode.MatchString(v) {
		return "other"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[v] {
		return v
	}
	if len(s.seen) >= s.max {
		return "other"
	}
	s.seen[v] = true
	return v
}
