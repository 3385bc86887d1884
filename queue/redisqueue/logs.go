package redisqueue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
)

// Besides the shared logs list (the original's, kept as it was for its
// consumers, but trimmed to LogsMaxLen), every task's messages go to a
// stream of its own, Q:logs:<id>, so that reading or following one task
// never scans every task's lines. One entry per published batch, field
// "lines": the task's TaskLog messages of that batch, newline-joined (a
// TaskLog is one line of JSON). The stream lives as long as the task's
// status: renewed to the retention at every batch, and again at its done.

// logsField is the stream entry field holding a batch of messages.
const logsField = "lines"

// DefaultLogsMaxLen bounds the shared logs list when Options.LogsMaxLen is 0.
const DefaultLogsMaxLen = 100000

// TaskLogsKey is the key of id's log stream.
func (q *Queue) TaskLogsKey(id string) string { return q.key("logs", id) }

// doneToStreamScript: KEYS[1] status, KEYS[2] task's log stream; ARGV done,
// retention ms. It runs right after the finish script in the same MULTI and
// copies the done into the task's stream only if that script made it the
// task's done: a done refused as late or as not this executor's to give
// must not reach the task's readers either. The finish script itself is
// left as it is.
var doneToStreamScript = `
if redis.call('HGET', KEYS[1], 'done') == ARGV[1] then
  redis.call('XADD', KEYS[2], '*', '` + logsField + `', ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 0
`

// lineID reads the id of a TaskLog message. Messages are written with "id"
// first, so the common case is a prefix; anything else is parsed.
func lineID(raw []byte) string {
	const prefix = `{"id":"`
	if bytes.HasPrefix(raw, []byte(prefix)) {
		rest := raw[len(prefix):]
		if end := bytes.IndexByte(rest, '"'); end >= 0 && bytes.IndexByte(rest[:end], '\\') < 0 {
			return string(rest[:end])
		}
	}
	id, _ := task.PeekID(raw)
	return id
}

// logsMaxLen is the bound of the shared logs list; negative means unbounded.
func (q *Queue) logsMaxLen() int64 {
	switch {
	case q.opt.LogsMaxLen < 0:
		return -1
	case q.opt.LogsMaxLen == 0:
		return DefaultLogsMaxLen
	}
	return int64(q.opt.LogsMaxLen)
}

// LogBatch is what one read of a task's log stream returned.
type LogBatch = queue.LogBatch

// ReadLogs returns id's messages after position from ("" = from the
// start). With block > 0 it waits up to block for the first new one
// (go-redis rounds waits under a second up to one); an empty batch with a
// nil error means nothing came.
func (q *Queue) ReadLogs(ctx context.Context, id, from string, block time.Duration) (LogBatch, error) {
	if from == "" {
		from = "0"
	}
	key := q.TaskLogsKey(id)
	out := LogBatch{Next: from}
	var entries []redis.XMessage
	if block <= 0 {
		start := "(" + from
		if from == "0" {
			start = "-"
		}
		var err error
		if entries, err = q.rdb.XRangeN(ctx, key, start, "+", 1000).Result(); err != nil {
			return out, fmt.Errorf("queue: read the log stream of %q: %w", id, err)
		}
	} else {
		res, err := q.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{key, from}, Count: 1000, Block: block}).Result()
		if errors.Is(err, redis.Nil) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("queue: read the log stream of %q: %w", id, err)
		}
		for _, s := range res {
			entries = append(entries, s.Messages...)
		}
	}
	for _, e := range entries {
		out.Next = e.ID
		s, _ := e.Values[logsField].(string)
		for _, line := range strings.Split(s, "\n") {
			if line != "" {
				out.Messages = append(out.Messages, []byte(line))
			}
		}
	}
	return out, nil
}

// HasLogs reports whether id has a log stream. It has none when it never
// shipped a line (logs off, or no output yet) or ended longer than the
// retention ago.
func (q *Queue) HasLogs(ctx context.Context, id string) (bool, error) {
	n, err := q.rdb.Exists(ctx, q.TaskLogsKey(id)).Result()
	if err != nil {
		return false, fmt.Errorf("queue: look for the log stream of %q: %w", id, err)
	}
	return n == 1, nil
}
