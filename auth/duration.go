package auth

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// ParseDuration parses a positive duration in Go syntax (time.ParseDuration)
// extended with the units "d" (24h) and "w" (7d): "30m", "1d12h", "28d",
// "1w2d". Signs, zero, overflow and anything else are refused with an error
// that names the input and wraps ErrInvalid.
func ParseDuration(s string) (time.Duration, error) {
	what := fmt.Sprintf("duration %q", s)
	if s == "" {
		return 0, invalid("duration", "must not be empty")
	}
	if s[0] == '-' || s[0] == '+' {
		return 0, invalid(what, "must be positive, without a sign")
	}
	if s == "0" {
		return 0, invalid(what, "must be greater than zero")
	}
	var total time.Duration
	for rest := s; rest != ""; {
		// A number: digits with an optional fraction.
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		num := rest[:i]
		if num == "" || num == "." || strings.Count(num, ".") > 1 {
			return 0, invalid(what, `expected a number followed by a unit such as "30m", "12h", "28d" or "1w"`)
		}
		j := i
		for j < len(rest) && !(rest[j] >= '0' && rest[j] <= '9' || rest[j] == '.') {
			j++
		}
		unit := rest[i:j]
		rest = rest[j:]
		var d time.Duration
		switch unit {
		case "":
			return 0, invalid(what, fmt.Sprintf("missing unit after %q (use ns, us, ms, s, m, h, d or w)", num))
		case "d", "w":
			h, err := time.ParseDuration(num + "h")
			if err != nil {
				return 0, invalid(what, "out of range")
			}
			mult := time.Duration(24)
			if unit == "w" {
				mult = 24 * 7
			}
			if h > math.MaxInt64/mult {
				return 0, invalid(what, "out of range")
			}
			d = h * mult
		case "ns", "us", "µs", "μs", "ms", "s", "m", "h":
			var err error
			d, err = time.ParseDuration(num + unit)
			if err != nil {
				return 0, invalid(what, "out of range")
			}
		default:
			return 0, invalid(what, fmt.Sprintf("unknown unit %q (use ns, us, ms, s, m, h, d or w)", unit))
		}
		if total > math.MaxInt64-d {
			return 0, invalid(what, "out of range")
		}
		total += d
	}
	if total <= 0 {
		return 0, invalid(what, "must be greater than zero")
	}
	return total, nil
}
