package redismirror

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/audit"
)

// Report is the result of Verify.
type Report = audit.MirrorReport

// Verify compares every local record with the stream's copy of the same
// seq (audit.CompareMirror).
func Verify(ctx context.Context, basePath string, rdb redis.UniversalClient, stream string) (Report, error) {
	last, err := Last(ctx, rdb, stream)
	if err != nil {
		return Report{}, err
	}
	sc := &streamCursor{ctx: ctx, rdb: rdb, stream: stream}
	return audit.CompareMirror(basePath, audit.MirrorCopy{Name: "the mirror stream " + stream, Last: last,
		Next: func() (audit.MirrorLine, bool, error) {
			e, ok, err := sc.peek()
			if ok {
				sc.next()
			}
			return audit.MirrorLine{Seq: e.seq, Line: e.line}, ok, err
		}})
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
