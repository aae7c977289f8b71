// Package config owns the gateway's configuration: the model (Config),
// its loading from the section services."pydio.gateway.sftp" of a Cells
// pydio.json (LoadConfig, ParseConfig), validation, and every default the
// daemon runs with. It is the single place defaults live: the daemon reads
// them from a Config and passes them on explicitly to fusefs and sftpd.
//
// To add a key: a field in Config (documented with its default), its
// default in DefaultConfig, one line in parser.parseInto (which also
// validates it), and one line in Fields (what "config check" prints).
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgate/sftpgate/sftpd"
)

// The configuration lives in the section services."pydio.gateway.sftp" of a
// Cells pydio.json; every other section of the file is ignored.
const (
	// SectionName is the name of the section in services.
	SectionName = "pydio.gateway.sftp"
	// SectionKey is the section's full key, as messages name it.
	SectionKey = `services."pydio.gateway.sftp"`

	sectionName = SectionName
	sectionKey  = SectionKey
)

// StoreFile is the name of the identity store in the working directory.
const StoreFile = "sftpgate.db"

// Defaults of the configuration keys (see README "Configuration").
const (
	defaultPort               = 2022
	defaultTmpFilesLifespan   = 15 * time.Minute
	defaultBind               = "0.0.0.0"
	defaultIdleTimeout        = 15 * time.Minute
	defaultMaxSessionsPerUser = 64
	defaultMaxHandlesPerSess  = 256
	defaultMaxHandlesPerUser  = 512
	defaultMaxFileSize        = 5 << 40 // the largest S3 object
	defaultGatherPerSession   = 8 << 20
	defaultGatherPerUser      = 16 << 20
	defaultUploadPartSize     = 16 << 20
	defaultUploadConcurrency  = 4
	defaultTmpMinFree         = 512 << 20
	defaultLoginGraceTime     = 30 * time.Second
	defaultMaxStartupsPerSrc  = 32
	defaultReadAheadBudget    = 256 << 20

	// DefaultPort is the default of the key port.
	DefaultPort = defaultPort

	minUploadPartSize    = 5 << 20
	maxUploadPartSize    = 5 << 30
	maxUploadConcurrency = 64
	maxLimitCount        = 1 << 20 // sessions or handles
	minGather            = 1 << 20 // one gathering window
	maxGather            = 1 << 30
	minReadAheadBudget   = 2 << 20
)

// Defaults of the daemon's settings that no key changes (see the fields
// of Config after the keys).
const (
	defaultShutdownTimeout = 5 * time.Minute
	defaultSessionGrace    = 10 * time.Second
	defaultMountIdleDelay  = 30 * time.Second
	defaultOldDaemonWait   = 15 * time.Second
	defaultPortRetry       = 10 * time.Second
	defaultStoreCheck      = 15 * time.Second
	defaultAttrTTL         = time.Second
	defaultGrantsTTL       = 2 * time.Second
	defaultMaxAuthTries    = 3
	defaultFailureDelay    = 500 * time.Millisecond
	defaultLogFormat       = "text"
	defaultLogLevel        = "info"
)

// errInvalidConfig is wrapped by every error that ParseConfig returns for a
// configuration it refuses.
var errInvalidConfig = errors.New("config: invalid configuration")

// configError is a refused configuration: "config <file>: <problem>".
type configError struct {
	file    string
	problem string
}

func (e *configError) Error() string { return "config " + e.file + ": " + e.problem }

// Unwrap returns errInvalidConfig.
func (e *configError) Unwrap() error { return errInvalidConfig }

