package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/sftpd"
)

// writeKey writes a fake host key file and returns its path.
func writeKey(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(p, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// sectionJSON wraps the body of the gateway's section into a pydio.json.
func sectionJSON(body string) []byte {
	return []byte(`{"version": "4.0", "defaults": {"url": "x"}, "services": {"pydio.grpc.mailer": {"queue": 1}, "pydio.gateway.sftp": {` + body + `}}}`)
}

func TestConfigReferenceSnippet(t *testing.T) {
	dir := t.TempDir()
	key := writeKey(t, dir)
	// The snippet of the Cells Enterprise documentation, verbatim (trailing
	// spaces included), completed with the braces it leaves out.
	snippet := `{
  "services": {
    "pydio.gateway.sftp": {
      "enabled": true,        
      "hostKeyFile": "/path/to/id_rsa",
      "port": 2022,
      "tmpDir": "/path/to/custom/temp/directory",
      "tmpFilesLifespan": "15m"
    }
  }
}`
	snippet = strings.Replace(snippet, "/path/to/id_rsa", key, 1)
	path := filepath.Join(dir, "pydio.json")
	if err := os.WriteFile(path, []byte(snippet), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, warnings, err := LoadConfig(path, dir)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if len(warnings) != 0 {
		t.Errorf("got warnings %q, want none", warnings)
	}
	want := DefaultConfig(dir)
	want.Enabled = true
	want.HostKeyFile = key
	want.TmpDir = "/path/to/custom/temp/directory"
	want.LegacyTmpDir = "" // an explicit tmpDir: no older cache to adopt
	want.Path = path
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v, want %+v", cfg, want)
	}
}

func TestConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		data string
	}{
		{"empty section", string(sectionJSON(""))},
		{"byte order mark", "\xef\xbb\xbf" + string(sectionJSON(""))},
		{"no section", `{"services": {"pydio.grpc.mailer": {}}}`},
		{"no services", `{"version": "4.0"}`},
		{"null section", `{"services": {"pydio.gateway.sftp": null}}`},
		{"null values", string(sectionJSON(`"port": null, "tmpDir": null, "minio": null, "uploadPartSize": null`))},
		{"empty strings", string(sectionJSON(`"tmpDir": "", "mountRoot": "", "bind": ""`))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := ParseConfig([]byte(tt.data), filepath.Join(dir, "pydio.json"), dir)
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			checks := []struct {
				key       string
				got, want any
			}{
				{"enabled", cfg.Enabled, false},
				{"hostKeyFile", cfg.HostKeyFile, ""},
				{"port", cfg.Port, 2022},
				{"tmpDir", cfg.TmpDir, filepath.Join(dir, "tmp")},
				{"legacy tmpDir", cfg.LegacyTmpDir, os.TempDir()},
				{"tmpFilesLifespan", cfg.TmpFilesLifespan, 15 * time.Minute},
				{"bind", cfg.Bind, "0.0.0.0"},
				{"mountRoot", cfg.MountRoot, filepath.Join(dir, "mounts")},
				{"idleTimeout", cfg.IdleTimeout, 15 * time.Minute},
				{"maxSessionsPerUser", cfg.MaxSessionsPerUser, 64},
				{"maxHandlesPerSession", cfg.MaxHandlesPerSession, 256},
				{"maxHandlesPerUser", cfg.MaxHandlesPerUser, 512},
				{"maxFileSize", cfg.MaxFileSize, int64(5 << 40)},
				{"maxWriteGatherPerSession", cfg.MaxWriteGatherPerSession, int64(8 << 20)},
				{"maxWriteGatherPerUser", cfg.MaxWriteGatherPerUser, int64(16 << 20)},
				{"minio", cfg.MinIO, (*MinIOConfig)(nil)},
				{"metricsAddr", cfg.MetricsAddr, ""},
				{"uploadPartSize", cfg.UploadPartSize, int64(16 << 20)},
				{"uploadConcurrency", cfg.UploadConcurrency, 4},
				{"tmpMinFree", cfg.TmpMinFree, int64(512 << 20)},
				{"readAheadBudget", cfg.ReadAheadBudget, int64(256 << 20)},
				{"Workdir", cfg.Workdir, dir},
				{"Path", cfg.Path, filepath.Join(dir, "pydio.json")},
				{"Addr()", cfg.Addr(), "0.0.0.0:2022"},
				{"DataDir()", cfg.DataDir(), filepath.Join(dir, "data")},
			}
			for _, c := range checks {
				if !reflect.DeepEqual(c.got, c.want) {
					t.Errorf("%s: got %v, want %v", c.key, c.got, c.want)
				}
			}
		})
	}
}

