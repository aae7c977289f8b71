package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/sftpgate/sftpgate/fusefs/objstore"
	"github.com/sftpgate/sftpgate/internal/config"
	"github.com/sftpgate/sftpgate/internal/embedstore"
)

// storeClient is the object store client the daemon hands to fusefs.
type storeClient = *objstore.Client

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
	client, err = objstore.New(objstore.Config{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey, Secure: m.Secure, Region: m.Region, Transport: wrap})
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
func checkMinIO(ctx context.Context, c *objstore.Client, m *config.MinIOConfig, timeout time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := objstore.Check(cctx, c)
	code, msg, answered := objstore.ErrorCode(err)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, objstore.ErrUnknownAccessKey):
		return fmt.Errorf("minio.accessKey %q is not known to %s", m.AccessKey, m.Endpoint)
	case errors.Is(err, objstore.ErrBadSecret):
		return fmt.Errorf("minio.secretKey is wrong for accessKey %q on %s", m.AccessKey, m.Endpoint)
	case code == "AccessDenied":
		return fmt.Errorf("minio.accessKey %q may not list buckets on %s: %s", m.AccessKey, m.Endpoint, msg)
	case answered:
		return fmt.Errorf("minio %s: %s (%s)", m.Endpoint, msg, code)
	case errors.Is(err, objstore.ErrPlainHTTP):
		return fmt.Errorf("minio.secure is true but %s speaks plain http", m.Endpoint)
	}
	return fmt.Errorf("minio.endpoint %s cannot be reached: %w", m.Endpoint, err)
}
