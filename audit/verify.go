package audit

import (
	"errors"
	"fmt"
	"path/filepath"
)

// Report is the result of Verify.
type Report struct {
	Files    int    // files walked
	Records  int    // records that verified, up to the break if any
	FirstSeq uint64 // seq of the first record
	LastSeq  uint64 // seq of the last record that verified
	LastHash string // its hash
	// Warnings are facts an operator should know that do not break the
	// chain: older rotated files removed, a torn line acknowledged by a
	// "recovered" record.
	Warnings []string
	Break    *Break // the first break, nil when the chain is intact
}

// OK reports whether the chain is intact.
func (r Report) OK() bool { return r.Break == nil }

// Break locates the first problem in a chain.
type Break struct {
	File    string // path of the file
	Line    int    // 1-based line number in File; 0 for a problem with the file itself
	Seq     uint64 // seq of the record at fault, when it could be read
	Problem string
}

func (b *Break) Error() string {
	loc := filepath.Base(b.File)
	if b.Line > 0 {
		loc += fmt.Sprintf(" line %d", b.Line)
	}
	if b.Seq > 0 {
		loc += fmt.Sprintf(" (seq %d)", b.Seq)
	}
	return loc + ": " + b.Problem
}

// Verify walks every file of the log at basePath (rotated files first, in
// seq order, then basePath itself) and checks that every line parses and
// its hash matches its canonical bytes, that prev links each record to the
// one before, that seq grows by exactly 1 and that each rotated file is
// continued by a rotate record naming it. It stops at the first break.
//
// The error is for what prevents checking (no log, unreadable file); a
// chain that does not verify is reported in Report.Break.
func Verify(basePath string) (Report, error) {
	files, err := chainFiles(basePath)
	if err != nil {
		return Report{}, err
	}
	if len(files) == 0 {
		return Report{}, fmt.Errorf("audit: no audit log at %s", basePath)
	}
	return verify(files, fileLines)
}

func verify(files []chainFile, src linesOf) (Report, error) {
	var rep Report
	v := &verifier{rep: &rep}
	for i, cf := range files {
		rep.Files++
		v.startFile(cf, i, files)
		err := src(cf, func(n int, line []byte, complete bool) error {
			return v.line(cf, n, line, complete)
		})
		if errors.Is(err, errStop) {
			return rep, nil
		}
		if err != nil {
			return rep, err
		}
		if v.endFile(cf) {
			return rep, nil
		}
	}
	return rep, nil
}

var errStop = errors.New("stop")

type verifier struct {
	rep       *Report
	seq       uint64 // last good seq
	hash      string // last good hash
	file      chainFile
	prevFile  string // base name of the file before this one
	firstInF  bool   // the next good record is the first of its file
	fileFirst uint64
	lastLine  int
	bad       *Break // an unreadable line, judged by what follows it
}

func (v *verifier) startFile(cf chainFile, i int, files []chainFile) {
	v.file = cf
	v.firstInF = true
	v.fileFirst = 0
	v.prevFile = ""
	if i > 0 {
		v.prevFile = filepath.Base(files[i-1].Path)
	}
}

func (v *verifier) fail(b *Break) error {
	v.rep.Break = b
	return errStop
}

func (v *verifier) line(cf chainFile, n int, line []byte, complete bool) error {
	v.lastLine = n
	if !complete {
		return v.fail(&Break{File: cf.Path, Line: n, Problem: fmt.Sprintf("incomplete last line (%d bytes, no newline) — the file was truncated or a write was cut short", len(line))})
	}
	r, err := ParseLine(line)
	if err != nil {
		b := &Break{File: cf.Path, Line: n, Seq: r.Seq, Problem: err.Error()}
		if errors.Is(err, errHashMismatch) {
			return v.fail(b)
		}
		if errors.Is(err, errNoHash) {
			b.Problem = "cannot be read: " + err.Error() + " (a torn or edited line)"
		} else {
			b.Problem = "cannot be read: it " + err.Error()
		}
		if v.bad != nil {
			// Only a torn line directly followed by a "recovered" record
			// is forgiven; two bad lines in a row are not.
			return v.fail(v.bad)
		}
		v.bad = b
		return nil
	}
	return v.record(cf, n, r)
}

func (v *verifier) record(cf chainFile, n int, r Record) error {
	if v.bad != nil {
		bad := v.bad
		v.bad = nil
		if r.Kind != KindExecutor || r.Event != EventRecovered || r.Seq != v.seq+1 || r.Prev != v.hash {
			return v.fail(bad)
		}
		v.rep.Warnings = append(v.rep.Warnings, fmt.Sprintf("%s line %d: torn line, acknowledged by the recovered record at seq %d", filepath.Base(cf.Path), bad.Line, r.Seq))
	}
	at := func(p string) error { return v.fail(&Break{File: cf.Path, Line: n, Seq: r.Seq, Problem: p}) }
	if v.firstInF && v.prevFile != "" {
		if r.Kind != KindRotate || r.PrevFile != v.prevFile {
			return at(fmt.Sprintf("the first record of this file is not a rotate record continuing %s — a file is missing or was replaced", v.prevFile))
		}
	}
	if v.seq == 0 {
		v.rep.FirstSeq = r.Seq
		if r.Seq == 1 && r.Prev != ZeroHash {
			return at("the first record of the log does not have the zero prev")
		}
		if r.Seq != 1 {
			v.rep.Warnings = append(v.rep.Warnings, fmt.Sprintf("the chain starts at seq %d in %s: older files were removed", r.Seq, filepath.Base(cf.Path)))
		}
	} else {
		switch {
		case r.Seq > v.seq+1:
			return at(fmt.Sprintf("seq jumps from %d to %d — %d record(s) were deleted or moved from here", v.seq, r.Seq, r.Seq-v.seq-1))
		case r.Seq <= v.seq:
			return at(fmt.Sprintf("seq goes back from %d to %d — records were reordered or duplicated here", v.seq, r.Seq))
		case r.Prev != v.hash:
			prevAt := fmt.Sprintf("line %d", n-1)
			if v.firstInF {
				prevAt = "the last record of " + v.prevFile
			}
			return at(fmt.Sprintf("prev does not match %s — a record was deleted, replaced or reordered here", prevAt))
		}
	}
	if v.firstInF {
		v.fileFirst = r.Seq
		v.firstInF = false
	}
	v.seq, v.hash = r.Seq, r.Hash
	v.rep.Records++
	v.rep.LastSeq, v.rep.LastHash = r.Seq, r.Hash
	return nil
}

// endFile checks what only the end of a file tells; true means a break.
func (v *verifier) endFile(cf chainFile) bool {
	if v.bad != nil {
		v.rep.Break = v.bad
		return true
	}
	if cf.Rotated && (v.fileFirst != cf.First || v.seq != cf.Last || v.firstInF) {
		v.rep.Break = &Break{File: cf.Path, Line: v.lastLine, Seq: v.seq,
			Problem: fmt.Sprintf("the file is named for seq %d-%d but holds %d-%d — records were removed from its end or it was renamed", cf.First, cf.Last, v.fileFirst, v.seq)}
		return true
	}
	return false
}
