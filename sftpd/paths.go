package sftpd

import (
	"path"
	"strings"
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