func TestConfigValidValues(t *testing.T) {
	dir := t.TempDir()
	key := writeKey(t, dir)
	path := filepath.Join(dir, "etc", "pydio.json")
	for _, tt := range []struct {
		name  string
		body  string
		check func(c *Config) (got, want any)
	}{
		{"enabled", `"enabled": true, "hostKeyFile": "` + key + `"`, func(c *Config) (any, any) { return c.Enabled, true }},
		{"enabled false", `"enabled": false`, func(c *Config) (any, any) { return c.Enabled, false }},
		{"hostKeyFile absolute", `"hostKeyFile": "` + key + `"`, func(c *Config) (any, any) { return c.HostKeyFile, key }},
		{"hostKeyFile relative", `"hostKeyFile": "keys/id_rsa"`, func(c *Config) (any, any) {
			return c.HostKeyFile, filepath.Join(dir, "etc", "keys", "id_rsa")
		}},
		{"port", `"port": 22`, func(c *Config) (any, any) { return c.Port, 22 }},
		{"port max", `"port": 65535`, func(c *Config) (any, any) { return c.Port, 65535 }},
		{"tmpDir", `"tmpDir": "/var/tmp/sftp"`, func(c *Config) (any, any) { return c.TmpDir, "/var/tmp/sftp" }},
		{"tmpDir relative", `"tmpDir": "tmp"`, func(c *Config) (any, any) { return c.TmpDir, filepath.Join(dir, "etc", "tmp") }},
		// An explicit tmpDir wins, the system temporary directory included,
		// and nothing is adopted from elsewhere.
		{"tmpDir /tmp", `"tmpDir": "/tmp"`, func(c *Config) (any, any) { return c.TmpDir, "/tmp" }},
		{"tmpDir /tmp no legacy", `"tmpDir": "/tmp"`, func(c *Config) (any, any) { return c.LegacyTmpDir, "" }},
		{"tmpDir default legacy", `"port": 2022`, func(c *Config) (any, any) { return c.LegacyTmpDir, os.TempDir() }},
		{"tmpFilesLifespan", `"tmpFilesLifespan": "1h30m"`, func(c *Config) (any, any) { return c.TmpFilesLifespan, 90 * time.Minute }},
		{"bind IPv4", `"bind": "127.0.0.1"`, func(c *Config) (any, any) { return c.Addr(), "127.0.0.1:2022" }},
		{"bind IPv6", `"bind": "::1", "port": 2200`, func(c *Config) (any, any) { return c.Addr(), "[::1]:2200" }},
		{"bind host name", `"bind": "localhost"`, func(c *Config) (any, any) { return c.Bind, "localhost" }},
		{"mountRoot", `"mountRoot": "/srv/mounts"`, func(c *Config) (any, any) { return c.MountRoot, "/srv/mounts" }},
		{"mountRoot relative", `"mountRoot": "../m"`, func(c *Config) (any, any) { return c.MountRoot, filepath.Join(dir, "m") }},
		{"idleTimeout", `"idleTimeout": "90s"`, func(c *Config) (any, any) { return c.IdleTimeout, 90 * time.Second }},
		{"maxSessionsPerUser", `"maxSessionsPerUser": 1`, func(c *Config) (any, any) { return c.MaxSessionsPerUser, 1 }},
		{"maxHandlesPerSession", `"maxHandlesPerSession": 16`, func(c *Config) (any, any) { return c.MaxHandlesPerSession, 16 }},
		{"maxHandlesPerUser", `"maxHandlesPerUser": 4096`, func(c *Config) (any, any) { return c.MaxHandlesPerUser, 4096 }},
		{"maxHandlesPerUser equal", `"maxHandlesPerSession": 8, "maxHandlesPerUser": 8`, func(c *Config) (any, any) { return c.MaxHandlesPerUser, 8 }},
		{"maxFileSize", `"maxFileSize": "1GiB"`, func(c *Config) (any, any) { return c.MaxFileSize, int64(1 << 30) }},
		{"maxFileSize bytes", `"maxFileSize": 1`, func(c *Config) (any, any) { return c.MaxFileSize, int64(1) }},
		{"maxWriteGatherPerSession", `"maxWriteGatherPerSession": "1MiB"`, func(c *Config) (any, any) { return c.MaxWriteGatherPerSession, int64(1 << 20) }},
		{"maxWriteGatherPerUser", `"maxWriteGatherPerUser": "1GiB"`, func(c *Config) (any, any) { return c.MaxWriteGatherPerUser, int64(1 << 30) }},
		{"minio", `"minio": {"endpoint": "127.0.0.1:9000", "accessKey": "ak", "secretKey": "sk", "secure": true, "region": "eu-west-1"}`,
			func(c *Config) (any, any) {
				return c.MinIO, &MinIOConfig{Endpoint: "127.0.0.1:9000", AccessKey: "ak", SecretKey: "sk", Secure: true, Region: "eu-west-1"}
			}},
		{"minio defaults", `"minio": {"endpoint": "minio.example.com:443", "accessKey": "ak", "secretKey": "sk"}`,
			func(c *Config) (any, any) {
				return c.MinIO, &MinIOConfig{Endpoint: "minio.example.com:443", AccessKey: "ak", SecretKey: "sk"}
			}},
		{"metricsAddr", `"metricsAddr": "127.0.0.1:9100"`, func(c *Config) (any, any) { return c.MetricsAddr, "127.0.0.1:9100" }},
		{"metricsAddr any host", `"metricsAddr": ":9100"`, func(c *Config) (any, any) { return c.MetricsAddr, ":9100" }},
		{"uploadPartSize MiB", `"uploadPartSize": "64MiB"`, func(c *Config) (any, any) { return c.UploadPartSize, int64(64 << 20) }},
		{"uploadPartSize min", `"uploadPartSize": "5MiB"`, func(c *Config) (any, any) { return c.UploadPartSize, int64(5 << 20) }},
		{"uploadPartSize max", `"uploadPartSize": "5GiB"`, func(c *Config) (any, any) { return c.UploadPartSize, int64(5 << 30) }},
		{"uploadPartSize MB", `"uploadPartSize": "10 MB"`, func(c *Config) (any, any) { return c.UploadPartSize, int64(10e6) }},
		{"uploadPartSize bytes number", `"uploadPartSize": 8388608`, func(c *Config) (any, any) { return c.UploadPartSize, int64(8 << 20) }},
		{"uploadConcurrency", `"uploadConcurrency": 64`, func(c *Config) (any, any) { return c.UploadConcurrency, 64 }},
		{"tmpMinFree", `"tmpMinFree": "2GiB"`, func(c *Config) (any, any) { return c.TmpMinFree, int64(2 << 30) }},
		{"readAheadBudget", `"readAheadBudget": "64MiB"`, func(c *Config) (any, any) { return c.ReadAheadBudget, int64(64 << 20) }},
		{"tmpMinFree zero", `"tmpMinFree": "0"`, func(c *Config) (any, any) { return c.TmpMinFree, int64(0) }},
		{"maxStartups", `"maxStartups": "10:50:20"`, func(c *Config) (any, any) { return c.MaxStartups, sftpd.MaxStartups{Start: 10, Rate: 50, Full: 20} }},
		{"maxStartups single", `"maxStartups": "64"`, func(c *Config) (any, any) { return c.MaxStartups, sftpd.MaxStartups{Start: 64, Rate: 100, Full: 64} }},
		{"maxStartupsPerSource", `"maxStartupsPerSource": 4`, func(c *Config) (any, any) { return c.MaxStartupsPerSource, 4 }},
		{"loginGraceTime", `"loginGraceTime": "5s"`, func(c *Config) (any, any) { return c.LoginGraceTime, 5 * time.Second }},
		{"kexAlgorithms", `"kexAlgorithms": ["curve25519-sha256"]`, func(c *Config) (any, any) { return strings.Join(c.KexAlgorithms, ","), "curve25519-sha256" }},
		{"ciphers", `"ciphers": ["aes256-ctr", "chacha20-poly1305@openssh.com"]`, func(c *Config) (any, any) {
			return strings.Join(c.Ciphers, ","), "aes256-ctr,chacha20-poly1305@openssh.com"
		}},
		{"macs legacy", `"macs": ["hmac-sha2-256", "hmac-sha1"]`, func(c *Config) (any, any) { return strings.Join(c.MACs, ","), "hmac-sha2-256,hmac-sha1" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, warnings, err := ParseConfig(sectionJSON(tt.body), path, dir)
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if len(warnings) != 0 {
				t.Errorf("got warnings %q, want none", warnings)
			}
			got, want := tt.check(cfg)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	key := writeKey(t, dir)
	path := filepath.Join(dir, "pydio.json")
	const s = `services."pydio.gateway.sftp".`
	for _, tt := range []struct {
		name string
		data string
		want []string // substrings of the error
	}{
		{"malformed JSON", "{\n  \"services\": {\n    \"pydio.gateway.sftp\": {\n      \"port\": 2022,\n    }\n  }\n}",
			[]string{"malformed JSON at line 5, column 5"}},
		{"truncated JSON", "{\"services\": {", []string{"malformed JSON at line 1, column 14", "unexpected end"}},
		{"empty file", "", []string{"malformed JSON at line 1, column 1"}},
		{"top level array", "[]", []string{"top level must be a JSON object, got array"}},
		{"top level null", "null", []string{"top level must be a JSON object"}},
		{"services not object", `{"services": 3}`, []string{"services: expected object, got number"}},
		{"section not object", `{"services": {"pydio.gateway.sftp": "on"}}`, []string{`services."pydio.gateway.sftp": expected object, got string`}},
		{"port string", string(sectionJSON(`"port": "2022"`)), []string{s + "port: expected int, got string"}},
		{"port float", string(sectionJSON(`"port": 2022.5`)), []string{s + "port: expected an integer, got 2022.5"}},
		{"port zero", string(sectionJSON(`"port": 0`)), []string{s + "port: must be between 1 and 65535, got 0"}},
		{"port too big", string(sectionJSON(`"port": 65536`)), []string{s + "port: must be between 1 and 65535, got 65536"}},
		{"port huge", string(sectionJSON(`"port": 99999999999999999999`)), []string{s + "port: expected an integer"}},
		{"enabled string", string(sectionJSON(`"enabled": "true"`)), []string{s + "enabled: expected bool, got string"}},
		{"tmpDir number", string(sectionJSON(`"tmpDir": 1`)), []string{s + "tmpDir: expected string, got number"}},
		{"tmpFilesLifespan bad", string(sectionJSON(`"tmpFilesLifespan": "15 minutes"`)), []string{s + `tmpFilesLifespan: invalid duration "15 minutes"`}},
		{"tmpFilesLifespan number", string(sectionJSON(`"tmpFilesLifespan": 900`)), []string{s + "tmpFilesLifespan: expected duration string", "got number"}},
		{"tmpFilesLifespan negative", string(sectionJSON(`"tmpFilesLifespan": "-1m"`)), []string{s + `tmpFilesLifespan: must be positive, got "-1m"`}},
		{"idleTimeout bad", string(sectionJSON(`"idleTimeout": "1d"`)), []string{s + `idleTimeout: invalid duration "1d"`}},
		{"idleTimeout zero", string(sectionJSON(`"idleTimeout": "0s"`)), []string{s + "idleTimeout: must be positive"}},
		{"bind bad", string(sectionJSON(`"bind": "0.0.0.0:22"`)), []string{s + `bind: not an IP address or host name: "0.0.0.0:22"`}},
		{"maxSessionsPerUser zero", string(sectionJSON(`"maxSessionsPerUser": 0`)), []string{s + "maxSessionsPerUser: must be between 1"}},
		{"maxHandlesPerSession zero", string(sectionJSON(`"maxHandlesPerSession": 0`)), []string{s + "maxHandlesPerSession: must be between 1"}},
		{"maxHandlesPerUser below per session", string(sectionJSON(`"maxHandlesPerSession": 300, "maxHandlesPerUser": 200`)), []string{s + "maxHandlesPerUser: 200 is below maxHandlesPerSession (300)"}},
		{"maxFileSize zero", string(sectionJSON(`"maxFileSize": 0`)), []string{s + "maxFileSize: must be between 1B and 5TiB, got 0B"}},
		{"maxFileSize over S3", string(sectionJSON(`"maxFileSize": "6TiB"`)), []string{s + "maxFileSize: must be between 1B and 5TiB, got 6TiB"}},
		{"maxWriteGatherPerSession small", string(sectionJSON(`"maxWriteGatherPerSession": "512KiB"`)), []string{s + "maxWriteGatherPerSession: must be between 1MiB and 1GiB, got 512KiB"}},
		{"maxWriteGatherPerUser below per session", string(sectionJSON(`"maxWriteGatherPerSession": "32MiB", "maxWriteGatherPerUser": "16MiB"`)), []string{s + "maxWriteGatherPerUser: 16MiB is below maxWriteGatherPerSession (32MiB)"}},
		{"uploadConcurrency too big", string(sectionJSON(`"uploadConcurrency": 65`)), []string{s + "uploadConcurrency: must be between 1 and 64, got 65"}},
		{"uploadConcurrency zero", string(sectionJSON(`"uploadConcurrency": 0`)), []string{s + "uploadConcurrency: must be between 1 and 64, got 0"}},
		{"uploadPartSize small", string(sectionJSON(`"uploadPartSize": "4MiB"`)), []string{s + "uploadPartSize: must be between 5MiB and 5GiB, got 4MiB"}},
		{"uploadPartSize big", string(sectionJSON(`"uploadPartSize": "6GiB"`)), []string{s + "uploadPartSize: must be between 5MiB and 5GiB, got 6GiB"}},
		{"uploadPartSize unit", string(sectionJSON(`"uploadPartSize": "16XB"`)), []string{s + `uploadPartSize: invalid size "16XB": unknown unit "XB"`}},
		{"uploadPartSize bool", string(sectionJSON(`"uploadPartSize": true`)), []string{s + "uploadPartSize: expected size string", "got bool"}},
		{"uploadPartSize negative", string(sectionJSON(`"uploadPartSize": -1`)), []string{s + "uploadPartSize: a size in bytes must be a whole non-negative number"}},
		{"maxStartups bad", string(sectionJSON(`"maxStartups": "10:30"`)), []string{s + `maxStartups: "10:30": want "start:rate:full"`}},
		{"maxStartups full below start", string(sectionJSON(`"maxStartups": "10:30:5"`)), []string{s + "maxStartups:", "full (5) must be at least start (10)"}},
		{"maxStartups rate", string(sectionJSON(`"maxStartups": "10:101:20"`)), []string{s + "maxStartups:", "rate is a percentage"}},
		{"maxStartupsPerSource zero", string(sectionJSON(`"maxStartupsPerSource": 0`)), []string{s + "maxStartupsPerSource: must be between 1"}},
		{"loginGraceTime zero", string(sectionJSON(`"loginGraceTime": "0s"`)), []string{s + "loginGraceTime: must be positive"}},
		{"kexAlgorithms unknown", string(sectionJSON(`"kexAlgorithms": ["curve25519-sha256", "dh-42"]`)), []string{s + `kexAlgorithms: unknown algorithm "dh-42"`}},
		{"ciphers not a list", string(sectionJSON(`"ciphers": "aes128-ctr"`)), []string{s + "ciphers: expected array of strings, got string"}},
		{"macs empty", string(sectionJSON(`"macs": []`)), []string{s + "macs: the list is empty"}},
		{"macs unknown", string(sectionJSON(`"macs": ["hmac-md5"]`)), []string{s + `macs: unknown algorithm "hmac-md5"`}},
		{"tmpMinFree bad", string(sectionJSON(`"tmpMinFree": "lots"`)), []string{s + `tmpMinFree: invalid size "lots"`}},
		{"tmpMinFree overflow", string(sectionJSON(`"tmpMinFree": "99999999999TiB"`)), []string{s + "tmpMinFree: invalid size", "too large"}},
		{"readAheadBudget small", string(sectionJSON(`"readAheadBudget": "1MiB"`)), []string{s + "readAheadBudget: must be between 2MiB and", "got 1MiB"}},
		{"metricsAddr no port", string(sectionJSON(`"metricsAddr": "localhost"`)), []string{s + `metricsAddr: "localhost": not a host:port address`}},
		{"metricsAddr bad port", string(sectionJSON(`"metricsAddr": "localhost:http"`)), []string{s + "metricsAddr:", "port must be a number between 1 and 65535"}},
		{"hostKeyFile missing when enabled", string(sectionJSON(`"enabled": true`)), []string{s + "hostKeyFile: mandatory when enabled is true"}},
		{"hostKeyFile empty when enabled", string(sectionJSON(`"enabled": true, "hostKeyFile": ""`)), []string{s + "hostKeyFile: mandatory when enabled is true"}},
		{"hostKeyFile absent file", string(sectionJSON(`"enabled": true, "hostKeyFile": "` + filepath.Join(dir, "nope") + `"`)),
			[]string{s + "hostKeyFile: cannot read " + filepath.Join(dir, "nope") + ": no such file or directory"}},
		{"hostKeyFile directory", string(sectionJSON(`"enabled": true, "hostKeyFile": "` + dir + `"`)),
			[]string{s + "hostKeyFile: " + dir + " is not a regular file"}},
		{"minio not object", string(sectionJSON(`"minio": "127.0.0.1:9000"`)), []string{s + "minio: expected object, got string"}},
		{"minio empty", string(sectionJSON(`"minio": {}`)), []string{"3 problems", s + "minio.endpoint: mandatory", s + "minio.accessKey: mandatory", s + "minio.secretKey: mandatory"}},
		{"minio scheme", string(sectionJSON(`"minio": {"endpoint": "http://127.0.0.1:9000", "accessKey": "a", "secretKey": "b"}`)),
			[]string{s + `minio.endpoint: "http://127.0.0.1:9000": must be host:port without a scheme`}},
		{"minio no port", string(sectionJSON(`"minio": {"endpoint": "minio", "accessKey": "a", "secretKey": "b"}`)),
			[]string{s + `minio.endpoint: "minio": not a host:port address`}},
		{"minio empty host", string(sectionJSON(`"minio": {"endpoint": ":9000", "accessKey": "a", "secretKey": "b"}`)),
			[]string{s + `minio.endpoint: ":9000": the host is empty`}},
		{"minio secure string", string(sectionJSON(`"minio": {"endpoint": "m:9000", "accessKey": "a", "secretKey": "b", "secure": "yes"}`)),
			[]string{s + "minio.secure: expected bool, got string"}},
		{"several problems", string(sectionJSON(`"port": "x", "tmpFilesLifespan": "soon", "hostKeyFile": "` + key + `"`)),
			[]string{"2 problems", s + "port: expected int, got string", s + `tmpFilesLifespan: invalid duration "soon"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := ParseConfig([]byte(tt.data), path, dir)
			if err == nil {
				t.Fatalf("got config %+v, want an error", cfg)
			}
			if cfg != nil {
				t.Errorf("got config %+v with the error, want nil", cfg)
			}
			if !errors.Is(err, errInvalidConfig) {
				t.Errorf("got error %v, want one wrapping errInvalidConfig", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, path) {
				t.Errorf("got error %q, want it to name the file %s", msg, path)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("got error %q, want it to contain %q", msg, w)
				}
			}
		})
	}
}

func TestConfigSecretNotInErrors(t *testing.T) {
	dir := t.TempDir()
	_, _, err := ParseConfig(sectionJSON(`"minio": {"endpoint": "x:y", "accessKey": "a", "secretKey": "topsecret-value"}`), filepath.Join(dir, "pydio.json"), dir)
	if err == nil {
		t.Fatal("got no error, want one for the bad endpoint")
	}
	if strings.Contains(err.Error(), "topsecret-value") {
		t.Errorf("got error %q, want it without the secret key", err)
	}
}

func TestConfigUnknownKeys(t *testing.T) {
	dir := t.TempDir()
	data := sectionJSON(`"port": 2200, "zeta": 1, "Port": 3, "alpha": true,
		"minio": {"endpoint": "127.0.0.1:9000", "accessKey": "a", "secretKey": "b", "bucket": "x"}`)
	cfg, warnings, err := ParseConfig(data, filepath.Join(dir, "pydio.json"), dir)
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if cfg.Port != 2200 {
		t.Errorf("got port %d, want 2200", cfg.Port)
	}
	if len(warnings) != 1 {
		t.Fatalf("got %d warnings %q, want exactly 1", len(warnings), warnings)
	}
	if want := "unknown keys in " + sectionKey + " ignored: Port, alpha, minio.bucket, zeta"; !strings.Contains(warnings[0], want) {
		t.Errorf("got warning %q, want it to contain %q", warnings[0], want)
	}
}

func TestConfigMissingSectionWarns(t *testing.T) {
	dir := t.TempDir()
	_, warnings, err := ParseConfig([]byte(`{"services": {}}`), filepath.Join(dir, "pydio.json"), dir)
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "no "+sectionKey+" section") {
		t.Errorf("got warnings %q, want one about the missing section", warnings)
	}
}

func TestConfigLoadMissingFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "absent.json")
	_, _, err := LoadConfig(path, dir)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want an error wrapping fs.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("got %q, want it to name %s", err, path)
	}
}

func TestConfigLoadDefaultPath(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pydio.json"), sectionJSON(`"port": 2300`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := LoadConfig("", dir)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if cfg.Port != 2300 || cfg.Path != filepath.Join(dir, "pydio.json") {
		t.Errorf("got port %d path %s, want 2300 and %s", cfg.Port, cfg.Path, filepath.Join(dir, "pydio.json"))
	}
}

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"0", 0, false},
		{"1024", 1024, false},
		{"100B", 100, false},
		{"1KiB", 1 << 10, false},
		{"16MiB", 16 << 20, false},
		{"16mib", 16 << 20, false},
		{"16 MiB", 16 << 20, false},
		{"5GiB", 5 << 30, false},
		{"2TiB", 2 << 40, false},
		{"1KB", 1000, false},
		{"10MB", 10e6, false},
		{"3GB", 3e9, false},
		{"1TB", 1e12, false},
		{"", 0, true},
		{"MiB", 0, true},
		{"-1MiB", 0, true},
		{"1.5GiB", 0, true},
		{"16M", 0, true},
		{"16 XB", 0, true},
		{"9223372036854775807", 1<<63 - 1, false},
		{"9223372036854775808", 0, true},
		{"8388608TiB", 0, true},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSize(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("got error %v, want error %v", err, tt.err)
			}
			if got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	for _, tt := range []struct {
		in   int64
		want string
	}{
		{0, "0B"}, {1000, "1000B"}, {1536, "1536B"}, {3072, "3KiB"}, {16 << 20, "16MiB"}, {5 << 30, "5GiB"}, {3 << 40, "3TiB"},
	} {
		got := formatSize(tt.in)
		if got != tt.want {
			t.Errorf("formatSize(%d): got %q, want %q", tt.in, got, tt.want)
		}
		if back, err := parseSize(got); err != nil || back != tt.in {
			t.Errorf("parseSize(%q): got %d, %v, want %d", got, back, err, tt.in)
		}
	}
}

func TestLineCol(t *testing.T) {
	data := []byte("ab\ncd\n\nef")
	for _, tt := range []struct {
		off       int64
		line, col int
	}{
		{0, 1, 1}, {1, 1, 1}, {2, 1, 2}, {3, 2, 1}, {5, 2, 2}, {7, 4, 1}, {9, 4, 2}, {100, 4, 2}, {-3, 1, 1},
	} {
		line, col := lineCol(data, tt.off)
		if line != tt.line || col != tt.col {
			t.Errorf("lineCol(%d): got %d:%d, want %d:%d", tt.off, line, col, tt.line, tt.col)
		}
	}
}
