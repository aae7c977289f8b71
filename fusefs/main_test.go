package fusefs_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// Environment variables through which TestCrashRecovery hands the shared
// MinIO server and the crash scenario to its subprocess (TestCrashHelper).
const (
	envCrashHelper = "SFTPGATE_FUSEFS_CRASH_HELPER"
	envMinIOEnd    = "SFTPGATE_FUSEFS_MINIO_ENDPOINT"
	envMinIOAccess = "SFTPGATE_FUSEFS_MINIO_ACCESS"
	envMinIOSecret = "SFTPGATE_FUSEFS_MINIO_SECRET"
)

// server is the MinIO server shared by every test of the package; each test
// uses fresh buckets on it.
var server *testenv.MinIO

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Getenv(envCrashHelper) == "" {
		defer testenv.KeepFusectl()()
	}
	if os.Getenv(envCrashHelper) != "" {
		// Subprocess of TestCrashRecovery: use the parent's server.
		c, err := minio.New(os.Getenv(envMinIOEnd), &minio.Options{
			Creds: credentials.NewStaticV4(os.Getenv(envMinIOAccess), os.Getenv(envMinIOSecret), ""),
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		server = &testenv.MinIO{
			Endpoint:  os.Getenv(envMinIOEnd),
			AccessKey: os.Getenv(envMinIOAccess),
			SecretKey: os.Getenv(envMinIOSecret),
			Client:    c,
		}
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "fusefs-minio-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	server, err = testenv.StartMinIO(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer server.Stop()
	return m.Run()
}
