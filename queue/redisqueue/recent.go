package redisqueue

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The recent-task index is what the management API lists tasks from without
// a SCAN: a sorted set of ids scored by when each was claimed (or ended,
// for a task that never was), capped in size and age, plus a copy of each
// task's message so that a list can show its cmdline and a retry can
// resubmit it. It is written only here, from Claim and from the finish
// paths, in the same round trip as the command it rides with, so it costs
// the executor no extra wait.
//
//	Q:recent        sorted set: id -> claim time (ms)
//	Q:task:<id>     string: the task message as received, kept status_retention
//	Q:retry-of:<id> string: the id a retry was made from, kept status_retention
//	Q:info:<exec>   hash: what an executor says about itself (version, slots, sandbox)

// RecentMax bounds the recent-task index; older entries fall off.
const RecentMax = 100_000

// RecentKey is the key of the recent-task index.
func (q *Queue) RecentKey() string { return q.key("recent") }

// TaskKey is the key of id's kept task message.
func (q *Queue) TaskKey(id string) string { return q.key("task", id) }

// RetryOfKey is the key linking a retry to the task it repeats.
func (q *Queue) RetryOfKey(id string) string { return q.key("retry-of", id) }

// ProcessingKey is the key of an executor's processing list.
func (q *Queue) ProcessingKey(executor string) string { return q.processing(executor) }

// LivenessKey is the key of an executor's liveness.
func (q *Queue) LivenessKey(executor string) string { return q.liveness(executor) }

// ExecutorsKey is the set of registered executors.
func (q *Queue) ExecutorsKey() string { return q.key("executors") }

// InfoKey is the key of what an executor publishes about itself.
func (q *Queue) InfoKey(executor string) string { return q.key("info", executor) }

// Names returns the list names this queue uses.
func (q *Queue) Names() Names { return q.opt.Names }

// Retention is how long ended tasks are remembered.
func (q *Queue) Retention() time.Duration { return q.opt.Retention }

// noteRecent queues, on p, the index writes for id: its entry (first write
// wins, so a duplicate copy does not move it), its message copy, and the
// trimming that keeps the index bounded by RecentMax and the retention.
// ended refreshes the copy's lifetime so it outlives the task by the
// retention, as the status does.
func (q *Queue) noteRecent(ctx context.Context, p redis.Cmdable, id string, raw []byte, ended bool) {
	nowMS := time.Now().UnixMilli()
	key := q.RecentKey()
	p.ZAddNX(ctx, key, redis.Z{Score: float64(nowMS), Member: id})
	p.ZRemRangeByRank(ctx, key, 0, -RecentMax-1)
	p.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(nowMS-q.opt.Retention.Milliseconds(), 10))
	if len(raw) > 0 {
		p.SetNX(ctx, q.TaskKey(id), raw, q.opt.Retention)
	}
	if ended {
		p.PExpire(ctx, q.TaskKey(id), q.opt.Retention)
	}
}
