package redismirror

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/audit"
)

// The mirror copies each line of the local file, the source of truth, to a
// Redis stream as entry ID "<seq>-0" with the single field "line". Explicit
// IDs make a copy idempotent (Redis refuses an ID at or below the stream's
// top), let a restarted mirror resume from the stream's last entry, and let
// Verify look records up by seq. Use one stream per log.

// Options tune a Mirror. The zero value is usable.
type Options struct {
	// MaxLen caps the stream, approximately (MAXLEN ~); default 1,000,000
	// entries. 0 keeps the default; -1 keeps everything.
	MaxLen int64
	// PollInterval is how often the file is checked for new lines (50ms).
	PollInterval time.Duration
	// RetryInterval is the wait after a Redis error before resuming (1s).
	RetryInterval time.Duration
	// OnError, when set, is told of each error (Redis unreachable, the
	// stream ahead of the local log…); the mirror keeps retrying.
	OnError func(error)
	// Executor, when set, is the id this log's records carry. A stream
	// whose newest entry another executor wrote is refused with an error
	// that says so: two logs in one stream collide on their seqs.
	Executor string
}

// Mirror copies an audit log to a Redis stream in the background (see
// audit.Mirror).
type Mirror = audit.Mirror

// Start starts copying the log at basePath to stream. It first asks
// the stream for the last seq it holds and continues after it, so an
// outage or a restart leaves no gap once Redis answers again.
func Start(basePath string, rdb redis.UniversalClient, stream string, opts Options) *Mirror {
	if opts.MaxLen == 0 {
		opts.MaxLen = 1_000_000
	}
	return audit.StartMirror(basePath, &streamStore{rdb: rdb, stream: stream, maxLen: opts.MaxLen, executor: opts.Executor},
		audit.MirrorOptions{PollInterval: opts.PollInterval, RetryInterval: opts.RetryInterval, OnError: opts.OnError})
}

// streamStore is an audit.MirrorStore on a Redis stream.
type streamStore struct {
	rdb      redis.UniversalClient
	stream   string
	maxLen   int64
	executor string
}

func (s *streamStore) Name() string { return "the mirror stream " + s.stream }

// Resume implements audit.MirrorStore.
func (s *streamStore) Resume(ctx context.Context) (uint64, error) {
	last, err := Last(ctx, s.rdb, s.stream)
	if err != nil {
		return 0, err
	}
	return last, s.checkOwner(ctx)
}

// Append implements audit.MirrorStore: one XADD an entry, pipelined.
func (s *streamStore) Append(ctx context.Context, lines []audit.MirrorLine) (int, error) {
	pipe := s.rdb.Pipeline()
	for _, l := range lines {
		a := &redis.XAddArgs{Stream: s.stream, ID: strconv.FormatUint(l.Seq, 10) + "-0", Values: []any{"line", l.Line}}
		if s.maxLen > 0 {
			a.MaxLen, a.Approx = s.maxLen, true
		}
		pipe.XAdd(ctx, a)
	}
	cmds, err := pipe.Exec(ctx)
	// Count what went in, in order, up to the first failure.
	// Only an entry Redis answered with its ID counts: after a failed
	// pipeline some commands may carry neither an error nor a reply.
	n := 0
	for i, c := range cmds {
		sc, ok := c.(*redis.StringCmd)
		if !ok || sc.Err() != nil || sc.Val() != strconv.FormatUint(lines[i].Seq, 10)+"-0" {
			break
		}
		n++
	}
	return n, err
}

// Last returns the seq of the stream's newest entry, 0 when empty.
func Last(ctx context.Context, rdb redis.UniversalClient, stream string) (uint64, error) {
	msgs, err := rdb.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	if err != nil {
		return 0, fmt.Errorf("audit: cannot read the mirror stream %s: %w", stream, err)
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	return idSeq(msgs[0].ID)
}

func idSeq(id string) (uint64, error) {
	ms, _, _ := strings.Cut(id, "-")
	seq, err := strconv.ParseUint(ms, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("audit: the mirror stream has an entry %q that is not an audit seq", id)
	}
	return seq, nil
}

// checkOwner refuses a stream whose newest record names another executor.
func (s *streamStore) checkOwner(ctx context.Context) error {
	if s.executor == "" {
		return nil
	}
	msgs, err := s.rdb.XRevRangeN(ctx, s.stream, "+", "-", 1).Result()
	if err != nil || len(msgs) == 0 {
		return err
	}
	line, _ := msgs[0].Values["line"].(string)
	var r struct {
		Executor string `json:"executor"`
	}
	if json.Unmarshal([]byte(line), &r) == nil && r.Executor != "" && r.Executor != s.executor {
		return fmt.Errorf("audit: the mirror stream %s holds the audit log of executor %q, not of this executor %q; each executor needs a stream of its own (leave audit_stream unset: its default names the executor)",
			s.stream, r.Executor, s.executor)
	}
	return nil
}