// Config is the effective configuration of the gateway: the keys of the
// section services."pydio.gateway.sftp" with every default filled in and
// every path absolute. Use DefaultConfig or LoadConfig to get one.
type Config struct {
	// Enabled starts the SFTP gateway; false by default (Cells semantics).
	Enabled bool
	// HostKeyFile is the SSH host private key; it or HostKeyFiles is
	// mandatory when Enabled.
	HostKeyFile string
	// HostKeyFiles are more host private keys (one per key type), offered
	// with HostKeyFile; none by default.
	HostKeyFiles []string
	// PubkeyAuthentication offers the SSH "publickey" method (users' keys
	// and certificates); true by default.
	PubkeyAuthentication bool
	// TrustedUserCAKeys is a file of CA public keys (OpenSSH's
	// TrustedUserCAKeys format) whose user certificates may log in; none
	// by default.
	TrustedUserCAKeys string
	// TrustedCAs are the keys read from TrustedUserCAKeys at load time.
	TrustedCAs []ssh.PublicKey
	// Port is the TCP port to listen on, 2022 by default.
	Port int
	// TmpDir holds the write-back cache; <workdir>/tmp by default (Cells
	// uses os.TempDir(): a temporary directory shared with other local
	// users lets them plant files in the cache).
	TmpDir string
	// LegacyTmpDir is os.TempDir() when tmpDir is not set, "" otherwise:
	// the local copies an older version left in <LegacyTmpDir>/sftpgate
	// are adopted at start.
	LegacyTmpDir string
	// TmpFilesLifespan is how long a clean local copy is kept for resumed
	// uploads; 15 minutes by default.
	TmpFilesLifespan time.Duration
	// Bind is the address to listen on, "0.0.0.0" by default.
	Bind string
	// MountRoot is where the per-user FUSE mounts live; <workdir>/mounts
	// by default.
	MountRoot string
	// IdleTimeout closes SSH sessions idle that long; 15 minutes by
	// default.
	IdleTimeout time.Duration
	// MaxSessionsPerUser limits concurrent sessions of one user; 64 by
	// default.
	MaxSessionsPerUser int
	// MaxHandlesPerSession limits the files and directories one SFTP
	// session has open; 256 by default.
	MaxHandlesPerSession int
	// MaxHandlesPerUser limits the files and directories open over all of
	// a user's sessions; 512 by default, at least MaxHandlesPerSession.
	MaxHandlesPerUser int
	// MaxFileSize is the largest size a write or truncate may give a file;
	// 5 TiB (the S3 limit) by default, which is also the most it may be.
	MaxFileSize int64
	// MaxWriteGatherPerSession bounds the memory gathering one session's
	// out-of-order writes; 8 MiB by default, 1 MiB to 1 GiB.
	MaxWriteGatherPerSession int64
	// MaxWriteGatherPerUser bounds it over all of a user's sessions; 16 MiB
	// by default, 1 MiB to 1 GiB, at least MaxWriteGatherPerSession.
	MaxWriteGatherPerUser int64
	// MinIO is the S3 server holding the buckets; nil means the embedded
	// store with its data in <workdir>/data.
	MinIO *MinIOConfig
	// MetricsAddr is a host:port serving Prometheus metrics; "" (the
	// default) turns metrics off.
	MetricsAddr string
	// UploadPartSize is the multipart upload part size in bytes; 16 MiB by
	// default, between 5 MiB and 5 GiB.
	UploadPartSize int64
	// UploadConcurrency is the number of parts of one file uploaded in
	// parallel; 4 by default, between 1 and 64.
	UploadConcurrency int
	// TmpMinFree is the free space, in bytes, kept in TmpDir: new writes
	// get ENOSPC below it; 512 MiB by default.
	TmpMinFree int64
	// MaxCachedFiles bounds the clean local copies kept in TmpDir for a
	// resume (least recently used go first); 4096 by default.
	MaxCachedFiles int
	// MaxPendingFilesPerUser bounds the files one user has being written
	// or waiting as interrupted uploads; 1024 by default.
	MaxPendingFilesPerUser int
	// MaxPendingBytesPerUser bounds the sizes of those files, added up;
	// 0 (the default) means a quarter of the size of TmpDir's file system.
	MaxPendingBytesPerUser int64
	// MaxStartups bounds the connections that have not logged in yet,
	// "start:rate:full" as OpenSSH's MaxStartups; "128:30:512" by default.
	MaxStartups sftpd.MaxStartups
	// MaxStartupsPerSource bounds the connections that have not logged in
	// yet from one IPv4 address or IPv6 /64; 32 by default.
	MaxStartupsPerSource int
	// LoginGraceTime bounds the SSH handshake and login of a connection;
	// 30 seconds by default.
	LoginGraceTime time.Duration
	// ProxyProtocol says whether the load balancers in ProxyTrusted send a
	// PROXY protocol header; sftpd.ProxyOff by default.
	ProxyProtocol sftpd.ProxyMode
	// ProxyTrusted are the addresses allowed to send a PROXY header; none
	// by default, required when ProxyProtocol is not off.
	ProxyTrusted []netip.Prefix
	// KexAlgorithms, Ciphers and MACs are the SSH algorithms offered, in
	// order of preference; sftpd.DefaultKeyExchanges, DefaultCiphers and
	// DefaultMACs by default.
	KexAlgorithms, Ciphers, MACs []string
	// ReadAheadBudget is the memory, in bytes, that the read-ahead of all
	// open files together may hold; 256 MiB by default, at least 2 MiB.
	ReadAheadBudget int64
	// Database is the identity store: "sqlite" (the default), the file
	// <Workdir>/sftpgate.db, or a postgres:// URL shared by several nodes.
	Database string
	// Workdir is the working directory (identity store, default mounts and
	// embedded data).
	Workdir string
	// Path is the configuration file the values were read from (it may not
	// exist when the configuration is DefaultConfig).
	Path string

	// The daemon's settings below are no keys of the file: DefaultConfig
	// sets them, and the daemon passes them on to fusefs and sftpd rather
	// than relying on those packages' zero-value defaults.

	// ShutdownTimeout bounds the whole shutdown after a stop signal: the
	// sessions' grace period, the upload of what is dirty, the unmounts;
	// 5 minutes.
	ShutdownTimeout time.Duration
	// SessionGrace is how long open sessions may go on after a stop
	// signal; 10 seconds.
	SessionGrace time.Duration
	// MountIdleDelay is how long a view stays mounted after its last
	// session; 30 seconds.
	MountIdleDelay time.Duration
	// OldDaemonWait is how long the start waits for a killed daemon to
	// finish exiting; 15 seconds.
	OldDaemonWait time.Duration
	// PortRetry is how long the start retries an SSH port still in use (a
	// killed daemon may still be closing its sockets); 10 seconds.
	PortRetry time.Duration
	// StoreCheckTimeout bounds the start-up request that checks the MinIO
	// endpoint and credentials; 15 seconds.
	StoreCheckTimeout time.Duration
	// AttrTTL is how long the kernel and fusefs trust an object's
	// attributes; 1 second.
	AttrTTL time.Duration
	// GrantsTTL is how long fusefs trusts a user's grants; 2 seconds.
	GrantsTTL time.Duration
	// MaxAuthTries is the number of failed authentications after which an
	// SSH connection is closed; 3.
	MaxAuthTries int
	// FailureDelay is the least time a refused authentication takes;
	// 500 milliseconds.
	FailureDelay time.Duration
	// LogFormat and LogLevel are how the daemon logs ("text" or "json";
	// "debug", "info", "warn" or "error"), set from the command line; the
	// FUSE watchdog process logs the same way. "text" and "info".
	LogFormat, LogLevel string
}

