package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tailscale/hujson"

	"github.com/taskjob/task-job/bytesize"
)

// setter stores one JSON value into its Config field, or says why the value
// has the wrong type or form. Ranges are checked later, by validate, so that
// Configs built in code get the same checks.
type setter func(c *Config, v hujson.ValueTrimmed) error

// kindName names a JSON value's kind the way a user would.
func kindName(v hujson.ValueTrimmed) string {
	switch v.Kind() {
	case '"':
		return "a string"
	case '0':
		return "a number"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '{':
		return "an object"
	case '[':
		return "an array"
	default:
		return "an unknown value"
	}
}

func stringSetter(field func(*Config) *string) setter {
	return func(c *Config, v hujson.ValueTrimmed) error {
		lit, _ := v.(hujson.Literal)
		if v.Kind() != '"' {
			return fmt.Errorf("must be a string in double quotes, got %s", kindName(v))
		}
		*field(c) = lit.String()
		return nil
	}
}

// portSetter takes a string or, as the original tool's users sometimes
// wrote, a bare number.
func portSetter(field func(*Config) *string) setter {
	return func(c *Config, v hujson.ValueTrimmed) error {
		lit, _ := v.(hujson.Literal)
		switch v.Kind() {
		case '"':
			*field(c) = lit.String()
		case '0':
			n, err := parseInt(lit)
			if err != nil {
				return err
			}
			*field(c) = strconv.FormatInt(n, 10)
		default:
			return fmt.Errorf("must be a port number or a string like \":8080\", got %s", kindName(v))
		}
		return nil
	}
}

func boolSetter(field func(*Config) *bool) setter {
	return func(c *Config, v hujson.ValueTrimmed) error {
		lit, _ := v.(hujson.Literal)
		if k := v.Kind(); k != 't' && k != 'f' {
			return fmt.Errorf("must be true or false (without quotes), got %s", kindName(v))
		}
		*field(c) = lit.Bool()
		return nil
	}
}

func intSetter(field func(*Config) *int) setter {
	return func(c *Config, v hujson.ValueTrimmed) error {
		lit, _ := v.(hujson.Literal)
		if v.Kind() != '0' {
			return fmt.Errorf("must be a number (without quotes), got %s", kindName(v))
		}
		n, err := parseInt(lit)
		if err != nil {
			return err
		}
		if n < math.MinInt32 || n > math.MaxInt32 {
			return fmt.Errorf("%s is out of range", lit)
		}
		*field(c) = int(n)
		return nil
	}
}

func floatSetter(field func(*Config) *float64) setter {
	return func(c *Config, v hujson.ValueTrimmed) error {
		lit, _ := v.(hujson.Literal)
		if v.Kind() != '0' {
			return fmt.Errorf("must be a number (without quotes), got %s", kindName(v))
		}
		f, err := strconv.ParseFloat(string(lit), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Errorf("%s is not a usable number", lit)
		}
		*field(c) = f
		return nil
	}
}

// parseInt reads a JSON number that must be a whole number.
func parseInt(lit hujson.Literal) (int64, error) {
	n, err := strconv.ParseInt(string(lit), 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return 0, fmt.Errorf("%s is out of range", lit)
	case err != nil:
		return 0, fmt.Errorf("%s must be a whole number, without fraction or exponent", lit)
	}
	return n, nil
}

func durationSetter(field func(*Config) *time.Duration) setter {
	return func(c *Config, v hujson.ValueTrimmed) error {
		lit, _ := v.(hujson.Literal)
		if v.Kind() != '"' {
			return fmt.Errorf("must be a duration string like \"30s\", \"5m\" or \"24h\", got %s", kindName(v))
		}
		s := lit.String()
		d, err := time.ParseDuration(s)
		if err != nil {
			hint := `write it like "30s", "5m" or "1h30m"`
			if strings.HasSuffix(s, "d") {
				hint = `durations have no day unit; write days as hours, like "168h" for 7 days`
			}
			return fmt.Errorf("%q is not a duration: %s", s, hint)
		}
		*field(c) = d
		return nil
	}
}

// sizeSetter takes a JSON number of bytes or a string with a unit.
func sizeSetter[T int | int64](field func(*Config) *T) setter {
	return func(c *Config, v hujson.ValueTrimmed) error {
		lit, _ := v.(hujson.Literal)
		var n int64
		var err error
		switch v.Kind() {
		case '0':
			n, err = parseInt(lit)
		case '"':
			n, err = bytesize.Parse(lit.String())
		default:
			return fmt.Errorf("must be a size like \"16MiB\" or a number of bytes, got %s", kindName(v))
		}
		if err != nil {
			return err
		}
		if n < 0 {
			return fmt.Errorf("%s must not be negative", lit)
		}
		if int64(T(n)) != n {
			return fmt.Errorf("%s is out of range", lit)
		}
		*field(c) = T(n)
		return nil
	}
}
