package objstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sftpgate/sftpgate/fusefs/objstore"
)

// The daemon's start-up check of MinIO, which says which setting is wrong
// (wrap is the metrics transport, or nil).
func ExampleCheck() {
	var wrap func(http.RoundTripper) http.RoundTripper
	endpoint, accessKey, secretKey := "127.0.0.1:9000", "sftpgate", "secret"
	check := func(ctx context.Context) error {
		c, err := objstore.New(objstore.Config{Endpoint: endpoint, AccessKey: accessKey, SecretKey: secretKey, Transport: wrap})
		if err != nil {
			return fmt.Errorf("minio.endpoint %q: %w", endpoint, err)
		}
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		err = objstore.Check(cctx, c)
		code, msg, answered := objstore.ErrorCode(err)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, objstore.ErrUnknownAccessKey):
			return fmt.Errorf("minio.accessKey %q is not known to %s", accessKey, endpoint)
		case errors.Is(err, objstore.ErrBadSecret):
			return fmt.Errorf("minio.secretKey is wrong for accessKey %q on %s", accessKey, endpoint)
		case code == "AccessDenied":
			return fmt.Errorf("minio.accessKey %q may not list buckets on %s: %s", accessKey, endpoint, msg)
		case answered:
			return fmt.Errorf("minio %s: %s (%s)", endpoint, msg, code)
		case errors.Is(err, objstore.ErrPlainHTTP):
			return fmt.Errorf("minio.secure is true but %s speaks plain http", endpoint)
		}
		return fmt.Errorf("minio.endpoint %s cannot be reached: %w", endpoint, err)
	}
	_ = check // the daemon calls it once, before mounting anything
}
