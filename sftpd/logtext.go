package sftpd

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Bounds of client-supplied text in log lines.
const (
	// MaxLogText is the most bytes of a client-supplied string (a user
	// name, a path, a client version) kept in a log line.
	MaxLogText = 256
	// maxLogErr is the most bytes kept of an error's text, which may quote
	// a path.
	maxLogErr = 1024
)

// CleanLogText returns s as it may appear in a log line: control
// characters, invalid UTF-8, backslashes and other non-printable runes
// escaped as in a Go string literal, and the result cut to MaxLogText
// bytes of s with a note of how much was left out. A client controls user
// names and paths: a 200 KB name must not write a 200 KB line, and a
// newline in it must not forge a second one.
func CleanLogText(s string) string { return cleanText(s, MaxLogText) }

// cleanText is CleanLogText with a bound of max bytes of s.
func cleanText(s string, max int) string {
	clean := true
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == '\\' || r == utf8.RuneError && n == 1 || !unicode.IsPrint(r) && r != ' ' {
			clean = false
			break
		}
		i += n
	}
	if clean && len(s) <= max {
		return s
	}
	out := make([]byte, 0, min(len(s), max)+32)
	i := 0
	for i < len(s) && i < max {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			out = fmt.Appendf(out, `\x%02x`, s[i])
		case r == '\\':
			out = append(out, `\\`...)
		case r == ' ' || unicode.IsPrint(r):
			out = append(out, s[i:i+n]...)
		default:
			q := strconv.QuoteRuneToASCII(r) // 'x' with escapes
			out = append(out, q[1:len(q)-1]...)
		}
		i += n
	}
	if i < len(s) {
		out = fmt.Appendf(out, "…(%d more bytes)", len(s)-i)
	}
	return string(out)
}

// cleanHandler is a slog.Handler that passes every string attribute and
// error of its records through cleanText before the next handler sees
// them: whatever a client sent (user names, paths, in errors too) reaches
// the log bounded and escaped, at every call site.
type cleanHandler struct{ next slog.Handler }

var _ slog.Handler = cleanHandler{}

// newCleanLogger wraps l's handler in a cleanHandler.
func newCleanLogger(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(cleanHandler); ok {
		return l
	}
	return slog.New(cleanHandler{l.Handler()})
}

// Enabled reports whether the next handler handles level.
func (h cleanHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle cleans the record's attributes and passes it on.
func (h cleanHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(cleanAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

// WithAttrs cleans attrs and returns a handler with them.
func (h cleanHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	cleaned := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		cleaned[i] = cleanAttr(a)
	}
	return cleanHandler{h.next.WithAttrs(cleaned)}
}

// WithGroup returns a handler that puts later attributes in group name.
func (h cleanHandler) WithGroup(name string) slog.Handler {
	return cleanHandler{h.next.WithGroup(name)}
}

// cleanAttr bounds and escapes a string or error value (in groups too).
func cleanAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, cleanText(v.String(), MaxLogText))
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, ga := range g {
			out[i] = cleanAttr(ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
		if err, ok := v.Any().(error); ok && err != nil {
			return slog.String(a.Key, cleanText(err.Error(), maxLogErr))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
