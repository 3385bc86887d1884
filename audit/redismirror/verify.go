package redismirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/audit"
)

// Report is the result of Verify.
type Report struct {
	StreamFirst, StreamLast uint64       // seq range the stream holds; 0 when empty
	Compared                int          // local records found identical in the stream
	Trimmed                 int          // local records older than the stream's first entry (MAXLEN)
	NotMirrored             int          // local records newer than the stream's last entry
	Missing                 int          // local records in the stream's range but not in it
	Break                   *audit.Break // the first difference, nil when none
}

// OK reports whether the local log and the mirror agree.
func (r Report) OK() bool { return r.Break == nil }

var errStop = errors.New("stop")

// Verify compares every local record with the stream's copy of the same
// seq. It catches what audit.Verify alone cannot: a tail rewritten with
// recomputed hashes (lines differ), and records removed from the end of
// the local log or the whole log replaced (the stream has seqs the log
// lacks). Local lines that do not parse are left to audit.Verify.
func Verify(ctx context.Context, basePath string, rdb redis.UniversalClient, stream string) (Report, error) {
	var rep Report
	first, err := rdb.XRangeN(ctx, stream, "-", "+", 1).Result()
	if err != nil {
		return rep, fmt.Errorf("audit: cannot read the mirror stream %s: %w", stream, err)
	}
	if len(first) > 0 {
		if rep.StreamFirst, err = idSeq(first[0].ID); err != nil {
			return rep, err
		}
		if rep.StreamLast, err = Last(ctx, rdb, stream); err != nil {
			return rep, err
		}
	}
	files, err := audit.ChainFiles(basePath)
	if err != nil {
		return rep, err
	}
	if len(files) == 0 {
		return rep, fmt.Errorf("audit: no audit log at %s", basePath)
	}
	sc := &streamCursor{ctx: ctx, rdb: rdb, stream: stream}
	for _, cf := range files {
		err := audit.Lines(cf.Path, func(n int, line []byte, complete bool) error {
			r, err := audit.ParseLine(line)
			if err != nil || !complete {
				return nil
			}
			switch {
			case rep.StreamFirst == 0 || r.Seq > rep.StreamLast:
				rep.NotMirrored++
				return nil
			case r.Seq < rep.StreamFirst:
				rep.Trimmed++
				return nil
			}
			e, ok, err := sc.peek()
			if err != nil {
				return err
			}
			if !ok || e.seq > r.Seq {
				rep.Missing++
				return nil
			}
			if e.seq < r.Seq {
				rep.Break = &audit.Break{File: cf.Path, Line: n, Seq: e.seq,
					Problem: fmt.Sprintf("the mirror holds seq %d, which is not in the local log before this line (seq %d) — it was deleted locally", e.seq, r.Seq)}
				return errStop
			}
			sc.next()
			if !bytes.Equal(e.line, line) {
				rep.Break = &audit.Break{File: cf.Path, Line: n, Seq: r.Seq,
					Problem: "differs from the mirror's copy — the local record was rewritten"}
				return errStop
			}
			rep.Compared++
			return nil
		})
		if err == errStop {
			return rep, nil
		}
		if err != nil {
			return rep, err
		}
	}
	e, ok, err := sc.peek()
	if err != nil {
		return rep, err
	}
	// Only what the stream held when the check began counts: on a live log
	// the mirror goes on copying records the local read counted as not yet
	// mirrored, and those are no sign of a removed tail.
	if ok && e.seq <= rep.StreamLast {
		last := files[len(files)-1]
		rep.Break = &audit.Break{File: last.Path, Seq: e.seq,
			Problem: fmt.Sprintf("the mirror holds records up to seq %d that the local log does not have from seq %d on — the local log's tail was removed or the log replaced", rep.StreamLast, e.seq)}
	}
	return rep, nil
}

type streamEntry struct {
	seq  uint64
	line []byte
}

// streamCursor reads the stream in order, a page at a time.
type streamCursor struct {
	ctx    context.Context
	rdb    redis.UniversalClient
	stream string
	buf    []streamEntry
	after  string // last ID read
	done   bool
}

func (c *streamCursor) peek() (streamEntry, bool, error) {
	for len(c.buf) == 0 && !c.done {
		start := "-"
		if c.after != "" {
			start = "(" + c.after
		}
		msgs, err := c.rdb.XRangeN(c.ctx, c.stream, start, "+", 1000).Result()
		if err != nil {
			return streamEntry{}, false, fmt.Errorf("audit: cannot read the mirror stream %s: %w", c.stream, err)
		}
		if len(msgs) == 0 {
			c.done = true
			break
		}
		for _, msg := range msgs {
			c.after = msg.ID
			seq, err := idSeq(msg.ID)
			if err != nil {
				return streamEntry{}, false, err
			}
			line, _ := msg.Values["line"].(string)
			c.buf = append(c.buf, streamEntry{seq: seq, line: []byte(line)})
		}
	}
	if len(c.buf) == 0 {
		return streamEntry{}, false, nil
	}
	return c.buf[0], true, nil
}

func (c *streamCursor) next() { c.buf = c.buf[1:] }

// Copy is the mirror stream as a copy of the log, for reading and
// verifying an executor's log where only Redis reaches it (task-job server
// on another host): audit.ReadCopy and audit.VerifyCopy walk it. Line
// numbers are the records' seqs. The stream is MAXLEN-trimmed, so its
// chain may start after seq 1.
func Copy(ctx context.Context, rdb redis.UniversalClient, stream string) audit.LinesOf {
	return audit.LinesOf{Name: stream, Walk: func(fn func(n int, line []byte) error) error {
		sc := &streamCursor{ctx: ctx, rdb: rdb, stream: stream}
		for {
			e, ok, err := sc.peek()
			if err != nil || !ok {
				return err
			}
			if err := fn(int(e.seq), e.line); err != nil {
				return err
			}
			sc.next()
		}
	}}
}
