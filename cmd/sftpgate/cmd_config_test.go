package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sftpgate/sftpgate/internal/config"
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

// TestConfigCheckShowsHostKeyFiles checks that `config check --json` prints
// hostKeyFiles after hostKeyFile, in a form that parses back.
func TestConfigCheckShowsHostKeyFiles(t *testing.T) {
	dir := t.TempDir()
	key := writeKey(t, dir)
	path := filepath.Join(dir, "pydio.json")
	cfg, _, err := config.ParseConfig(sectionJSON(`"enabled": true, "hostKeyFile": "`+key+`", "hostKeyFiles": ["`+key+`"]`), path, dir)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := writeConfigJSON(&out, cfg); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	i, j := strings.Index(text, `"hostKeyFile"`), strings.Index(text, `"hostKeyFiles"`)
	if i < 0 || j < i {
		t.Fatalf("got %s, want hostKeyFiles after hostKeyFile", text)
	}
	back, _, err := config.ParseConfig(out.Bytes(), path, dir)
	if err != nil {
		t.Fatalf("parse the printed configuration: %v", err)
	}
	if !reflect.DeepEqual(back.HostKeyFiles, []string{key}) {
		t.Errorf("got hostKeyFiles %q back, want %q", back.HostKeyFiles, []string{key})
	}
}
