package sftpd

import (
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// rootRel turns a path from the client (absolute like "/ws/a/b", or
// relative to the session's start directory "/") into a name relative to
// the session root for os.Root: cleaned, with no leading "/", and "." for
// the root itself. ".." cannot climb above the root: "/../x" is "x".
func rootRel(p string) string {
	p = path.Clean("/" + p)
	p = strings.TrimLeft(p, "/")
	if p == "" {
		return "."
	}
	return p
}

// sessionPath is the absolute, cleaned form of a client path, as shown to
// the client (realpath) and written in audit events.
func sessionPath(p string) string {
	return path.Clean("/" + p)
}

// checkPath refuses a client path that is not valid UTF-8 or that holds a
// control character (C0, DEL or C1): such a name, once stored, would forge
// lines or terminal escapes in other clients' listings. Every request
// that takes a path checks it first, before touching the file system.
func checkPath(p string) error {
	if !utf8.ValidString(p) {
		return errNameUTF8
	}
	if strings.IndexFunc(p, unicode.IsControl) >= 0 {
		return errNameControl
	}
	return nil
}
