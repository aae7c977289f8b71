package fusefs

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"
)

// TestViewErrnoLogsToItsManager checks that the cause of an EIO is logged
// by the logger of the view's own manager, whatever other managers the
// process has, and that known errors are not logged.
func TestViewErrnoLogsToItsManager(t *testing.T) {
	var b1, b2 bytes.Buffer
	v1 := &view{errLog: slog.New(slog.NewTextHandler(&b1, nil))}
	v2 := &view{errLog: slog.New(slog.NewTextHandler(&b2, nil))}
	if got := v1.errno(errors.New("cause one")); got != syscall.EIO {
		t.Errorf("v1.errno(unknown): got %v, want EIO", got)
	}
	if got := v2.errno(errors.New("cause two")); got != syscall.EIO {
		t.Errorf("v2.errno(unknown): got %v, want EIO", got)
	}
	if got := v1.errno(fmt.Errorf("stat: %w", ErrNotFound)); got != syscall.ENOENT {
		t.Errorf("v1.errno(not found): got %v, want ENOENT", got)
	}
	if got := v1.errno(nil); got != 0 {
		t.Errorf("v1.errno(nil): got %v, want 0", got)
	}
	for _, tt := range []struct {
		name      string
		log       string
		want, not string
	}{
		{"first manager", b1.String(), "cause one", "cause two"},
		{"second manager", b2.String(), "cause two", "cause one"},
	} {
		if n := strings.Count(tt.log, "\n"); n != 1 || !strings.Contains(tt.log, tt.want) || strings.Contains(tt.log, tt.not) {
			t.Errorf("%s: got log %q (%d lines), want one line naming %q only", tt.name, tt.log, n, tt.want)
		}
	}
}
