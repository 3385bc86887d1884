package audit

import (
	"bytes"
	"errors"
	"fmt"
)

// MirrorCopy is a mirror's copy of one log, as a store holds it, for
// CompareMirror. The stores (audit/redismirror, audit/kafkamirror) make
// one of their own.
type MirrorCopy struct {
	// Name names the copy in messages ("the mirror stream audit:host-a").
	Name string
	// Last is the newest seq the copy held when the check began (0 when
	// empty). Only entries up to it count: on a live log the mirror goes
	// on copying records the local read counted as not yet mirrored.
	Last uint64
	// Next returns the copy's next entry in seq order; ok is false at its end.
	Next func() (e MirrorLine, ok bool, err error)
}

// MirrorReport is the result of CompareMirror.
type MirrorReport struct {
	CopyFirst, CopyLast uint64 // seq range the copy holds; 0 when empty
	Compared            int    // local records found identical in the copy
	Trimmed             int    // local records older than the copy's first entry (trimmed by size)
	NotMirrored         int    // local records newer than the copy's last entry
	Missing             int    // local records in the copy's range but not in it
	Break               *Break // the first difference, nil when none
}

// OK reports whether the local log and the copy agree.
func (r MirrorReport) OK() bool { return r.Break == nil }

var errStopCompare = errors.New("stop")

// CompareMirror compares every local record of the log at basePath with
// the copy's entry of the same seq. It catches what Verify alone cannot: a
// tail rewritten with recomputed hashes (lines differ), and records
// removed from the end of the local log or the whole log replaced (the
// copy has seqs the log lacks). Local lines that do not parse are left to
// Verify.
func CompareMirror(basePath string, c MirrorCopy) (MirrorReport, error) {
	rep := MirrorReport{CopyLast: c.Last}
	cur := &copyCursor{c: c}
	if c.Last > 0 {
		e, ok, err := cur.peek()
		if err != nil {
			return rep, err
		}
		if ok {
			rep.CopyFirst = e.Seq
		} else {
			rep.CopyLast = 0 // emptied since Last was read
		}
	}
	files, err := chainFiles(basePath)
	if err != nil {
		return rep, err
	}
	if len(files) == 0 {
		return rep, fmt.Errorf("audit: no audit log at %s", basePath)
	}
	for _, cf := range files {
		err := Lines(cf.Path, func(n int, line []byte, complete bool) error {
			r, err := ParseLine(line)
			if err != nil || !complete {
				return nil
			}
			switch {
			case rep.CopyLast == 0 || r.Seq > rep.CopyLast:
				rep.NotMirrored++
				return nil
			case r.Seq < rep.CopyFirst:
				rep.Trimmed++
				return nil
			}
			e, ok, err := cur.peek()
			if err != nil {
				return err
			}
			if !ok || e.Seq > r.Seq {
				rep.Missing++
				return nil
			}
			if e.Seq < r.Seq {
				rep.Break = &Break{File: cf.Path, Line: n, Seq: e.Seq,
					Problem: fmt.Sprintf("%s holds seq %d, which is not in the local log before this line (seq %d) — it was deleted locally", c.Name, e.Seq, r.Seq)}
				return errStopCompare
			}
			cur.next()
			if !bytes.Equal(e.Line, line) {
				rep.Break = &Break{File: cf.Path, Line: n, Seq: r.Seq,
					Problem: "differs from the copy in " + c.Name + " — the local record was rewritten"}
				return errStopCompare
			}
			rep.Compared++
			return nil
		})
		if err == errStopCompare {
			return rep, nil
		}
		if err != nil {
			return rep, err
		}
	}
	e, ok, err := cur.peek()
	if err != nil {
		return rep, err
	}
	if ok && e.Seq <= rep.CopyLast {
		last := files[len(files)-1]
		rep.Break = &Break{File: last.Path, Seq: e.Seq,
			Problem: fmt.Sprintf("%s holds records up to seq %d that the local log does not have from seq %d on — the local log's tail was removed or the log replaced", c.Name, rep.CopyLast, e.Seq)}
	}
	return rep, nil
}

// copyCursor makes a copy's Next peekable.
type copyCursor struct {
	c    MirrorCopy
	head *MirrorLine
	done bool
}

func (k *copyCursor) peek() (MirrorLine, bool, error) {
	if k.head == nil && !k.done {
		e, ok, err := k.c.Next()
		if err != nil {
			return MirrorLine{}, false, err
		}
		if !ok {
			k.done = true
		} else {
			k.head = &e
		}
	}
	if k.head == nil {
		return MirrorLine{}, false, nil
	}
	return *k.head, true, nil
}

func (k *copyCursor) next() { k.head = nil }