// MinIOConfig is the external S3 (MinIO) server, the "minio" key.
type MinIOConfig struct {
	// Endpoint is host:port, without a scheme.
	Endpoint string
	// AccessKey and SecretKey are the credentials; both mandatory.
	AccessKey, SecretKey string
	// Secure selects https.
	Secure bool
	// Region is the S3 region; "" lets the client discover it.
	Region string
}

// StorePath is the identity store of the working directory.
func (c *Config) StorePath() string { return filepath.Join(c.Workdir, StoreFile) }

// DataDir is where the embedded store keeps its objects (used when MinIO is
// nil).
func (c *Config) DataDir() string { return filepath.Join(c.Workdir, "data") }

// Addr returns the listen address bind:port (IPv6 addresses bracketed).
func (c *Config) Addr() string { return net.JoinHostPort(c.Bind, strconv.Itoa(c.Port)) }

// DefaultConfig returns the configuration used when no key is set, for the
// working directory workdir, with Path <workdir>/pydio.json.
func DefaultConfig(workdir string) *Config {
	if abs, err := filepath.Abs(workdir); err == nil {
		workdir = abs
	}
	return &Config{
		Port:                     defaultPort,
		TmpDir:                   filepath.Join(workdir, "tmp"),
		LegacyTmpDir:             os.TempDir(),
		TmpFilesLifespan:         defaultTmpFilesLifespan,
		Bind:                     defaultBind,
		MountRoot:                filepath.Join(workdir, "mounts"),
		IdleTimeout:              defaultIdleTimeout,
		MaxSessionsPerUser:       defaultMaxSessionsPerUser,
		UploadPartSize:           defaultUploadPartSize,
		UploadConcurrency:        defaultUploadConcurrency,
		TmpMinFree:               defaultTmpMinFree,
		MaxHandlesPerSession:     defaultMaxHandlesPerSess,
		MaxHandlesPerUser:        defaultMaxHandlesPerUser,
		MaxFileSize:              defaultMaxFileSize,
		MaxWriteGatherPerSession: defaultGatherPerSession,
		MaxWriteGatherPerUser:    defaultGatherPerUser,
		MaxCachedFiles:           4096,
		MaxPendingFilesPerUser:   1024,
		MaxStartups:              sftpd.DefaultMaxStartups,
		MaxStartupsPerSource:     defaultMaxStartupsPerSrc,
		LoginGraceTime:           defaultLoginGraceTime,
		KexAlgorithms:            slices.Clone(sftpd.DefaultKeyExchanges),
		Ciphers:                  slices.Clone(sftpd.DefaultCiphers),
		MACs:                     slices.Clone(sftpd.DefaultMACs),
		ReadAheadBudget:          defaultReadAheadBudget,
		PubkeyAuthentication:     true,
		Database:                 DatabaseSQLite,
		Workdir:                  workdir,
		Path:                     filepath.Join(workdir, "pydio.json"),
		ShutdownTimeout:          defaultShutdownTimeout,
		SessionGrace:             defaultSessionGrace,
		MountIdleDelay:           defaultMountIdleDelay,
		OldDaemonWait:            defaultOldDaemonWait,
		PortRetry:                defaultPortRetry,
		StoreCheckTimeout:        defaultStoreCheck,
		AttrTTL:                  defaultAttrTTL,
		GrantsTTL:                defaultGrantsTTL,
		MaxAuthTries:             defaultMaxAuthTries,
		FailureDelay:             defaultFailureDelay,
		LogFormat:                defaultLogFormat,
		LogLevel:                 defaultLogLevel,
	}
}

