package policy

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// sizeUnits maps each accepted suffix to its multiplier. Only exact
// spellings: "256M" or "256mb" could mean either base, and a memory limit
// off by 5% (or by a factor of a thousand) is worse than an error.
var sizeUnits = map[string]int64{
	"B":   1,
	"KB":  1e3,
	"MB":  1e6,
	"GB":  1e9,
	"TB":  1e12,
	"KiB": 1 << 10,
	"MiB": 1 << 20,
	"GiB": 1 << 30,
	"TiB": 1 << 40,
}

const sizeHint = `write a size such as "256MiB", "1GiB", "500MB" or "1048576" (bytes); units: B, KB, MB, GB, TB (powers of 1000), KiB, MiB, GiB, TiB (powers of 1024)`

// ParseSize reads a size as the policy file writes it ("256MiB", "500MB",
// "1048576") and returns bytes. Zero, negative and fractional-byte sizes
// are errors.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	if num == "" || strings.Count(num, ".") > 1 || num[0] == '.' || num[len(num)-1] == '.' {
		if strings.HasPrefix(t, "-") {
			return 0, fmt.Errorf("size %q is negative; %s", s, sizeHint)
		}
		return 0, fmt.Errorf("size %q is not a number with a unit; %s", s, sizeHint)
	}
	mult := int64(1)
	if unit != "" {
		m, ok := sizeUnits[unit]
		if !ok {
			return 0, fmt.Errorf("size %q has an unknown unit %q; %s", s, unit, sizeHint)
		}
		mult = m
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("size %q is not a number with a unit; %s", s, sizeHint)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("size %q is not a whole number of bytes", s)
	}
	n := r.Num()
	if !n.IsInt64() {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	if n.Sign() <= 0 {
		return 0, fmt.Errorf("size %q is zero; a limit must be more than 0 bytes", s)
	}
	return n.Int64(), nil
}

// FormatSize writes n bytes the way a person would set it: the largest
// binary unit that divides it exactly, else plain bytes.
func FormatSize(n int64) string {
	for _, u := range []struct {
		name string
		mult int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// parseDuration reads a Go duration that must be more than zero.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("timeout %q is not a duration; write e.g. \"90s\", \"30m\" or \"1h30m\"", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("timeout %q must be more than 0", s)
	}
	return d, nil
}

// formatDuration writes whole seconds as "1800s" (what tasks ask in) and
// anything finer as Go writes it.
func formatDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

// finite reports whether f is an ordinary number.
func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
