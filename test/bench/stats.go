package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// samples are latencies of one measurement.
type samples []time.Duration

// pct returns the p-th percentile (0 < p ≤ 100) by nearest rank on the
// sorted samples: an observed value, never an interpolation.
func (s samples) pct(p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	sorted := slices.Clone(s)
	slices.Sort(sorted)
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func (s samples) p50() time.Duration { return s.pct(50) }
func (s samples) p99() time.Duration { return s.pct(99) }

// String renders "p50 / p99 ms", the form every latency cell uses.
func (s samples) String() string {
	return fmt.Sprintf("%s / %s ms", ms(s.p50()), ms(s.p99()))
}

// ms formats d in milliseconds with two decimals.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))
}

// rate formats a per-second rate without false precision.
func rate(perSec float64, unit string) string {
	switch {
	case perSec >= 10000:
		return fmt.Sprintf("%.0fk %s/s", perSec/1000, unit)
	default:
		return fmt.Sprintf("%.0f %s/s", perSec, unit)
	}
}

// ratio formats a/b as a multiplier.
func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// verdict turns a target check into the word printed after the target.
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
