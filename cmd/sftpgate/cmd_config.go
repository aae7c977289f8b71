package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// newConfigCmd is "sftpgate config".
func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Inspect the configuration file",
		Example: `  sftpgate config check
  sftpgate --config /etc/cells/pydio.json config check --json`,
		Args: groupArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(newConfigCheckCmd())
	return cmd
}

func newConfigCheckCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check [--json]",
		Short: "Validate the configuration and print its effective values",
		Long: `Read the section services."pydio.gateway.sftp" of the configuration file,
validate every key and print the effective configuration (defaults filled
in, paths absolute, the MinIO secret key masked), then "configuration OK".
Warnings (unknown keys, missing section) go to stderr. With --json the
effective section is printed as JSON that can be pasted back into the file,
and "configuration OK" goes to stderr.`,
		Example: `  sftpgate config check
  sftpgate --workdir /var/cells config check
  sftpgate --config ./pydio.json config check --json`,
		Args: noArgs,
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := writeConfigJSON(out, cfg); err != nil {
					return err
				}
				_, err = fmt.Fprintln(cmd.ErrOrStderr(), "configuration OK")
				return err
			}
			if err := writeConfigText(out, cfg); err != nil {
				return err
			}
			_, err = fmt.Fprintln(out, "configuration OK")
			return err
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the effective configuration as JSON")
	return cmd
}

// secretMask replaces secrets in printed configurations.
const secretMask = "****"

// field is one key of the effective configuration, in file order.
type field struct {
	key   string
	value any // bool, int, string, or []field for an object; nil for null
	text  string
}

// fields lists the effective configuration in the order of the README,
// with values as they would be written in the file (durations and sizes as
// strings) and the secret key masked.
func (c *Config) fields() []field {
	f := []field{
		{key: "enabled", value: c.Enabled},
		{key: "hostKeyFile", value: c.HostKeyFile},
		{key: "port", value: c.Port},
		{key: "tmpDir", value: c.TmpDir},
		{key: "tmpFilesLifespan", value: c.TmpFilesLifespan.String()},
		{key: "bind", value: c.Bind},
		{key: "mountRoot", value: c.MountRoot},
		{key: "idleTimeout", value: c.IdleTimeout.String()},
		{key: "maxSessionsPerUser", value: c.MaxSessionsPerUser},
		{key: "minio", text: "embedded store, data in " + c.DataDir()},
		{key: "metricsAddr", value: c.MetricsAddr},
		{key: "uploadPartSize", value: formatSize(c.UploadPartSize)},
		{key: "uploadConcurrency", value: c.UploadConcurrency},
		{key: "tmpMinFree", value: formatSize(c.TmpMinFree)},
		{key: "maxStartups", value: c.MaxStartups.String()},
		{key: "maxStartupsPerSource", value: c.MaxStartupsPerSource},
		{key: "loginGraceTime", value: c.LoginGraceTime.String()},
		{key: "kexAlgorithms", value: c.KexAlgorithms},
		{key: "ciphers", value: c.Ciphers},
		{key: "macs", value: c.MACs},
		{key: "maxHandlesPerSession", value: c.MaxHandlesPerSession},
		{key: "maxHandlesPerUser", value: c.MaxHandlesPerUser},
		{key: "maxFileSize", value: formatSize(c.MaxFileSize)},
		{key: "maxWriteGatherPerSession", value: formatSize(c.MaxWriteGatherPerSession)},
		{key: "maxWriteGatherPerUser", value: formatSize(c.MaxWriteGatherPerUser)},
		{key: "maxCachedFiles", value: c.MaxCachedFiles},
		{key: "maxPendingFilesPerUser", value: c.MaxPendingFilesPerUser},
		{key: "maxPendingBytesPerUser", value: formatSize(c.MaxPendingBytesPerUser)},
		{key: "readAheadBudget", value: formatSize(c.ReadAheadBudget)},
		{key: "pubkeyAuthentication", value: c.PubkeyAuthentication},
		{key: "trustedUserCAKeys", value: c.TrustedUserCAKeys},
	}
	if c.MaxPendingBytesPerUser == 0 {
		for i := range f {
			if f[i].key == "maxPendingBytesPerUser" {
				f[i].text = "a quarter of tmpDir's file system"
			}
		}
	}
	if c.HostKeyFile == "" {
		f[1].text = "(not set)"
	}
	if c.MetricsAddr == "" {
		f[10].text = "(off)"
	}
	if c.TrustedUserCAKeys == "" {
		f[len(f)-1].text = "(none)"
	}
	if m := c.MinIO; m != nil {
		f[9] = field{key: "minio", value: []field{
			{key: "endpoint", value: m.Endpoint},
			{key: "accessKey", value: m.AccessKey},
			{key: "secretKey", value: secretMask},
			{key: "secure", value: m.Secure},
			{key: "region", value: m.Region},
		}}
	}
	if len(c.HostKeyFiles) > 0 {
		f = slices.Insert(f, 2, field{key: "hostKeyFiles", value: c.HostKeyFiles})
	}
	f = append(f, field{key: "database", value: databaseShown(c.Database)})
	return f
}

// writeConfigText prints the effective configuration as aligned lines.
func writeConfigText(w io.Writer, c *Config) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "configuration file\t%s\n", c.Path)
	fmt.Fprintf(tw, "working directory\t%s\n", c.Workdir)
	fmt.Fprintf(tw, "section\t%s\n", sectionKey)
	var walk func(prefix string, fs []field)
	walk = func(prefix string, fs []field) {
		for _, f := range fs {
			switch v := f.value.(type) {
			case []field:
				walk(prefix+f.key+".", v)
				continue
			}
			text := f.text
			if list, ok := f.value.([]string); ok && text == "" {
				text = strings.Join(list, ",")
			}
			if text == "" {
				text = fmt.Sprint(f.value)
				if s, ok := f.value.(string); ok && s == "" {
					text = `""`
				}
			}
			fmt.Fprintf(tw, "  %s%s\t%s\n", prefix, f.key, text)
		}
	}
	walk("", c.fields())
	return tw.Flush()
}

// writeConfigJSON prints {"services": {"pydio.gateway.sftp": {...}}} with
// the keys in file order.
func writeConfigJSON(w io.Writer, c *Config) error {
	var buf bytes.Buffer
	buf.WriteString(`{"services":{`)
	writeJSONString(&buf, sectionName)
	buf.WriteByte(':')
	if err := writeJSONObject(&buf, c.fields()); err != nil {
		return err
	}
	buf.WriteString("}}")
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		return fmt.Errorf("print configuration: %w", err)
	}
	out.WriteByte('\n')
	_, err := out.WriteTo(w)
	return err
}

func writeJSONObject(buf *bytes.Buffer, fs []field) error {
	buf.WriteByte('{')
	for i, f := range fs {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeJSONString(buf, f.key)
		buf.WriteByte(':')
		if sub, ok := f.value.([]field); ok {
			if err := writeJSONObject(buf, sub); err != nil {
				return err
			}
			continue
		}
		b, err := json.Marshal(f.value)
		if err != nil {
			return fmt.Errorf("print configuration: %s: %w", f.key, err)
		}
		buf.Write(b)
	}
	buf.WriteByte('}')
	return nil
}

func writeJSONString(buf *bytes.Buffer, s string) {
	b, _ := json.Marshal(s) // a string always marshals
	buf.Write(b)
}
