// Package bytesize reads and writes sizes the way config.json and
// policy.hcl write them ("512MiB", "1.5GiB", "500MB", "1048576"). Both
// files use this one parser, so a size means the same, and is refused with
// the same words, wherever it is written.
package bytesize

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// units maps each accepted suffix, lower-cased, to its multiplier. Units
// are matched without regard to case ("512mib" = "512MiB"), but bare "K",
// "M" or "G" are refused: readers disagree on which base they mean, and a
// limit off by 5% (or by a factor of a thousand) is worse than an error.
var units = map[string]int64{
	"b":   1,
	"kb":  1e3,
	"mb":  1e6,
	"gb":  1e9,
	"tb":  1e12,
	"kib": 1 << 10,
	"mib": 1 << 20,
	"gib": 1 << 30,
	"tib": 1 << 40,
}

// Hint is the advice every size error ends with.
const Hint = `write a size such as "256MiB", "1GiB", "500MB" or "1048576" (bytes); units: B, KB, MB, GB, TB (powers of 1000), KiB, MiB, GiB, TiB (powers of 1024)`

// Parse reads a size and returns bytes. A fraction is fine when the result
// is a whole number of bytes ("1.5GiB"); negative sizes are errors. Zero is
// returned as 0: whether it is allowed is the caller's to say.
func Parse(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	if num == "" || strings.Count(num, ".") > 1 || num[0] == '.' || num[len(num)-1] == '.' {
		if strings.HasPrefix(t, "-") {
			return 0, fmt.Errorf("size %q is negative; %s", s, Hint)
		}
		return 0, fmt.Errorf("size %q is not a number with a unit; %s", s, Hint)
	}
	mult := int64(1)
	if unit != "" {
		m, ok := units[strings.ToLower(unit)]
		if !ok {
			return 0, fmt.Errorf("size %q has an unknown unit %q; %s", s, unit, Hint)
		}
		mult = m
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("size %q is not a number with a unit; %s", s, Hint)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("size %q is not a whole number of bytes; %s", s, Hint)
	}
	n := r.Num()
	if !n.IsInt64() {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n.Int64(), nil
}

// Format writes n bytes the way a person would set it: the largest binary
// unit that divides it exactly, else plain bytes ("1048577B").
func Format(n int64) string {
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
