package redisqueue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue"
)

// Submitting through task-job's own clients (the CLI's submit, the
// management API) reserves the task's id in the same step as the push, so
// that a second submit of an id still queued — with no status yet, as no
// executor has claimed it — is refused instead of being pushed as a copy
// the executor would drop (and whose wait would show the first task's
// result). A plain RPUSH neither reserves nor looks: the protocol stays as
// it was, and a reserved task is claimed like any other: the executor reads
// the reservation only for the time it was made, so that its wait metric
// can count the time the task spent queued.
//
//	Q:submitted:<id>  string: when the id was submitted (ms), kept status_retention

// SubmittedKey is the key of id's reservation.
func (q *Queue) SubmittedKey(id string) string { return q.key("submitted", id) }

// SubmitResult says what Submit did (queue.SubmitResult, named here as
// before).
type SubmitResult = queue.SubmitResult

// The answers of Submit and IDState.
const (
	IDFree     = queue.IDFree
	Pushed     = queue.Pushed
	IDUsed     = queue.IDUsed
	IDReserved = queue.IDReserved
)

// submitScript: KEYS[1] status, KEYS[2] reservation, KEYS[3] task list;
// ARGV raw, reservation ms, now. Returns 1 pushed, 2 the id has a status, 3
// the id is reserved. The reservation expires on its own: the status that
// a claim writes takes over the id's protection from there.
var submitScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end
if not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[2]) then return 3 end
redis.call('RPUSH', KEYS[3], ARGV[1])
return 1
`)

// Submit pushes raw to list (TubeKey of the task's tube, or the task list)
// unless id is already used or reserved, and reserves id for the
// retention time: the check, the reservation and the push are one step in
// Redis, so of two submits of one id exactly one is pushed.
func (q *Queue) Submit(ctx context.Context, list, id string, raw []byte) (SubmitResult, error) {
	ms := strconv.FormatInt(q.opt.Retention.Milliseconds(), 10)
	n, err := submitScript.Run(ctx, q.rdb, []string{q.StatusKey(id), q.SubmittedKey(id), list}, raw, ms, now()).Int()
	if err != nil {
		return 0, fmt.Errorf("queue: submit %q: %w", id, err)
	}
	return SubmitResult(n), nil
}

// IDState says, without changing anything, whether id is free, used or
// reserved: for an early refusal (before an audit record is written, say);
// only Submit's answer is final.
func (q *Queue) IDState(ctx context.Context, id string) (SubmitResult, error) {
	var st, rs *redis.IntCmd
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		st = p.Exists(ctx, q.StatusKey(id))
		rs = p.Exists(ctx, q.SubmittedKey(id))
		return nil
	})
	switch {
	case err != nil:
		return 0, fmt.Errorf("queue: look up id %q: %w", id, err)
	case st.Val() > 0:
		return IDUsed, nil
	case rs.Val() > 0:
		return IDReserved, nil
	}
	return IDFree, nil
}

// SubmittedAt is when id was reserved by a submit, zero if it is not.
func (q *Queue) SubmittedAt(ctx context.Context, id string) (time.Time, error) {
	v, err := q.rdb.Get(ctx, q.SubmittedKey(id)).Int64()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("queue: reservation of %q: %w", id, err)
	}
	return time.UnixMilli(v), nil
}

// KillAheadUntil is when a kill sent for id before any executor took it
// stops holding (Q:kills-ahead), zero if none is pending: a task submitted
// with that id is cancelled when it is taken.
func (q *Queue) KillAheadUntil(ctx context.Context, id string) (time.Time, error) {
	ms, err := q.rdb.ZScore(ctx, q.key("kills-ahead"), id).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("queue: kills ahead of %q: %w", id, err)
	}
	if until := time.UnixMilli(int64(ms)); until.After(time.Now()) {
		return until, nil
	}
	return time.Time{}, nil
}

// The client commands' side of the protocol (queue.Client), as any
// container would speak it.
var _ queue.Client = (*Queue)(nil)

// SubmitTask implements queue.Client: Submit to the tube's list.
func (q *Queue) SubmitTask(ctx context.Context, id, tube string, raw []byte) (SubmitResult, error) {
	return q.Submit(ctx, q.TubeKey(tube), id, raw)
}

// SendControl implements queue.Client: an RPUSH to the control list.
func (q *Queue) SendControl(ctx context.Context, raw []byte) error {
	return q.rdb.RPush(ctx, q.opt.Names.Control, raw).Err()
}

// State implements queue.Client from the status hash.
func (q *Queue) State(ctx context.Context, id string) (state, executor string, err error) {
	h, err := q.rdb.HMGet(ctx, q.StatusKey(id), "state", "executor").Result()
	if err != nil {
		return "", "", err
	}
	state, _ = h[0].(string)
	executor, _ = h[1].(string)
	return state, executor, nil
}
