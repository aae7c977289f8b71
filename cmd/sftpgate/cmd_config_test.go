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

// TestConfigCheckShowsHostKeyFiles checks that `config check --json` prints
// hostKeyFiles after hostKeyFile, in a form that parses back.
func TestConfigCheckShowsHostKeyFiles(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519") // read at start, not by config check
	if err := os.WriteFile(key, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pydio.json")
	section := `"enabled": true, "hostKeyFile": "` + key + `", "hostKeyFiles": ["` + key + `"]`
	cfg, _, err := config.ParseConfig([]byte(`{"services": {"pydio.gateway.sftp": {`+section+`}}}`), path, dir)
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
