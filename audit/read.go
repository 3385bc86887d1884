package audit

import (
	"fmt"
	"time"
)

// Filter selects records for Read. Empty fields select everything.
//
// ID, Kind, Since and Until select records by their own fields. Status,
// Rule and KeyID select whole tasks: every record (received, decision,
// start, control, end) of each task id that has at least one record
// carrying that value — so "-status failed" shows what was asked, which
// rule allowed it, how it ran and how it ended. Records without a task id
// (executor, rotate) are never selected by Status, Rule or KeyID.
type Filter struct {
	ID, Status, Rule, KeyID, Kind string
	Since, Until                  time.Time // Since inclusive, Until exclusive
}

func (f Filter) byTask() bool { return f.Status != "" || f.Rule != "" || f.KeyID != "" }

func (f Filter) own(r *Record) bool {
	if f.ID != "" && r.ID != f.ID {
		return false
	}
	if f.Kind != "" && r.Kind != f.Kind {
		return false
	}
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !r.Time.Before(f.Until) {
		return false
	}
	return true
}

func (f Filter) marks(r *Record) bool {
	return r.ID != "" &&
		(f.Status == "" || r.Status == f.Status) &&
		(f.Rule == "" || r.Rule == f.Rule) &&
		(f.KeyID == "" || r.KeyID == f.KeyID)
}

// ReadError is returned by Read after all readable records were passed on,
// when some lines could not be read or did not verify on their own.
type ReadError struct {
	Skipped int
	First   *Break
}

func (e *ReadError) Error() string {
	return fmt.Sprintf("audit: %d line(s) skipped because they cannot be trusted (first: %v); run 'task-job audit -verify'", e.Skipped, e.First)
}

// Read calls fn, in chain order, for each record of the log at basePath
// that f selects. Each line's own hash is checked and lines that fail are
// skipped, not shown: Read then returns a *ReadError after the rest. Read
// does not check the links between records; Verify does. An error from fn
// stops Read and is returned.
func Read(basePath string, f Filter, fn func(Record) error) error {
	files, err := chainFiles(basePath)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("audit: no audit log at %s", basePath)
	}
	return read(files, fileLines, f, fn)
}

// linesOf walks the lines of one file of a chain (fileLines for files on
// disk; a copy elsewhere has its own).
type linesOf func(cf chainFile, fn func(n int, line []byte, complete bool) error) error

func fileLines(cf chainFile, fn func(n int, line []byte, complete bool) error) error {
	return lines(cf.Path, fn)
}

func read(files []chainFile, src linesOf, f Filter, fn func(Record) error) error {
	var tasks map[string]bool
	if f.byTask() {
		tasks = map[string]bool{}
		err := walk(files, src, nil, func(r *Record) error {
			if f.marks(r) && (Filter{ID: f.ID, Since: f.Since, Until: f.Until}).own(r) {
				tasks[r.ID] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	rerr := &ReadError{}
	err := walk(files, src, rerr, func(r *Record) error {
		if !f.own(r) || (tasks != nil && !tasks[r.ID]) {
			return nil
		}
		return fn(*r)
	})
	if err != nil {
		return err
	}
	if rerr.Skipped > 0 {
		return rerr
	}
	return nil
}

func walk(files []chainFile, src linesOf, rerr *ReadError, fn func(*Record) error) error {
	for _, cf := range files {
		err := src(cf, func(n int, line []byte, complete bool) error {
			r, err := ParseLine(line)
			if err != nil || !complete {
				if rerr != nil {
					rerr.Skipped++
					if rerr.First == nil {
						p := "incomplete last line"
						if err != nil {
							p = err.Error()
						}
						rerr.First = &Break{File: cf.Path, Line: n, Seq: r.Seq, Problem: p}
					}
				}
				return nil
			}
			return fn(&r)
		})
		if err != nil {
			return err
		}
	}
	return nil
}
