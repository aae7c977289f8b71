package config

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestConfigHostKeyFiles(t *testing.T) {
	dir := t.TempDir()
	key := writeKey(t, dir) // <dir>/id_ed25519
	path := filepath.Join(dir, "pydio.json")
	rel := `"` + filepath.Base(key) + `"`

	valid := []struct {
		name      string
		body      string
		wantFile  string
		wantFiles []string
	}{
		{"hostKeyFile only (Cells)", `"enabled": true, "hostKeyFile": "` + key + `"`, key, nil},
		{"hostKeyFiles only", `"enabled": true, "hostKeyFiles": [` + rel + `]`, "", []string{key}},
		{"both", `"enabled": true, "hostKeyFile": ` + rel + `, "hostKeyFiles": ["` + key + `"]`, key, []string{key}},
		{"empty list, disabled", `"hostKeyFiles": []`, "", nil},
		{"null list", `"enabled": true, "hostKeyFile": ` + rel + `, "hostKeyFiles": null`, key, nil},
	}
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			cfg, warnings, err := ParseConfig(sectionJSON(tt.body), path, dir)
			if err != nil || len(warnings) > 0 {
				t.Fatalf("ParseConfig: got %v, warnings %q, want no error or warning", err, warnings)
			}
			if cfg.HostKeyFile != tt.wantFile || !reflect.DeepEqual(cfg.HostKeyFiles, tt.wantFiles) {
				t.Errorf("got hostKeyFile %q, hostKeyFiles %q, want %q, %q", cfg.HostKeyFile, cfg.HostKeyFiles, tt.wantFile, tt.wantFiles)
			}
			want := tt.wantFiles
			if tt.wantFile != "" {
				want = append([]string{tt.wantFile}, want...)
			}
			if got := cfg.HostKeys(); !reflect.DeepEqual(got, want) {
				t.Errorf("got HostKeys() %q, want %q", got, want)
			}
		})
	}

	const s = `services."pydio.gateway.sftp".`
	nope := filepath.Join(dir, "nope")
	bad := []struct {
		name string
		body string
		want []string
	}{
		{"not a list", `"enabled": true, "hostKeyFiles": "` + key + `"`, []string{s + "hostKeyFiles: expected list of strings, got string"}},
		{"not a string", `"enabled": true, "hostKeyFiles": ["` + key + `", 3]`, []string{s + "hostKeyFiles[1]: expected string, got number"}},
		{"null entry", `"enabled": true, "hostKeyFiles": [null]`, []string{s + "hostKeyFiles[0]: expected string, got null"}},
		{"empty entry", `"enabled": true, "hostKeyFiles": [""]`, []string{s + "hostKeyFiles[0]: must not be empty"}},
		{"missing file", `"enabled": true, "hostKeyFile": "` + key + `", "hostKeyFiles": ["` + key + `", "nope"]`,
			[]string{s + "hostKeyFiles[1]: cannot read " + nope + ": no such file or directory"}},
		{"directory", `"enabled": true, "hostKeyFiles": ["."]`, []string{s + "hostKeyFiles[0]: " + dir + " is not a regular file"}},
		{"empty list, enabled", `"enabled": true, "hostKeyFiles": []`, []string{s + "hostKeyFile: mandatory when enabled is true"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := ParseConfig(sectionJSON(tt.body), path, dir)
			if err == nil {
				t.Fatalf("got config %+v, want an error", cfg)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
		})
	}
}
