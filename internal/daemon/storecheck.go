package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sftpgate/sftpgate/internal/config"
	"github.com/sftpgate/sftpgate/internal/embedstore"
)

// storeClient is the object store client the daemon hands to fusefs.
type storeClient = *minio.Client

// objectStore connects to the configured MinIO server (checking endpoint
// and credentials) or starts the embedded store. stop releases it.
// wrap, if not nil, wraps the client's HTTP transport (metrics).
func objectStore(ctx context.Context, cfg *config.Config, log *slog.Logger, wrap func(http.RoundTripper) http.RoundTripper) (client storeClient, stop func(), err error) {
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
	if err := checkMinIO(ctx, client, m, cfg.StoreCheckTimeout); err != nil {
		return nil, nil, err
	}
	log.Info("connected to MinIO", "endpoint", m.Endpoint, "secure", m.Secure)
	return client, func() {}, nil
}

// checkMinIO makes one authenticated request and says which setting is
// wrong when it fails.
func checkMinIO(ctx context.Context, c *minio.Client, m *config.MinIOConfig, timeout time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
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
