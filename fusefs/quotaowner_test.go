package fusefs

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// ownerQuotas is a Quotas whose Owner answers from a map of directories
// and counts its calls; the other methods are not used by owner.
type ownerQuotas struct {
	Quotas
	// mu guards owners and calls.
	mu     sync.Mutex
	owners map[string]string // directory key prefix → user
	calls  int
}

func (q *ownerQuotas) Owner(ctx context.Context, bucket, key string) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls++
	return q.owners[key[:lastSlash(key)]], nil
}

func lastSlash(key string) int {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == '/' {
			return i + 1
		}
	}
	return 0
}

// TestQuotaOwnerReuse asks the owner of keys: one store call per
// directory within the TTL, asked again after it (and a changed grant is
// then seen).
func TestQuotaOwnerReuse(t *testing.T) {
	const ttl = 300 * time.Millisecond
	q := &ownerQuotas{owners: map[string]string{"home/alice/": "alice"}}
	k := &quotaKeeper{q: q, log: slog.New(slog.NewTextHandler(io.Discard, nil)), ownerTTL: ttl}
	ctx := context.Background()
	start := time.Now()
	for _, tt := range []struct{ key, want string }{
		{"home/alice/a", "alice"},
		{"home/alice/b", "alice"},
		{"home/alice/sub/", ""}, // a directory key: its own prefix
		{"home/alice/c", "alice"},
		{"shared/x", ""},
	} {
		if got := k.owner(ctx, "b", tt.key); got != tt.want {
			t.Errorf("owner(%s): got %q, want %q", tt.key, got, tt.want)
		}
	}
	if time.Since(start) < ttl && q.calls != 3 {
		t.Errorf("store calls within the TTL: got %d, want 3 (one per directory)", q.calls)
	}
	q.mu.Lock()
	q.owners["home/alice/"] = "bob"
	q.mu.Unlock()
	time.Sleep(ttl + 50*time.Millisecond)
	if got := k.owner(ctx, "b", "home/alice/d"); got != "bob" {
		t.Errorf("owner after the TTL: got %q, want %q", got, "bob")
	}
}
