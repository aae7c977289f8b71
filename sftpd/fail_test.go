package sftpd

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/pkg/sftp"
)

// pathEscapeError returns the error os.Root gives for a name that leaves it.
func pathEscapeError(t *testing.T) error {
	t.Helper()
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	_, escape := root.Open("../x")
	if escape == nil {
		t.Fatal("os.Root let ../x through")
	}
	return escape
}

// fail logs at warning level the errors whose status says nothing precise
// (their cause is all the operator gets), and the others at debug level,
// whatever the words of the status sent to the client.
func TestFailLogsVagueCauses(t *testing.T) {
	escape := pathEscapeError(t)
	for _, tt := range []struct {
		name  string
		err   error
		level string
	}{
		{"unknown error", errors.New("something odd"), "WARN"},
		{"EIO", &fs.PathError{Op: "close", Path: "ws/a", Err: syscall.EIO}, "WARN"},
		{"bare failure status", fmt.Errorf("x: %w", sftp.ErrSSHFxFailure), "WARN"},
		{"not found", &fs.PathError{Op: "open", Path: "ws/a", Err: syscall.ENOENT}, "DEBUG"},
		{"no space", syscall.ENOSPC, "DEBUG"},
		{"errno without a status of its own", syscall.EXDEV, "DEBUG"},
		{"path escape", escape, "DEBUG"},
		{"precise status worded like a vague one", failure("input/output error"), "DEBUG"},
		{"scope", errScopeDenied, "DEBUG"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			h := &handlers{sess: &session{log: log}}
			if st := h.fail("open", "/ws/a", tt.err); st == nil {
				t.Fatal("got no status")
			}
			if want := "level=" + tt.level + " "; !strings.Contains(buf.String(), want) {
				t.Errorf("got log %q, want a line with %s", buf.String(), want)
			}
		})
	}
}

// A checksum of a path that leaves the session root reports it missing,
// as coreutils does for a name that is not there.
func TestChecksumErrorPathEscape(t *testing.T) {
	escape := pathEscapeError(t)
	for _, err := range []error{escape, fmt.Errorf("hash: %w", escape)} {
		if got := checksumError(err); got != "No such file or directory" {
			t.Errorf("checksumError(%v): got %q, want %q", err, got, "No such file or directory")
		}
	}
	if got := checksumError(errors.New("path escapes nothing")); got != "Input/output error" {
		t.Errorf("an unrelated error: got %q, want %q", got, "Input/output error")
	}
}
