// Package embedstore runs an S3-compatible object store inside the sftpgate
// process for the quick start and small single-node installs: versitygw's
// embeddable gateway with its posix backend, on a random loopback port.
package embedstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/versity/versitygw/backend/meta"
	"github.com/versity/versitygw/backend/posix"
	"github.com/versity/versitygw/embedgw"
)

// Store is the S3-compatible store the daemon runs in-process when
// no MinIO is configured: versitygw's embeddable gateway with its posix
// backend, listening on a random loopback port. Objects are plain files
// under the data directory (metadata in user xattrs), so an administrator
// can read them. The FUSE layer talks to it through minio-go like to any
// MinIO server, so there is one code path.
//
// Credentials are random for each start: nothing secret is kept on disk,
// and nothing but this process can reach the store.
type Store struct {
	// Endpoint is host:port on 127.0.0.1.
	Endpoint string
	// AccessKey and SecretKey are this run's root credentials.
	AccessKey, SecretKey string

	be     *posix.Posix
	cancel context.CancelFunc
	done   chan error
}

// Start starts the store with its data in dataDir (created if
// missing) and waits until it answers S3 requests.
func Start(ctx context.Context, dataDir string, log *slog.Logger) (*Store, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("embedstore: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("embedstore: %w", err)
	}
	if err := checkXattrs(abs); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("embedstore: %w", err)
	}
	addr := l.Addr().String()
	l.Close()

	s := &Store{
		Endpoint:  addr,
		AccessKey: "sftpgate-" + randomHex(6),
		SecretKey: randomHex(20),
		done:      make(chan error, 1),
	}
	// posix.New changes the process's working directory: every path the
	// daemon uses is absolute by the time it gets here.
	s.be, err = posix.New(abs, meta.XattrMeta{}, posix.PosixOpts{
		NewDirPerm:          0o755,
		NewFilePerm:         0o644,
		CopyObjectThreshold: 5 << 30,
	})
	if err != nil {
		return nil, fmt.Errorf("embedstore: open %s: %w", abs, err)
	}
	cfg := &embedgw.Config{
		RootUserAccess:    s.AccessKey,
		RootUserSecret:    s.SecretKey,
		Region:            "us-east-1",
		Ports:             []string{addr},
		MaxConnections:    1024,
		MaxRequests:       512,
		MultipartMaxParts: 10000,
		Quiet:             true,
		KeepAlive:         true,
		DisableACLs:       true,
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		err := embedgw.RunVersityGW(runCtx, s.be, cfg)
		s.be.Shutdown()
		s.done <- err
	}()

	client, err := s.Client(nil)
	if err != nil {
		s.Stop()
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = client.ListBuckets(cctx)
		ccancel()
		if err == nil {
			break
		}
		select {
		case err := <-s.done:
			cancel()
			return nil, fmt.Errorf("embedstore: stopped at start: %v", err)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.Stop()
			return nil, fmt.Errorf("embedstore: not answering on %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	log.Info("embedded object store started", "endpoint", addr, "data", abs)
	return s, nil
}

// Client returns a minio-go client for the store. wrap, if not nil, wraps
// its HTTP transport (to count requests, say).
func (s *Store) Client(wrap func(http.RoundTripper) http.RoundTripper) (*minio.Client, error) {
	base, err := minio.DefaultTransport(false)
	if err != nil {
		return nil, fmt.Errorf("embedstore: %w", err)
	}
	var tr http.RoundTripper = emptyChunkedPutCloser{base}
	if wrap != nil {
		tr = wrap(tr)
	}
	return minio.New(s.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region:    "us-east-1",
		Transport: tr,
	})
}

// emptyChunkedPutCloser works around a versitygw v1.8.0 bug: a PUT of an
// empty body sent with aws-chunked framing (what minio-go does over plain
// HTTP, e.g. for a directory marker) leaves the final chunk unread on the
// connection, and the next request on it fails with "An error occurred
// when parsing the HTTP request". Such a PUT gets a connection of its own,
// closed after the answer.
type emptyChunkedPutCloser struct{ next http.RoundTripper }

func (t emptyChunkedPutCloser) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut && r.Header.Get("X-Amz-Decoded-Content-Length") == "0" {
		r = r.Clone(r.Context())
		r.Close = true
	}
	return t.next.RoundTrip(r)
}

// Stop shuts the store down and waits for it.
func (s *Store) Stop() {
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
}

// checkXattrs fails early, with the reason, when dir's file system does not
// take user xattrs (the posix backend keeps object metadata there).
func checkXattrs(dir string) error {
	f, err := os.CreateTemp(dir, ".xattr-check-")
	if err != nil {
		return fmt.Errorf("embedstore: %w", err)
	}
	name := f.Name()
	f.Close()
	defer os.Remove(name)
	if err := setxattr(name, "user.sftpgate.check", []byte("1")); err != nil {
		return fmt.Errorf("embedstore: %s does not support user xattrs (needed for object metadata; use ext4/xfs or configure \"minio\"): %w", dir, err)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(errors.New("crypto/rand failed: " + err.Error()))
	}
	return hex.EncodeToString(b)
}
