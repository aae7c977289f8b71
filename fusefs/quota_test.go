package fusefs

import (
	"errors"
	"syscall"
	"testing"
)

func TestQuotaOver(t *testing.T) {
	q := Quota{MaxBytes: 100, MaxFiles: 3, UsedBytes: 60, UsedFiles: 2, Computed: true}
	for _, tt := range []struct {
		name          string
		q             Quota
		size, oldSize int64
		existed       bool
		want          bool // over
	}{
		{"new file that fits", q, 40, 0, false, false},
		{"new file one byte too many", q, 41, 0, false, true},
		{"overwrite counts the old size off", q, 70, 30, true, false},
		{"overwrite that grows past", q, 71, 30, true, true},
		{"shrinking an existing file", q, 0, 60, true, false},
		{"file limit", Quota{MaxFiles: 2, UsedFiles: 2}, 1, 0, false, true},
		{"file limit, existing file", Quota{MaxFiles: 2, UsedFiles: 2}, 1, 1, true, false},
		{"no limits", Quota{UsedBytes: 1 << 40, UsedFiles: 1 << 30}, 1 << 40, 0, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.q.over(tt.size, tt.oldSize, tt.existed)
			if got := err != nil; got != tt.want {
				t.Fatalf("over(%d, %d, %v): got %v, want over=%v", tt.size, tt.oldSize, tt.existed, err, tt.want)
			}
			if err != nil && !errors.Is(err, ErrQuota) {
				t.Fatalf("got %v, want ErrQuota", err)
			}
			if err != nil && errno(err) != syscall.EDQUOT {
				t.Fatalf("errno: got %v, want EDQUOT", errno(err))
			}
		})
	}
}
