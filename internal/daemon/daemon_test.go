package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestListenRetry: a port that frees up within the retry period is taken;
// one that stays busy fails with "still in use" once the period is over.
func TestListenRetry(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := busy.Addr().String()

	start := time.Now()
	_, err = listenRetry(context.Background(), addr, 300*time.Millisecond, log)
	if err == nil || !strings.Contains(err.Error(), "still in use after 300ms") || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("busy port: got %v, want a 'still in use after 300ms' error wrapping EADDRINUSE", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 10*time.Second {
		t.Errorf("busy port: failed after %v, want after the 300ms retry period", d)
	}

	freed := time.AfterFunc(300*time.Millisecond, func() { busy.Close() })
	defer freed.Stop()
	l, err := listenRetry(context.Background(), addr, 20*time.Second, log)
	if err != nil {
		t.Fatalf("port freed after 300ms: got %v, want a listener", err)
	}
	l.Close()
}
