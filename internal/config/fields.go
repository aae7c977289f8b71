package config

import "slices"

// secretMask replaces secrets in printed configurations.
const secretMask = "****"

// Field is one key of the effective configuration, in file order.
type Field struct {
	// Key is the key's name in the section (or in its object).
	Key string
	// Value is the value as it would be written in the file: bool, int,
	// string, []string, or []Field for an object; nil for null.
	Value any
	// Text, when set, is what a listing prints instead of Value.
	Text string
}

// Fields lists the effective configuration in the order of the README,
// with values as they would be written in the file (durations and sizes as
// strings) and the secret key masked.
func (c *Config) Fields() []Field {
	f := []Field{
		{Key: "enabled", Value: c.Enabled},
		{Key: "hostKeyFile", Value: c.HostKeyFile},
		{Key: "port", Value: c.Port},
		{Key: "tmpDir", Value: c.TmpDir},
		{Key: "tmpFilesLifespan", Value: c.TmpFilesLifespan.String()},
		{Key: "bind", Value: c.Bind},
		{Key: "mountRoot", Value: c.MountRoot},
		{Key: "idleTimeout", Value: c.IdleTimeout.String()},
		{Key: "maxSessionsPerUser", Value: c.MaxSessionsPerUser},
		{Key: "minio", Text: "embedded store, data in " + c.DataDir()},
		{Key: "metricsAddr", Value: c.MetricsAddr},
		{Key: "uploadPartSize", Value: formatSize(c.UploadPartSize)},
		{Key: "uploadConcurrency", Value: c.UploadConcurrency},
		{Key: "tmpMinFree", Value: formatSize(c.TmpMinFree)},
		{Key: "maxStartups", Value: c.MaxStartups.String()},
		{Key: "maxStartupsPerSource", Value: c.MaxStartupsPerSource},
		{Key: "loginGraceTime", Value: c.LoginGraceTime.String()},
		{Key: "proxyProtocol", Value: c.ProxyProtocol.String()},
		{Key: "proxyTrusted", Value: proxyTrustedStrings(c.ProxyTrusted)},
		{Key: "kexAlgorithms", Value: c.KexAlgorithms},
		{Key: "ciphers", Value: c.Ciphers},
		{Key: "macs", Value: c.MACs},
		{Key: "maxHandlesPerSession", Value: c.MaxHandlesPerSession},
		{Key: "maxHandlesPerUser", Value: c.MaxHandlesPerUser},
		{Key: "maxFileSize", Value: formatSize(c.MaxFileSize)},
		{Key: "maxWriteGatherPerSession", Value: formatSize(c.MaxWriteGatherPerSession)},
		{Key: "maxWriteGatherPerUser", Value: formatSize(c.MaxWriteGatherPerUser)},
		{Key: "maxCachedFiles", Value: c.MaxCachedFiles},
		{Key: "maxPendingFilesPerUser", Value: c.MaxPendingFilesPerUser},
		{Key: "maxPendingBytesPerUser", Value: formatSize(c.MaxPendingBytesPerUser)},
		{Key: "readAheadBudget", Value: formatSize(c.ReadAheadBudget)},
		{Key: "pubkeyAuthentication", Value: c.PubkeyAuthentication},
		{Key: "trustedUserCAKeys", Value: c.TrustedUserCAKeys},
	}
	if c.MaxPendingBytesPerUser == 0 {
		for i := range f {
			if f[i].Key == "maxPendingBytesPerUser" {
				f[i].Text = "a quarter of tmpDir's file system"
			}
		}
	}
	for i := range f {
		if f[i].Key == "proxyTrusted" && len(c.ProxyTrusted) == 0 {
			f[i].Text = "(none)"
		}
	}
	if c.HostKeyFile == "" {
		f[1].Text = "(not set)"
	}
	if c.MetricsAddr == "" {
		f[10].Text = "(off)"
	}
	if c.TrustedUserCAKeys == "" {
		f[len(f)-1].Text = "(none)"
	}
	if m := c.MinIO; m != nil {
		f[9] = Field{Key: "minio", Value: []Field{
			{Key: "endpoint", Value: m.Endpoint},
			{Key: "accessKey", Value: m.AccessKey},
			{Key: "secretKey", Value: secretMask},
			{Key: "secure", Value: m.Secure},
			{Key: "region", Value: m.Region},
		}}
	}
	if len(c.HostKeyFiles) > 0 {
		f = slices.Insert(f, 2, Field{Key: "hostKeyFiles", Value: c.HostKeyFiles})
	}
	f = append(f, Field{Key: "database", Value: databaseShown(c.Database)})
	return f
}
