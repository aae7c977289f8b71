package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sftpgate/sftpgate/internal/config"
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

// writeConfigText prints the effective configuration as aligned lines.
func writeConfigText(w io.Writer, c *config.Config) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "configuration file\t%s\n", c.Path)
	fmt.Fprintf(tw, "working directory\t%s\n", c.Workdir)
	fmt.Fprintf(tw, "section\t%s\n", config.SectionKey)
	var walk func(prefix string, fs []config.Field)
	walk = func(prefix string, fs []config.Field) {
		for _, f := range fs {
			switch v := f.Value.(type) {
			case []config.Field:
				walk(prefix+f.Key+".", v)
				continue
			}
			text := f.Text
			if list, ok := f.Value.([]string); ok && text == "" {
				text = strings.Join(list, ",")
			}
			if text == "" {
				text = fmt.Sprint(f.Value)
				if s, ok := f.Value.(string); ok && s == "" {
					text = `""`
				}
			}
			fmt.Fprintf(tw, "  %s%s\t%s\n", prefix, f.Key, text)
		}
	}
	walk("", c.Fields())
	return tw.Flush()
}

// writeConfigJSON prints {"services": {"pydio.gateway.sftp": {...}}} with
// the keys in file order.
func writeConfigJSON(w io.Writer, c *config.Config) error {
	var buf bytes.Buffer
	buf.WriteString(`{"services":{`)
	writeJSONString(&buf, config.SectionName)
	buf.WriteByte(':')
	if err := writeJSONObject(&buf, c.Fields()); err != nil {
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

func writeJSONObject(buf *bytes.Buffer, fs []config.Field) error {
	buf.WriteByte('{')
	for i, f := range fs {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeJSONString(buf, f.Key)
		buf.WriteByte(':')
		if sub, ok := f.Value.([]config.Field); ok {
			if err := writeJSONObject(buf, sub); err != nil {
				return err
			}
			continue
		}
		b, err := json.Marshal(f.Value)
		if err != nil {
			return fmt.Errorf("print configuration: %s: %w", f.Key, err)
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
