package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Problem is one thing wrong in a policy file, at a position a person can
// jump to.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

// String returns "file:line:col: message", the form editors and compilers use.
func (p Problem) String() string {
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Column, p.Message)
}

// Error lists every problem found in a policy file, in file order. Its
// Error text is one problem per line.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// newError turns HCL diagnostics into an *Error, keeping errors only,
// sorted by position and without repeats (HCL's error recovery can report
// one mistake twice).
func newError(file string, diags hcl.Diagnostics) *Error {
	var ps []Problem
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		p := Problem{File: file, Line: 1, Column: 1, Message: diagMessage(d)}
		if r := d.Subject; r != nil {
			p.Line, p.Column = r.Start.Line, r.Start.Column
		} else if r := d.Context; r != nil {
			p.Line, p.Column = r.Start.Line, r.Start.Column
		}
		ps = append(ps, p)
	}
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	ps = slices.Compact(ps)
	return &Error{Problems: ps}
}

// diagMessage keeps a diagnostic on one line so that each problem is one
// line of output.
func diagMessage(d *hcl.Diagnostic) string {
	msg := strings.ReplaceAll(d.Summary, "\n", " ")
	if d.Detail != "" {
		if msg != "" {
			msg += ": "
		}
		// HCL wraps its details; our own messages quote values, whose
		// spacing must be kept, and have no detail.
		msg += strings.Join(strings.Fields(d.Detail), " ")
	}
	return msg
}
