package policy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/taskjob/task-job/bytesize"
)

// ParseSize reads a size as the policy file writes it ("256MiB", "500MB",
// "1048576") and returns bytes: bytesize.Parse, the parser config.json
// uses too, and a limit of zero bytes is an error.
func ParseSize(s string) (int64, error) {
	n, err := bytesize.Parse(s)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, fmt.Errorf("size %q is zero; a limit must be more than 0 bytes", s)
	}
	return n, nil
}

// FormatSize writes n bytes the way a person would set it.
func FormatSize(n int64) string { return bytesize.Format(n) }

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