// LoadConfig reads the configuration file at path (if empty,
// <workdir>/pydio.json) and parses it with ParseConfig. A missing file is
// an error that names it and satisfies errors.Is(err, fs.ErrNotExist);
// callers that can run without a file use DefaultConfig instead.
func LoadConfig(path, workdir string) (cfg *Config, warnings []string, err error) {
	if path == "" {
		path = filepath.Join(workdir, "pydio.json")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, nil, fmt.Errorf("config %s: %w", path, pe.Err)
		}
		return nil, nil, fmt.Errorf("config %s: %w", path, err)
	}
	return ParseConfig(data, path, workdir)
}

// ParseConfig parses the content of a pydio.json. path names the file in
// messages, and relative paths in it (hostKeyFile, tmpDir, mountRoot) are
// resolved against its directory (against workdir when path is empty).
// Unknown keys in the section are reported in one warning; any bad value is
// an error naming the key and the problem, and no Config is returned.
func ParseConfig(data []byte, path, workdir string) (*Config, []string, error) {
	cfg := DefaultConfig(workdir)
	name := path
	if path != "" {
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
		cfg.Path = path
	} else {
		name = "(no file)"
	}
	base := cfg.Workdir
	if path != "" {
		base = filepath.Dir(path)
	}

	// A UTF-8 byte order mark, as some editors write, is not JSON.
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, nil, &configError{name, describeJSONError(data, err, "")}
	}
	if top == nil { // the whole file is "null"
		return nil, nil, &configError{name, "the top level must be a JSON object"}
	}
	noSection := fmt.Sprintf("config %s: no %s section: using the defaults (gateway disabled)", name, sectionKey)
	rawServices, ok := top["services"]
	if !ok || isNull(rawServices) {
		return cfg, []string{noSection}, nil
	}
	var services map[string]json.RawMessage
	if err := json.Unmarshal(rawServices, &services); err != nil {
		return nil, nil, &configError{name, describeJSONError(rawServices, err, "services")}
	}
	rawSection, ok := services[sectionName]
	if !ok || isNull(rawSection) {
		return cfg, []string{noSection}, nil
	}
	var values map[string]json.RawMessage
	if err := json.Unmarshal(rawSection, &values); err != nil {
		return nil, nil, &configError{name, describeJSONError(rawSection, err, sectionKey)}
	}

	p := &parser{prefix: sectionKey + ".", values: values, seen: map[string]bool{}}
	p.parseInto(cfg, base)

	var warnings []string
	unknown := p.unknown()
	if len(unknown) > 0 {
		warnings = append(warnings, fmt.Sprintf("config %s: unknown keys in %s ignored: %s", name, sectionKey, strings.Join(unknown, ", ")))
	}
	if len(p.problems) == 1 {
		return nil, warnings, &configError{name, p.problems[0]}
	}
	if len(p.problems) > 1 {
		return nil, warnings, &configError{name, fmt.Sprintf("%d problems:\n  %s", len(p.problems), strings.Join(p.problems, "\n  "))}
	}
	return cfg, warnings, nil
}

