package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoadConfig feeds arbitrary bytes to ParseConfig: it must never panic,
// and a configuration it accepts must hold values in their documented
// ranges.
func FuzzLoadConfig(f *testing.F) {
	for _, seed := range []string{
		"",
		"{}",
		"null",
		`{"services": {"pydio.gateway.sftp": {"enabled": false, "port": 2022, "tmpFilesLifespan": "15m"}}}`,
		`{"services": {"pydio.gateway.sftp": {"port": "2022", "tmpDir": 3, "bind": "::1"}}}`,
		`{"services": {"pydio.gateway.sftp": {"minio": {"endpoint": "127.0.0.1:9000", "accessKey": "a", "secretKey": "b"}}}}`,
		`{"services": {"pydio.gateway.sftp": {"uploadPartSize": "64MiB", "tmpMinFree": 1024, "x": 1}}}`,
		`{"services": {"pydio.gateway.sftp": {"maxStartups": "10:30:100", "maxStartupsPerSource": 4, "loginGraceTime": "5s", "macs": ["hmac-sha2-256"], "ciphers": [], "kexAlgorithms": "x"}}}`,
		`{"services": {"pydio.gateway.sftp": {"enabled": true, "hostKeyFiles": ["pydio.json", "", 3, null]}}}`,
		`{"services": {"pydio.gateway.sftp": {"enabled": true, "hostKeyFiles": ["pydio.json"]}}}`,
		"{\n  \"services\": {\n    \"pydio.gateway.sftp\": {\n      \"port\": 2022,\n",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "pydio.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, warnings, err := ParseConfig(data, path, dir)
		if err != nil {
			if cfg != nil {
				t.Errorf("got a config together with error %v", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("got error %q, want it to name %s", err, path)
			}
			return
		}
		if cfg == nil {
			t.Fatal("got neither a config nor an error")
		}
		if len(warnings) > 2 {
			t.Errorf("got %d warnings, want at most 2", len(warnings))
		}
		switch {
		case cfg.Port < 1 || cfg.Port > 65535:
			t.Errorf("got port %d, want 1-65535", cfg.Port)
		case cfg.TmpFilesLifespan <= 0 || cfg.IdleTimeout <= 0:
			t.Errorf("got durations %v, %v, want positive", cfg.TmpFilesLifespan, cfg.IdleTimeout)
		case cfg.MaxSessionsPerUser < 1:
			t.Errorf("got maxSessionsPerUser %d, want ≥ 1", cfg.MaxSessionsPerUser)
		case cfg.UploadPartSize < minUploadPartSize || cfg.UploadPartSize > maxUploadPartSize:
			t.Errorf("got uploadPartSize %d, want 5MiB-5GiB", cfg.UploadPartSize)
		case cfg.UploadConcurrency < 1 || cfg.UploadConcurrency > maxUploadConcurrency:
			t.Errorf("got uploadConcurrency %d, want 1-64", cfg.UploadConcurrency)
		case cfg.MaxHandlesPerSession < 1 || cfg.MaxHandlesPerUser < cfg.MaxHandlesPerSession:
			t.Errorf("got maxHandlesPerSession %d, maxHandlesPerUser %d, want 1 ≤ per session ≤ per user", cfg.MaxHandlesPerSession, cfg.MaxHandlesPerUser)
		case cfg.MaxFileSize < 1 || cfg.MaxFileSize > defaultMaxFileSize:
			t.Errorf("got maxFileSize %d, want 1B-5TiB", cfg.MaxFileSize)
		case cfg.MaxWriteGatherPerSession < minGather || cfg.MaxWriteGatherPerUser < cfg.MaxWriteGatherPerSession || cfg.MaxWriteGatherPerUser > maxGather:
			t.Errorf("got maxWriteGatherPerSession %d, maxWriteGatherPerUser %d, want 1MiB ≤ per session ≤ per user ≤ 1GiB", cfg.MaxWriteGatherPerSession, cfg.MaxWriteGatherPerUser)
		case cfg.TmpMinFree < 0:
			t.Errorf("got tmpMinFree %d, want ≥ 0", cfg.TmpMinFree)
		case !filepath.IsAbs(cfg.TmpDir) || !filepath.IsAbs(cfg.MountRoot):
			t.Errorf("got tmpDir %q, mountRoot %q, want absolute paths", cfg.TmpDir, cfg.MountRoot)
		case cfg.Enabled && len(cfg.HostKeys()) == 0:
			t.Error("got enabled without hostKeyFile or hostKeyFiles")
		case cfg.MaxStartups.Start < 1 || cfg.MaxStartups.Full < cfg.MaxStartups.Start || cfg.MaxStartups.Rate < 0 || cfg.MaxStartups.Rate > 100:
			t.Errorf("got maxStartups %v, want 1 ≤ start ≤ full, rate 0-100", cfg.MaxStartups)
		case cfg.MaxStartupsPerSource < 1 || cfg.LoginGraceTime <= 0:
			t.Errorf("got maxStartupsPerSource %d, loginGraceTime %v, want positive", cfg.MaxStartupsPerSource, cfg.LoginGraceTime)
		case len(cfg.KexAlgorithms) == 0 || len(cfg.Ciphers) == 0 || len(cfg.MACs) == 0:
			t.Errorf("got empty algorithm lists %v %v %v", cfg.KexAlgorithms, cfg.Ciphers, cfg.MACs)
		case cfg.MinIO != nil && (cfg.MinIO.Endpoint == "" || cfg.MinIO.AccessKey == "" || cfg.MinIO.SecretKey == ""):
			t.Errorf("got incomplete minio %+v", *cfg.MinIO)
		}
	})
}

// FuzzParseSize checks that parseSize never panics, never returns a
// negative size, and agrees with formatSize on what it accepts.
func FuzzParseSize(f *testing.F) {
	for _, seed := range []string{"16MiB", "5 GB", "0", "-1", "99999999999999999999TiB", "1.5KiB", "kib"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("parseSize(%q): got %d, want ≥ 0", s, n)
		}
		back, err := parseSize(formatSize(n))
		if err != nil || back != n {
			t.Errorf("parseSize(formatSize(%d)): got %d, %v, want %d", n, back, err, n)
		}
	})
}
