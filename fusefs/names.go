package fusefs

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxNameLen is the longest file name the kernel accepts.
const maxNameLen = 255

// maxKeyLen is the longest object key S3 accepts.
const maxKeyLen = 1024

// checkName validates one path segment coming from the kernel or a
// listing. Besides what a file name cannot hold, it refuses invalid UTF-8
// and control characters (C0, DEL and C1): stored, such a name would forge
// lines or terminal escapes in other users' listings.
func checkName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("name %q: %w", name, ErrInvalidName)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("name %q: %w", name, ErrInvalidName)
	case len(name) > maxNameLen:
		return fmt.Errorf("name of %d bytes: %w", len(name), ErrNameTooLong)
	case !utf8.ValidString(name):
		return fmt.Errorf("name %q: not valid UTF-8: %w", name, ErrInvalidName)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("name %q: control character: %w", name, ErrInvalidName)
	}
	return nil
}

// checkKey validates a full object key built from a path.
func checkKey(key string) error {
	if len(key) > maxKeyLen {
		return fmt.Errorf("key of %d bytes: %w", len(key), ErrNameTooLong)
	}
	return nil
}

// checkUser validates a user name that becomes a mount directory name.
func checkUser(user string) error {
	if user == "" || user == "." || user == ".." || user == readOnlyDir || len(user) > maxNameLen {
		return fmt.Errorf("user %q: %w", user, ErrInvalidUser)
	}
	for _, r := range user {
		if r == '/' || r == 0 || unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("user %q: %w", user, ErrInvalidUser)
		}
	}
	return nil
}

// normPrefix normalizes a workspace prefix: "" or "a/b/", no leading "/",
// no empty, "." or ".." segments.
func normPrefix(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	for _, seg := range strings.Split(p, "/") {
		if err := checkName(seg); err != nil {
			return "", fmt.Errorf("prefix %q: %w", p, err)
		}
	}
	return p + "/", nil
}
