package config

import (
	"encoding/json"
	"fmt"
)

// hostKeyFiles reads the key hostKeyFiles, a list of SSH host private keys
// offered beside hostKeyFile: each entry must be a non-empty string naming
// a readable regular file (relative paths are resolved against base). That
// the files hold usable keys of distinct types is checked at start, by
// sftpd.LoadHostKeys. It reports whether the list was given and not empty.
func (p *parser) hostKeyFiles(cfg *Config, base string) bool {
	const key = "hostKeyFiles"
	raw, ok := p.get(key)
	if !ok {
		return false
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		p.wrongType(key, "list of strings", raw)
		return true
	}
	var files []string
	for i, r := range list {
		item := fmt.Sprintf("%s[%d]", key, i)
		var s string
		if err := json.Unmarshal(r, &s); err != nil || isNull(r) {
			p.wrongType(item, "string", r)
			continue
		}
		if s == "" {
			p.problem(item, "must not be empty")
			continue
		}
		s = resolve(base, s)
		if cfg.Enabled {
			if err := checkReadableFile(s); err != nil {
				p.problem(item, err.Error())
				continue
			}
		}
		files = append(files, s)
	}
	cfg.HostKeyFiles = files
	return len(list) > 0
}

// HostKeys lists every host key file: hostKeyFile first, when set, then
// hostKeyFiles.
func (c *Config) HostKeys() []string {
	var out []string
	if c.HostKeyFile != "" {
		out = append(out, c.HostKeyFile)
	}
	return append(out, c.HostKeyFiles...)
}