// parseInto reads every known key of the section into cfg, recording
// problems instead of stopping at the first one.
func (p *parser) parseInto(cfg *Config, base string) {
	p.boolean("enabled", &cfg.Enabled)
	hostKeySet := p.str("hostKeyFile", &cfg.HostKeyFile) && cfg.HostKeyFile != ""
	p.integer("port", &cfg.Port, 1, 65535)
	tmpDirSet := p.str("tmpDir", &cfg.TmpDir) && cfg.TmpDir != ""
	p.duration("tmpFilesLifespan", &cfg.TmpFilesLifespan)
	p.str("bind", &cfg.Bind)
	p.str("mountRoot", &cfg.MountRoot)
	p.duration("idleTimeout", &cfg.IdleTimeout)
	p.integer("maxSessionsPerUser", &cfg.MaxSessionsPerUser, 1, maxLimitCount)
	p.integer("maxHandlesPerSession", &cfg.MaxHandlesPerSession, 1, maxLimitCount)
	p.integer("maxHandlesPerUser", &cfg.MaxHandlesPerUser, 1, maxLimitCount)
	p.size("maxFileSize", &cfg.MaxFileSize, 1, defaultMaxFileSize)
	p.size("maxWriteGatherPerSession", &cfg.MaxWriteGatherPerSession, minGather, maxGather)
	p.size("maxWriteGatherPerUser", &cfg.MaxWriteGatherPerUser, minGather, maxGather)
	p.minio(&cfg.MinIO)
	p.database(&cfg.Database)
	p.str("metricsAddr", &cfg.MetricsAddr)
	p.size("uploadPartSize", &cfg.UploadPartSize, minUploadPartSize, maxUploadPartSize)
	p.integer("uploadConcurrency", &cfg.UploadConcurrency, 1, maxUploadConcurrency)
	p.size("tmpMinFree", &cfg.TmpMinFree, 0, 1<<62)
	p.integer("maxCachedFiles", &cfg.MaxCachedFiles, 1, 1<<24)
	p.integer("maxPendingFilesPerUser", &cfg.MaxPendingFilesPerUser, 1, 1<<24)
	p.size("maxPendingBytesPerUser", &cfg.MaxPendingBytesPerUser, 0, 1<<62)
	p.maxStartups("maxStartups", &cfg.MaxStartups)
	p.integer("maxStartupsPerSource", &cfg.MaxStartupsPerSource, 1, 1<<20)
	p.duration("loginGraceTime", &cfg.LoginGraceTime)
	p.proxyProtocol(&cfg.ProxyProtocol, &cfg.ProxyTrusted)
	p.algorithms(sftpd.AlgoKeyExchange, &cfg.KexAlgorithms)
	p.algorithms(sftpd.AlgoCipher, &cfg.Ciphers)
	p.algorithms(sftpd.AlgoMAC, &cfg.MACs)
	p.size("readAheadBudget", &cfg.ReadAheadBudget, minReadAheadBudget, 1<<62)
	p.boolean("pubkeyAuthentication", &cfg.PubkeyAuthentication)
	if p.str("trustedUserCAKeys", &cfg.TrustedUserCAKeys) && cfg.TrustedUserCAKeys != "" {
		cfg.TrustedUserCAKeys = resolve(base, cfg.TrustedUserCAKeys)
		cas, err := loadTrustedCAKeys(cfg.TrustedUserCAKeys)
		if err != nil {
			p.problem("trustedUserCAKeys", err.Error())
		}
		cfg.TrustedCAs = cas
		if !cfg.PubkeyAuthentication {
			p.problem("trustedUserCAKeys", "set while pubkeyAuthentication is false (certificates use the publickey method)")
		}
	}

	// "" means the default for the paths and the bind address.
	if !tmpDirSet {
		cfg.TmpDir = filepath.Join(cfg.Workdir, "tmp")
	} else {
		cfg.LegacyTmpDir = ""
	}
	if cfg.MountRoot == "" {
		cfg.MountRoot = filepath.Join(cfg.Workdir, "mounts")
	}
	if cfg.Bind == "" {
		cfg.Bind = defaultBind
	}
	cfg.TmpDir = resolve(base, cfg.TmpDir)
	cfg.MountRoot = resolve(base, cfg.MountRoot)
	if cfg.HostKeyFile != "" {
		cfg.HostKeyFile = resolve(base, cfg.HostKeyFile)
	}

	if !validHost(cfg.Bind) {
		p.problem("bind", fmt.Sprintf("not an IP address or host name: %q", cfg.Bind))
	}
	if cfg.MetricsAddr != "" {
		if err := checkHostPort(cfg.MetricsAddr, true); err != nil {
			p.problem("metricsAddr", fmt.Sprintf("%q: %v", cfg.MetricsAddr, err))
		}
	}
	if cfg.MaxHandlesPerUser < cfg.MaxHandlesPerSession {
		p.problem("maxHandlesPerUser", fmt.Sprintf("%d is below maxHandlesPerSession (%d)", cfg.MaxHandlesPerUser, cfg.MaxHandlesPerSession))
	}
	if cfg.MaxWriteGatherPerUser < cfg.MaxWriteGatherPerSession {
		p.problem("maxWriteGatherPerUser", fmt.Sprintf("%s is below maxWriteGatherPerSession (%s)", formatSize(cfg.MaxWriteGatherPerUser), formatSize(cfg.MaxWriteGatherPerSession)))
	}
	hostKeysSet := p.hostKeyFiles(cfg, base)
	if cfg.Enabled {
		switch {
		case hostKeySet:
			if err := checkReadableFile(cfg.HostKeyFile); err != nil {
				p.problem("hostKeyFile", err.Error())
			}
		case !hostKeysSet:
			p.problem("hostKeyFile", "mandatory when enabled is true")
		}
	}
}

