package sftpd

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCleanLogText(t *testing.T) {
	long := strings.Repeat("a", 200<<10)
	tests := []struct{ name, in, want string }{
		{"plain", "alice", "alice"},
		{"spaces and unicode", "é d/ü.txt", "é d/ü.txt"},
		{"newline", "a\nb", `a\nb`},
		{"escape", "a\x1b[31mb", `a\x1b[31mb`},
		{"backslash", `a\n`, `a\\n`},
		{"invalid utf-8", "a\xffb", `a\xffb`},
		{"long", long, strings.Repeat("a", MaxLogText) + "…(204544 more bytes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CleanLogText(tt.in); got != tt.want {
				t.Errorf("got %.300q, want %.300q", got, tt.want)
			}
		})
	}
}

// FuzzCleanLogText: whatever a client sends gives bounded, valid UTF-8
// with no control character.
func FuzzCleanLogText(f *testing.F) {
	for _, s := range []string{"alice", "a\nb", "\xff\xfe", strings.Repeat("é", 300), "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := CleanLogText(s)
		if len(got) > 4*MaxLogText+32 {
			t.Fatalf("got %d bytes, want at most %d", len(got), 4*MaxLogText+32)
		}
		if !utf8.ValidString(got) {
			t.Fatalf("got invalid UTF-8 %q", got)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("got a control character in %q", got)
			}
		}
	})
}

// Every string attribute and error reaching the server's logger is
// cleaned, those added with With too.
func TestCleanHandler(t *testing.T) {
	var buf bytes.Buffer
	log := newCleanLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	name := "x\ny" + strings.Repeat("z", 10000)
	log.With("user", name).Info("m", "path", name, "err", errors.New("open "+name+": denied"), slog.Group("g", "p", name), "n", 3)
	out := buf.String()
	if strings.Count(out, "\n") != 1 {
		t.Errorf("got %d lines, want 1: %.200q", strings.Count(out, "\n"), out)
	}
	if len(out) > 4*(MaxLogText+40)+maxLogErr+200 {
		t.Errorf("got a %d-byte line, want it bounded", len(out))
	}
	if !strings.Contains(out, "n=3") {
		t.Errorf("a non-string attribute was lost: %.300q", out)
	}
}
