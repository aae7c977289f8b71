package config

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgate/sftpgate/auth"
)

// maxCAKeys bounds the keys of a trustedUserCAKeys file.
const maxCAKeys = 1024

// loadTrustedCAKeys reads a trustedUserCAKeys file as OpenSSH does: one
// public key per line, blank lines and "#" comments skipped. Options, a
// certificate, a weak RSA key or a line that is not a public key refuse
// the whole file, naming the line; an empty file too.
func loadTrustedCAKeys(path string) ([]ssh.PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	defer f.Close()
	var keys []ssh.PublicKey
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		_, _, opts, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err == nil && len(opts) > 0 {
			return nil, fmt.Errorf("%s line %d: options are not supported in a CA key file", path, n)
		}
		p, err := auth.ParseAuthorizedKey(line)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, n, err)
		}
		if len(keys) == maxCAKeys {
			return nil, fmt.Errorf("%s: more than %d keys", path, maxCAKeys)
		}
		keys = append(keys, p.Key)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no key", path)
	}
	return keys, nil
}