// parser decodes the keys of one JSON object, remembering which keys it
// knows and what was wrong.
type parser struct {
	prefix   string // e.g. `services."pydio.gateway.sftp".`
	values   map[string]json.RawMessage
	seen     map[string]bool // keys parser knows, with their prefix relative to the section
	problems []string
	nested   []*parser
}

// problem records that key is wrong.
func (p *parser) problem(key, what string) {
	p.problems = append(p.problems, p.prefix+key+": "+what)
}

// get returns the raw value of key; false when absent or null.
func (p *parser) get(key string) (json.RawMessage, bool) {
	p.seen[key] = true
	raw, ok := p.values[key]
	if !ok || isNull(raw) {
		return nil, false
	}
	return raw, true
}

// unknown lists the keys present but not known, sorted, nested ones as
// "minio.x".
func (p *parser) unknown() []string {
	var out []string
	for k := range p.values {
		if !p.seen[k] {
			out = append(out, k)
		}
	}
	for _, n := range p.nested {
		rel := strings.TrimPrefix(n.prefix, p.prefix)
		for _, k := range n.unknown() {
			out = append(out, rel+k)
		}
	}
	slices.Sort(out)
	return out
}

// wrongType records a type mismatch: "expected int, got string".
func (p *parser) wrongType(key, want string, raw json.RawMessage) {
	p.problem(key, fmt.Sprintf("expected %s, got %s", want, jsonKind(raw)))
}

