package auth

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on names.
const (
	// MaxNameLen is the longest login or workspace slug, in bytes.
	MaxNameLen = 64
	// MaxPrefixLen is the longest workspace key prefix, in bytes (the S3
	// limit on a whole key).
	MaxPrefixLen = 1024
	// MaxLabelLen is the longest token label, in bytes.
	MaxLabelLen = 256
)

// UserPlaceholder is the placeholder a workspace prefix may contain; it is
// replaced by the login of the user the workspace is shown to.
const UserPlaceholder = "{user}"

// ValidateLogin checks that login can name a user (and the user's mount
// directory): not empty, at most MaxNameLen bytes, valid UTF-8, no "/", no
// "..", no control characters, and not ".". The error wraps ErrInvalid.
func ValidateLogin(login string) error { return validateName("login", login) }

// ValidateSlug checks that slug can name a workspace (a directory at the
// root of every session that is granted it), with the same rules as
// ValidateLogin. The error wraps ErrInvalid.
func ValidateSlug(slug string) error { return validateName("workspace slug", slug) }

func validateName(kind, s string) error {
	what := fmt.Sprintf("%s %q", kind, s)
	switch {
	case s == "":
		return invalid(kind, "must not be empty")
	case len(s) > MaxNameLen:
		return invalid(what, fmt.Sprintf("longer than %d bytes", MaxNameLen))
	case !utf8.ValidString(s):
		return invalid(what, "not valid UTF-8")
	case s == ".":
		return invalid(what, `must not be "."`)
	case strings.Contains(s, ".."):
		return invalid(what, `must not contain ".."`)
	case strings.Contains(s, "/"):
		return invalid(what, `must not contain "/"`)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return invalid(what, "must not contain control characters")
	}
	return nil
}

// ValidateBucket checks an S3 bucket name against the S3 naming rules:
// 3 to 63 characters; lowercase letters, digits, dots and hyphens; starting
// and ending with a letter or digit; no "..", ".-" or "-."; not an IPv4
// address; not starting with "xn--" or "sthree-"; not ending with
// "-s3alias" or "--ol-s3". The error wraps ErrInvalid.
func ValidateBucket(bucket string) error {
	what := fmt.Sprintf("bucket %q", bucket)
	if len(bucket) < 3 || len(bucket) > 63 {
		return invalid(what, "must be 3 to 63 characters long")
	}
	for _, r := range bucket {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '-':
		case r >= 'A' && r <= 'Z':
			return invalid(what, "uppercase letters are not allowed (use lowercase letters, digits, dots and hyphens)")
		default:
			return invalid(what, fmt.Sprintf("character %q is not allowed (use lowercase letters, digits, dots and hyphens)", r))
		}
	}
	isAlnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	switch {
	case !isAlnum(bucket[0]) || !isAlnum(bucket[len(bucket)-1]):
		return invalid(what, "must start and end with a lowercase letter or a digit")
	case strings.Contains(bucket, ".."):
		return invalid(what, `must not contain ".."`)
	case strings.Contains(bucket, ".-") || strings.Contains(bucket, "-."):
		return invalid(what, `must not contain ".-" or "-."`)
	case strings.HasPrefix(bucket, "xn--"), strings.HasPrefix(bucket, "sthree-"):
		return invalid(what, `must not start with "xn--" or "sthree-"`)
	case strings.HasSuffix(bucket, "-s3alias"), strings.HasSuffix(bucket, "--ol-s3"):
		return invalid(what, `must not end with "-s3alias" or "--ol-s3"`)
	}
	if a, err := netip.ParseAddr(bucket); err == nil && a.Is4() {
		return invalid(what, "must not be formatted as an IP address")
	}
	return nil
}

// ValidatePrefix checks a workspace key prefix: at most MaxPrefixLen bytes,
// valid UTF-8, no control characters, no leading "/", no "." or ".."
// segment, no empty segment ("a//b"), and no placeholder other than
// UserPlaceholder. The empty prefix (the whole bucket) is valid. The error
// wraps ErrInvalid.
func ValidatePrefix(prefix string) error {
	what := fmt.Sprintf("prefix %q", prefix)
	if prefix == "" {
		return nil
	}
	if err := checkText(what, prefix, MaxPrefixLen); err != nil {
		return err
	}
	if strings.HasPrefix(prefix, "/") {
		return invalid(what, `must not start with "/"`)
	}
	segs := strings.Split(strings.TrimSuffix(prefix, "/"), "/")
	for _, seg := range segs {
		switch seg {
		case "":
			return invalid(what, `must not contain an empty segment ("//")`)
		case ".", "..":
			return invalid(what, fmt.Sprintf("must not contain a %q segment", seg))
		}
	}
	rest := strings.ReplaceAll(prefix, UserPlaceholder, "")
	if strings.ContainsAny(rest, "{}") {
		return invalid(what, "the only placeholder allowed is "+UserPlaceholder)
	}
	return nil
}

// ExpandPrefix replaces every UserPlaceholder in prefix with login.
func ExpandPrefix(prefix, login string) string {
	return strings.ReplaceAll(prefix, UserPlaceholder, login)
}

// validateLabel checks a token label: at most MaxLabelLen bytes, valid
// UTF-8, no control characters (it is printed in tables).
func validateLabel(label string) error {
	return checkText(fmt.Sprintf("label %q", label), label, MaxLabelLen)
}

// checkText checks what every string printed or stored as text must be:
// at most max bytes, valid UTF-8, no control characters. what names it in
// the error.
func checkText(what, s string, max int) error {
	switch {
	case len(s) > max:
		return invalid(what, fmt.Sprintf("longer than %d bytes", max))
	case !utf8.ValidString(s):
		return invalid(what, "not valid UTF-8")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return invalid(what, "must not contain control characters")
	}
	return nil
}
