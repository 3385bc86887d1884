package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Pos is a place in a configuration file. Line and Col are 1-based; Col
// counts bytes, as Go's own tools do. A Pos with Line 0 names only the file
// (a problem with a default value, or with the file as a whole); a zero Pos
// means the Config was built in code and has no file.
type Pos struct {
	File      string
	Line, Col int
}

// String formats p as "file:line:col", the form editors and terminals turn
// into a link.
func (p Pos) String() string {
	switch {
	case p.Line > 0:
		return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
	default:
		return p.File
	}
}

// Warning is something the file does that works but should change: an
// accepted syntax slip, a secret stored in the file, isolation turned off.
type Warning struct {
	Pos Pos
	Msg string
}

// String formats w as "file:line:col: message".
func (w Warning) String() string {
	if s := w.Pos.String(); s != "" {
		return s + ": " + w.Msg
	}
	return "config: " + w.Msg
}

// Error is one problem in a configuration. Key is the configuration key the
// problem concerns, empty for syntax errors and problems with the whole file.
type Error struct {
	Pos Pos
	Key string
	Msg string
	// Err is the underlying cause when there is one (a failed file read),
	// so that callers can test it with errors.Is.
	Err error
}

// Error formats e as "file:line:col: key: message". Without a file (a Config
// built in code) it is prefixed "config: " instead.
func (e Error) Error() string {
	var b strings.Builder
	if s := e.Pos.String(); s != "" {
		b.WriteString(s)
	} else {
		b.WriteString("config")
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying cause, if any.
func (e Error) Unwrap() error { return e.Err }

// Errors is every problem found in one configuration, so that a user can fix
// them all in one edit instead of one per restart. It is sorted by position.
type Errors []Error

// Error joins all problems, one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns each problem, so that errors.As and errors.Is look into all
// of them.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// sortByPos orders problems as they appear in the file; those without a
// line (defaults, cross-key rules) come last, in the order they were found.
func (es Errors) sortByPos() {
	slices.SortStableFunc(es, func(a, b Error) int {
		return comparePos(a.Pos, b.Pos)
	})
}

func comparePos(a, b Pos) int {
	if (a.Line == 0) != (b.Line == 0) {
		if a.Line == 0 {
			return 1
		}
		return -1
	}
	return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
}