func (p *parser) boolean(key string, dst *bool) {
	raw, ok := p.get(key)
	if !ok {
		return
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		p.wrongType(key, "bool", raw)
	}
}

// str reads a string key and reports whether it was set.
func (p *parser) str(key string, dst *string) bool {
	raw, ok := p.get(key)
	if !ok {
		return false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		p.wrongType(key, "string", raw)
		return false
	}
	*dst = s
	return true
}

func (p *parser) integer(key string, dst *int, lo, hi int) {
	raw, ok := p.get(key)
	if !ok {
		return
	}
	var n int
	if err := json.Unmarshal(raw, &n); err != nil {
		if jsonKind(raw) == "number" {
			p.problem(key, fmt.Sprintf("expected an integer, got %s", strings.TrimSpace(string(raw))))
			return
		}
		p.wrongType(key, "int", raw)
		return
	}
	if n < lo || n > hi {
		p.problem(key, fmt.Sprintf("must be between %d and %d, got %d", lo, hi, n))
		return
	}
	*dst = n
}

func (p *parser) duration(key string, dst *time.Duration) {
	raw, ok := p.get(key)
	if !ok {
		return
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		p.wrongType(key, `duration string (e.g. "15m")`, raw)
		return
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		p.problem(key, fmt.Sprintf("invalid duration %q: a Go duration such as \"90s\", \"15m\" or \"1h30m\" is expected", s))
		return
	}
	if d <= 0 {
		p.problem(key, fmt.Sprintf("must be positive, got %q", s))
		return
	}
	*dst = d
}

func (p *parser) size(key string, dst *int64, lo, hi int64) {
	raw, ok := p.get(key)
	if !ok {
		return
	}
	var n int64
	switch jsonKind(raw) {
	case "string":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			p.wrongType(key, `size string (e.g. "16MiB")`, raw)
			return
		}
		v, err := parseSize(s)
		if err != nil {
			p.problem(key, err.Error())
			return
		}
		n = v
	case "number":
		if err := json.Unmarshal(raw, &n); err != nil || n < 0 {
			p.problem(key, fmt.Sprintf("a size in bytes must be a whole non-negative number, got %s", strings.TrimSpace(string(raw))))
			return
		}
	default:
		p.wrongType(key, `size string (e.g. "16MiB")`, raw)
		return
	}
	if n < lo || n > hi {
		p.problem(key, fmt.Sprintf("must be between %s and %s, got %s", formatSize(lo), formatSize(hi), formatSize(n)))
		return
	}
	*dst = n
}

// maxStartups reads a "start:rate:full" string (or a single number).
func (p *parser) maxStartups(key string, dst *sftpd.MaxStartups) {
	raw, ok := p.get(key)
	if !ok {
		return
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		p.wrongType(key, `string "start:rate:full" (e.g. "128:30:512")`, raw)
		return
	}
	m, err := sftpd.ParseMaxStartups(s)
	if err != nil {
		p.problem(key, err.Error())
		return
	}
	*dst = m
}

// algorithms reads a list of SSH algorithm names of kind (also the key),
// each one known to the SSH library.
func (p *parser) algorithms(kind string, dst *[]string) {
	raw, ok := p.get(kind)
	if !ok {
		return
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		p.wrongType(kind, "array of strings", raw)
		return
	}
	if err := sftpd.CheckAlgorithms(kind, list); err != nil {
		p.problem(kind, strings.TrimPrefix(err.Error(), kind+": "))
		return
	}
	*dst = list
}

