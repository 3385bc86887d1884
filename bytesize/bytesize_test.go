package bytesize

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	good := map[string]int64{
		"0": 0, "1048576": 1 << 20, "512MiB": 512 << 20, "512mib": 512 << 20, "512 MIB": 512 << 20,
		"1.5GiB": 3 << 29, "500MB": 500e6, "64kb": 64e3, " 2TiB ": 2 << 40, "7B": 7, "7b": 7,
	}
	for s, want := range good {
		if got, err := Parse(s); err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	bad := map[string]string{
		"":            "is not a number with a unit",
		"lots":        "is not a number with a unit",
		"-1GiB":       "is negative",
		"256M":        `has an unknown unit "M"`,
		"1.5B":        "is not a whole number of bytes",
		"1..5MiB":     "is not a number with a unit",
		".5MiB":       "is not a number with a unit",
		"99999999TiB": "is too large",
	}
	for s, want := range bad {
		if got, err := Parse(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %d, %v; want an error containing %q", s, got, err, want)
		}
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 1 << 20: "1MiB", 3 << 29: "1536MiB", 1<<20 + 1: "1048577B", 2 << 40: "2TiB"} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"512MiB", "1.5GiB", "-1", "9e9", "1.0000000000000000001TiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err == nil && n < 0 {
			t.Fatalf("Parse(%q) = %d, a negative size without an error", s, n)
		}
	})
}
