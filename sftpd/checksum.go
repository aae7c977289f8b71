package sftpd

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"
)

// checksumStdinMax bounds what a checksum command without a path reads
// from its standard input (rclone probes support that way).
const checksumStdinMax = 1 << 20

// checksums are the exec commands answered, as coreutils would: the only
// commands the gateway runs.
var checksums = map[string]func() hash.Hash{
	"md5sum":    md5.New,
	"sha1sum":   sha1.New,
	"sha256sum": sha256.New,
	"sha512sum": sha512.New,
}

// checksumCmd is a parsed checksum exec request.
type checksumCmd struct {
	name string // md5sum, ...
	path string // "" to hash standard input
}

// parseChecksum parses an exec command line: a checksum command and at
// most one path, quoted as a POSIX shell would read it. ok is false for
// anything else.
func parseChecksum(line string) (checksumCmd, bool) {
	words, ok := shellWords(line)
	if !ok || len(words) == 0 || len(words) > 2 {
		return checksumCmd{}, false
	}
	if _, known := checksums[words[0]]; !known {
		return checksumCmd{}, false
	}
	c := checksumCmd{name: words[0]}
	if len(words) == 2 {
		if words[1] == "" || strings.HasPrefix(words[1], "-") && words[1] != "-" {
			return checksumCmd{}, false
		}
		if words[1] != "-" {
			c.path = words[1]
		}
	}
	return c, true
}

// shellWords splits line into words as a POSIX shell does for the quoting
// OpenSSH clients and rclone use: single quotes, double quotes (with \ before
// " \ $ `) and backslash escapes. Anything the shell would interpret
// (unquoted ; & | < > ( ) $ ` * ? [ ~ # or a newline) makes ok false.
func shellWords(line string) (words []string, ok bool) {
	var (
		cur    strings.Builder
		inWord bool
	)
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case ch == ' ' || ch == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case ch == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, false
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case ch == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				switch c := line[i]; {
				case c == '\\' && i+1 < len(line) && strings.IndexByte("\"\\$`", line[i+1]) >= 0:
					i++
					cur.WriteByte(line[i])
				case c == '$' || c == '`':
					return nil, false
				default:
					cur.WriteByte(c)
				}
			}
			if i >= len(line) {
				return nil, false
			}
			inWord = true
		case ch == '\\':
			if i+1 >= len(line) || line[i+1] == '\n' {
				return nil, false
			}
			i++
			cur.WriteByte(line[i])
			inWord = true
		case strings.IndexByte(";&|<>()$`*?[~#\n\r", ch) >= 0:
			if ch == '#' && inWord || ch == '~' && inWord {
				cur.WriteByte(ch)
				continue
			}
			return nil, false
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, true
}

// runChecksum answers a checksum exec request: the hash of a file the user
// may read, streamed through the user's mount (from the store, no local
// copy), or of standard input. It writes coreutils' output and sends the
// exit status.
func (ss *session) runChecksum(ctx context.Context, c checksumCmd) {
	status := uint32(0)
	defer func() {
		ss.ch.CloseWrite()
		ss.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
	}()
	h := checksums[c.name]()
	name := "-"
	if c.path == "" {
		n, err := io.Copy(h, io.LimitReader(ss.ch, checksumStdinMax+1))
		if err != nil || n > checksumStdinMax {
			fmt.Fprintf(ss.ch.Stderr(), "%s: -: standard input over %d bytes\n", c.name, checksumStdinMax)
			status = 1
			return
		}
	} else {
		name = c.path
		if err := ss.hashFile(ctx, c.path, h); err != nil {
			ss.log.Info("checksum refused", "command", c.name, "path", CleanLogText(c.path), "err", err)
			fmt.Fprintf(ss.ch.Stderr(), "%s: %s: %s\n", c.name, c.path, checksumError(err))
			status = 1
			return
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if strings.ContainsAny(name, "\\\n") {
		// coreutils' escaped form.
		name = strings.NewReplacer("\\", "\\\\", "\n", "\\n").Replace(name)
		sum = "\\" + sum
	}
	fmt.Fprintf(ss.ch, "%s  %s\n", sum, name)
	ss.log.Info("checksum", "command", c.name, "path", CleanLogText(c.path))
}

// hashFile hashes the file at p (a path of the session, / being the root
// of the user's mount) through an os.Root on the mount: p cannot leave it.
func (ss *session) hashFile(ctx context.Context, p string, h hash.Hash) error {
	srv := ss.conn.srv
	// The same scope check as an SFTP open for reading.
	switch checkScope(ss.conn.scopes, path.Clean("/"+p), needRead) {
	case nil:
	case errScopeHidden:
		return fs.ErrNotExist
	default:
		return fs.ErrPermission
	}
	dir, release, err := srv.cfg.Mounts.Acquire(ctx, ss.conn.user)
	if err != nil {
		return err
	}
	if release != nil {
		defer release()
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		rel = "."
	}
	f, err := root.Open(rel)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return syscall.EISDIR
	}
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// checksumError is the message coreutils prints for err.
func checksumError(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "No such file or directory"
	case errors.Is(err, fs.ErrPermission):
		return "Permission denied"
	case errors.Is(err, syscall.EISDIR):
		return "Is a directory"
	case errors.Is(err, context.Canceled):
		return "Interrupted"
	}
	if isPathEscape(err) {
		return "No such file or directory"
	}
	return "Input/output error"
}