// minio reads the "minio" object: absent or null leaves *dst nil.
func (p *parser) minio(dst **MinIOConfig) {
	const key = "minio"
	raw, ok := p.get(key)
	if !ok {
		return
	}
	var values map[string]json.RawMessage
	if err := json.Unmarshal(raw, &values); err != nil {
		p.wrongType(key, "object", raw)
		return
	}
	n := &parser{prefix: p.prefix + key + ".", values: values, seen: map[string]bool{}}
	p.nested = append(p.nested, n)
	m := &MinIOConfig{}
	n.str("endpoint", &m.Endpoint)
	n.str("accessKey", &m.AccessKey)
	n.str("secretKey", &m.SecretKey)
	n.boolean("secure", &m.Secure)
	n.str("region", &m.Region)
	if m.Endpoint == "" {
		n.problem("endpoint", "mandatory when minio is set (host:port)")
	} else if strings.Contains(m.Endpoint, "://") {
		n.problem("endpoint", fmt.Sprintf("%q: must be host:port without a scheme (set \"secure\": true for https)", m.Endpoint))
	} else if err := checkHostPort(m.Endpoint, false); err != nil {
		n.problem("endpoint", fmt.Sprintf("%q: %v", m.Endpoint, err))
	}
	if m.AccessKey == "" {
		n.problem("accessKey", "mandatory when minio is set")
	}
	if m.SecretKey == "" {
		n.problem("secretKey", "mandatory when minio is set")
	}
	p.problems = append(p.problems, n.problems...)
	*dst = m
}

// describeJSONError turns a decoding error into a message with a position
// (malformed JSON) or the key whose value has the wrong type.
func describeJSONError(data []byte, err error, key string) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		line, col := lineCol(data, syn.Offset)
		return fmt.Sprintf("malformed JSON at line %d, column %d: %v", line, col, syn)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		if key == "" {
			return fmt.Sprintf("the top level must be a JSON object, got %s", jsonKind(data))
		}
		return fmt.Sprintf("%s: expected object, got %s", key, jsonKind(data))
	}
	if key == "" {
		return err.Error()
	}
	return key + ": " + err.Error()
}

// lineCol converts a byte offset into a 1-based line and column (in bytes).
func lineCol(data []byte, offset int64) (line, col int) {
	if offset < 0 {
		offset = 0
	}
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	before := data[:offset]
	line = 1 + bytes.Count(before, []byte("\n"))
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1)
	if col == 0 {
		col = 1
	}
	return line, col
}

// jsonKind names the JSON type of a raw value, for "got ..." messages.
func jsonKind(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// resolve makes p absolute against base.
func resolve(base, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(base, p)
}

// checkReadableFile opens path to make sure it is a readable regular file.
func checkReadableFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("cannot read %s: %w", path, pe.Err)
		}
		return fmt.Errorf("cannot read %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	return nil
}

// checkHostPort validates "host:port"; the host may be empty only when
// emptyHost is true (":9100" listens on every address).
func checkHostPort(s string, emptyHost bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("not a host:port address")
	}
	if host == "" && !emptyHost {
		return errors.New("the host is empty")
	}
	if host != "" && !validHost(host) {
		return fmt.Errorf("not an IP address or host name: %q", host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("the port must be a number between 1 and 65535, got %q", port)
	}
	return nil
}

// validHost accepts an IP address (IPv6 with or without zone) or a DNS host
// name.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// sizeUnits are the units parseSize accepts (case-insensitive): binary
// (KiB = 1024) and decimal (KB = 1000).
var sizeUnits = map[string]int64{
	"":    1,
	"b":   1,
	"kib": 1 << 10,
	"mib": 1 << 20,
	"gib": 1 << 30,
	"tib": 1 << 40,
	"kb":  1e3,
	"mb":  1e6,
	"gb":  1e9,
	"tb":  1e12,
}

// parseSize parses a size such as "16MiB", "512 MiB", "5GB" or "1024": a
// whole number, optional spaces, an optional unit among B, KiB, MiB, GiB,
// TiB (powers of 1024) and KB, MB, GB, TB (powers of 1000).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid size %q: expected a whole number and a unit, e.g. \"16MiB\"", s)
	}
	unit := strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)", s, strings.TrimSpace(t[i:]))
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > (1<<63-1)/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return n * mult, nil
}

// ParseSize parses a size as the size keys take it ("16MiB", "5GB",
// "1024"); see README "Configuration".
func ParseSize(s string) (int64, error) { return parseSize(s) }

// FormatSize prints n in the largest binary unit that divides it exactly,
// as "config check" prints sizes ("16MiB", "1000B").
func FormatSize(n int64) string { return formatSize(n) }

// formatSize prints n in the largest binary unit that divides it exactly,
// e.g. "16MiB", "1536KiB", "1000B".
func formatSize(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
