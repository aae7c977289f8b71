package integration

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestCLITokenCellsForms runs `admin user token` as the Cells documentation
// and its users write it (every flag, short and long) through the real
// binary, and checks what the store holds for each token.
func TestCLITokenCellsForms(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.ok("admin", "user", "create", "-u", "admin")
	c.ok("admin", "user", "create", "--user", "zed")
	st := c.openStore()

	tests := []struct {
		name          string
		args          []string
		owner         string
		hard, refresh time.Duration
	}{
		{"cells doc", []string{"-u", "admin", "-e", "24h"}, "admin", 24 * time.Hour, 0},
		{"cells doc long flags", []string{"--user", "admin", "--expire", "24h"}, "admin", 24 * time.Hour, 0},
		{"seconds of auto-refresh", []string{"-u", "zed", "-e", "2d", "-a", "3600"}, "zed", 48 * time.Hour, time.Hour},
		{"seconds of auto-refresh, long flags", []string{"--user", "zed", "--expire", "2d", "--auto", "3600"}, "zed", 48 * time.Hour, time.Hour},
		{"seconds of auto-refresh, = form", []string{"--user=zed", "--expire=2d", "--auto=90"}, "zed", 48 * time.Hour, 90 * time.Second},
		{"auto-refresh as a duration", []string{"-u", "zed", "-e", "28d", "-a", "1d"}, "zed", 28 * 24 * time.Hour, 24 * time.Hour},
		{"auto 0 is no auto-refresh", []string{"-u", "zed", "-e", "1h", "-a", "0"}, "zed", time.Hour, 0},
		{"--username alias", []string{"--username", "zed", "-e", "1h"}, "zed", time.Hour, 0},
		{"20s", []string{"-u", "zed", "-e", "20s"}, "zed", 20 * time.Second, 0},
		{"20m", []string{"-u", "zed", "-e", "20m"}, "zed", 20 * time.Minute, 0},
		{"20h", []string{"-u", "zed", "-e", "20h"}, "zed", 20 * time.Hour, 0},
		{"20d", []string{"-u", "zed", "-e", "20d"}, "zed", 20 * 24 * time.Hour, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			label := "cells " + tt.name
			before := time.Now()
			r := c.ok(append(append([]string{"admin", "user", "token"}, tt.args...), "-l", label)...)
			first, _, _ := strings.Cut(r.stdout, "\n")
			wantWording := "."
			if tt.refresh > 0 {
				wantWording = " unless it is automatically refreshed."
			}
			if !strings.HasPrefix(first, "✔ This token for "+tt.owner+" will expire on ") || !strings.HasSuffix(first, wantWording) {
				t.Errorf("got first line %q, want the Cells wording for %s ending in %q", first, tt.owner, wantWording)
			}
			tokens, err := st.Tokens(context.Background(), tt.owner)
			if err != nil {
				t.Fatalf("Tokens: %v", err)
			}
			found := false
			for _, tok := range tokens {
				if tok.Label != label {
					continue
				}
				found = true
				if tok.Refresh != tt.refresh {
					t.Errorf("got refresh window %v, want %v", tok.Refresh, tt.refresh)
				}
				if d := tok.HardExpires.Sub(before); d < tt.hard || d > tt.hard+time.Minute {
					t.Errorf("got hard expiry %v after minting, want %v", d, tt.hard)
				}
				want := min(tt.hard, tt.refresh)
				if tt.refresh == 0 {
					want = tt.hard
				}
				if d := tok.Expires.Sub(before); d < want || d > want+time.Minute {
					t.Errorf("got expiry %v after minting, want %v", d, want)
				}
			}
			if !found {
				t.Errorf("got no token labelled %q for %s in the store", label, tt.owner)
			}
		})
	}

	bad := []struct {
		name string
		args []string
		want []string
	}{
		{"expire without unit", []string{"-u", "zed", "-e", "20"}, []string{"--expire", `"20"`, "missing unit"}},
		{"expire unknown unit", []string{"-u", "zed", "-e", "20y"}, []string{"--expire", `unknown unit "y"`}},
		{"auto not a number", []string{"-u", "zed", "-e", "1h", "-a", "12x"}, []string{"--auto", `"12x"`}},
		{"auto negative", []string{"-u", "zed", "-e", "1h", "-a", "-5"}, []string{"--auto", `"-5"`}},
		{"auto too large", []string{"-u", "zed", "-e", "1h", "-a", "99999999999999999999"}, []string{"--auto", `"99999999999999999999"`}},
		{"auto long flag", []string{"--user", "zed", "--expire", "1h", "--auto", "soon"}, []string{"--auto", `"soon"`}},
		{"no user", []string{"-e", "1h"}, []string{`"user"`}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			c.fails(2, tt.want, append([]string{"admin", "user", "token"}, tt.args...)...)
		})
	}
}
