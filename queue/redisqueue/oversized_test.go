package redisqueue

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/redisserver"
)

// replyMeter records the largest reply a client was sent, so a test can
// show that a huge message never left Redis.
type replyMeter struct{ max atomic.Int64 }

func (m *replyMeter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (m *replyMeter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			m.note(c)
		}
		return err
	}
}
func (m *replyMeter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		m.note(cmd)
		return err
	}
}

func (m *replyMeter) note(c redis.Cmder) {
	var n int
	var size func(v any)
	size = func(v any) {
		switch v := v.(type) {
		case string:
			n += len(v)
		case []any:
			for _, x := range v {
				size(x)
			}
		case []string:
			for _, x := range v {
				n += len(x)
			}
		}
	}
	switch c := c.(type) {
	case *redis.Cmd:
		size(c.Val())
	case *redis.StringSliceCmd:
		size(c.Val())
	case *redis.StringCmd:
		size(c.Val())
	}
	for {
		old := m.max.Load()
		if int64(n) <= old || m.max.CompareAndSwap(old, int64(n)) {
			return
		}
	}
}

func meteredQueue(t *testing.T) (*redis.Client, *Queue, *replyMeter) {
	t.Helper()
	srv := redisserver.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	m := &replyMeter{}
	rdb.AddHook(m)
	q := New(rdb, Options{Names: names, ExecutorID: "a", Retention: time.Hour, TTL: time.Second})
	t.Cleanup(func() { q.Close() })
	return srv.Client(t), q, m
}

// A control message over the limit is dropped in Redis: the executor is
// sent its length, never its body, and the next kill is taken as usual.
func TestOversizedControlIsDroppedUnread(t *testing.T) {
	ctx := context.Background()
	rdb, q, m := meteredQueue(t)
	huge := `{"id":"x","type":"kill","pad":"` + strings.Repeat("k", 8<<20) + `"}`
	rdb.RPush(ctx, names.Control, huge, `{"id":"y","type":"kill"}`)
	c, err := q.TakeControl(ctx)
	if err != nil || c == nil || c.Size != len(huge) || len(c.Raw) != 0 {
		t.Fatalf("TakeControl = %+v, %v; want size %d and no body", c, err, len(huge))
	}
	if err := q.AckControl(ctx, c); err != nil {
		t.Fatal(err)
	}
	c, err = q.TakeControl(ctx)
	if err != nil || c == nil || string(c.Raw) != `{"id":"y","type":"kill"}` {
		t.Fatalf("the kill after it: %+v, %v", c, err)
	}
	if got := m.max.Load(); got > task.MaxControlBytes {
		t.Errorf("the executor was sent a reply of %d bytes (limit %d)", got, task.MaxControlBytes)
	}
	if n := rdb.LLen(ctx, names.Control).Val(); n != 0 {
		t.Errorf("%d messages left on the control list", n)
	}
}

// Cancelling a queued task behind huge messages reads none of them.
func TestRemoveQueuedNeverReadsAHugeMessage(t *testing.T) {
	ctx := context.Background()
	rdb, q, m := meteredQueue(t)
	big := strings.Repeat("b", 4<<20)
	rdb.RPush(ctx, names.Tasks,
		`{"id":"h1","pad":"`+big+`"}`,
		`{"id":"near","pad":"mentions victim"}`,
		`{"id":"h2","pad":"victim `+big+`"}`,
		`{"id":"victim","type":"t","task":{"cmdline":"x"}}`)
	if r, _ := q.RouteKill(ctx, "victim"); !r.Queued {
		t.Fatalf("route = %+v", r)
	}
	removed, err := q.RemoveQueued(ctx, "victim", func(raw []byte) *queue.Finish {
		return &queue.Finish{ID: "victim", State: task.Killed, Done: []byte(`{"id":"victim","status":"killed"}`), Raw: raw}
	})
	if err != nil || !removed {
		t.Fatalf("RemoveQueued = %v, %v", removed, err)
	}
	if got := m.max.Load(); got > 1<<20 {
		t.Errorf("the executor was sent a reply of %d bytes while scanning", got)
	}
	if n := rdb.LLen(ctx, names.Tasks).Val(); n != 3 {
		t.Errorf("task list has %d messages, want the 3 others", n)
	}
}

// Kills for ids that never come cost bounded memory: one sorted set of at
// most MaxKillsAhead ids, no key per id, and the newest still cancels its
// task when it arrives.
func TestKillsAheadAreBounded(t *testing.T) {
	ctx := context.Background()
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	q := New(redis.NewClient(&redis.Options{Addr: srv.Addr()}),
		Options{Names: names, ExecutorID: "a", Retention: time.Hour, TTL: time.Second, MaxKillsAhead: 100})
	t.Cleanup(func() { q.Close() })
	for i := range 2000 {
		if r, err := q.RouteKill(ctx, fmt.Sprint("ghost-", i)); err != nil || !r.Queued {
			t.Fatalf("route %d = %+v, %v", i, r, err)
		}
	}
	if n := rdb.ZCard(ctx, "q:kills-ahead").Val(); n != 100 {
		t.Errorf("%d kills ahead remembered, want the cap of 100", n)
	}
	if n := rdb.DBSize(ctx).Val(); n > 2 {
		t.Errorf("%d keys in Redis after 2,000 kills for unknown ids (%v)", n, rdb.Keys(ctx, "*").Val())
	}
	rdb.RPush(ctx, names.Tasks, `{"id":"ghost-1999","type":"t","task":{"cmdline":"x"}}`)
	d := take(t, q)
	if c, err := q.Claim(ctx, d, "ghost-1999"); err != nil || c != queue.CancelledWhileQueued {
		t.Errorf("claim of the newest killed-ahead id = %v, %v; want cancelled", c, err)
	}
}

// A kill for a task the dispatcher has put in an executor's assigned list
// (not yet taken, so no status) is obeyed: the task is cancelled when the
// executor takes it, never run.
func TestKillOfAnAssignedTaskCancelsItWhenTaken(t *testing.T) {
	ctx := context.Background()
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	q := New(redis.NewClient(&redis.Options{Addr: srv.Addr()}),
		Options{Names: names, ExecutorID: "a", Retention: time.Hour, TTL: time.Second, Dispatched: true})
	t.Cleanup(func() { q.Close() })
	rdb.RPush(ctx, q.AssignedKey("a"), `{"id":"assigned-1","type":"t","task":{"cmdline":"x"}}`)
	if r, err := q.RouteKill(ctx, "assigned-1"); err != nil || !r.Queued {
		t.Fatalf("route = %+v, %v", r, err)
	}
	d := take(t, q)
	if c, err := q.Claim(ctx, d, "assigned-1"); err != nil || c != queue.CancelledWhileQueued {
		t.Errorf("claim of a killed assigned task = %v, %v; want cancelled", c, err)
	}
}
