package auth

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "30m", want: 30 * time.Minute},
		{in: "24h", want: day},
		{in: "28d", want: 28 * day},
		{in: "1w", want: 7 * day},
		{in: "1w2d", want: 9 * day},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "1.5d", want: 36 * time.Hour},
		{in: "0.5w", want: 84 * time.Hour},
		{in: "1h30m15s", want: time.Hour + 30*time.Minute + 15*time.Second},
		{in: "1500ms", want: 1500 * time.Millisecond},
		{in: "10us", want: 10 * time.Microsecond},
		{in: "10µs", want: 10 * time.Microsecond},
		{in: "1ns", want: time.Nanosecond},
		{in: "2d0h", want: 2 * day},
		{in: "", wantErr: "must not be empty"},
		{in: "0", wantErr: "greater than zero"},
		{in: "0d", wantErr: "greater than zero"},
		{in: "0s0m", wantErr: "greater than zero"},
		{in: "-1h", wantErr: "positive"},
		{in: "+1h", wantErr: "positive"},
		{in: "1d-2h", wantErr: "unknown unit"},
		{in: "abc", wantErr: "expected a number"},
		{in: "d", wantErr: "expected a number"},
		{in: "10", wantErr: "missing unit"},
		{in: "1y", wantErr: "unknown unit"},
		{in: "1D", wantErr: "unknown unit"},
		{in: "1 d", wantErr: "unknown unit"},
		{in: " 1d", wantErr: "expected a number"},
		{in: "1..2h", wantErr: "expected a number"},
		{in: ".h", wantErr: "expected a number"},
		{in: "100000000w", wantErr: "out of range"},
		{in: "2562047h", want: 2562047 * time.Hour},
		{in: "2562048h", wantErr: "out of range"},
		{in: "106751d106751d", wantErr: "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("got %v, want error containing %q", got, tt.wantErr)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("got %v, want it to wrap ErrInvalid", err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("got %q, want it to contain %q", err, tt.wantErr)
				}
				if tt.in != "" && !strings.Contains(err.Error(), `"`+tt.in+`"`) {
					t.Errorf("got %q, want it to name the input %q", err, tt.in)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %v", err, tt.want)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// FuzzParseDuration: never panics; any accepted value is positive.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"30m", "28d", "1w2d", "1.5d", "-1h", "", "9999999999w", "1e3s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err == nil && d <= 0 {
			t.Fatalf("ParseDuration(%q) = %v, nil; want positive", s, d)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("ParseDuration(%q): error %v does not wrap ErrInvalid", s, err)
		}
	})
}
