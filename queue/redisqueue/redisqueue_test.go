package redisqueue

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/redisserver"
)

var names = Names{Tasks: "q", Control: "q_control", Logs: "q_logs"}

func setup(t *testing.T, executors ...string) (*redis.Client, map[string]*Queue) {
	t.Helper()
	srv := redisserver.Start(t)
	qs := map[string]*Queue{}
	for _, id := range executors {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		qs[id] = New(rdb, Options{Names: names, ExecutorID: id, Retention: time.Hour, TTL: time.Second})
		t.Cleanup(func() { qs[id].Close() })
	}
	return srv.Client(t), qs
}

func take(t *testing.T, q *Queue) *queue.Delivery {
	t.Helper()
	d, err := q.Take(context.Background())
	if err != nil || d == nil {
		t.Fatalf("Take = %v, %v", d, err)
	}
	return d
}

func finish(id string, raw []byte, claimed bool) queue.Message {
	return queue.Message{Finish: &queue.Finish{ID: id, State: task.Succeeded, Done: []byte(`{"id":"` + id + `"}`), Raw: raw, Claimed: claimed}}
}

func TestClaimDuplicateAndRetriedClaim(t *testing.T) {
	ctx := context.Background()
	rdb, qs := setup(t, "a", "b")
	rdb.RPush(ctx, "q", `{"id":"1"}`, `{"id":"1"}`)
	d1, d2 := take(t, qs["a"]), take(t, qs["b"])
	if c, err := qs["a"].Claim(ctx, d1, "1"); c != queue.Claimed || err != nil {
		t.Fatalf("first claim = %v, %v", c, err)
	}
	if c, _ := qs["a"].Claim(ctx, d1, "1"); c != queue.Claimed {
		t.Errorf("a retried claim by the same executor = %v, want claimed", c)
	}
	if c, _ := qs["b"].Claim(ctx, d2, "1"); c != queue.Duplicate {
		t.Errorf("claim of a running id by another executor = %v, want duplicate", c)
	}
	// An ended id stays a duplicate for the retention time, for everyone.
	if err := qs["a"].Publish(ctx, []queue.Message{finish("1", d1.Raw, true)}); err != nil {
		t.Fatal(err)
	}
	if c, _ := qs["a"].Claim(ctx, d1, "1"); c != queue.Duplicate {
		t.Errorf("claim of an ended id = %v, want duplicate", c)
	}
}

func TestFinishPublishesOneDoneHoweverOftenRetried(t *testing.T) {
	ctx := context.Background()
	rdb, qs := setup(t, "a")
	rdb.RPush(ctx, "q", `{"id":"7"}`)
	d := take(t, qs["a"])
	qs["a"].Claim(ctx, d, "7")
	batch := []queue.Message{{Log: []byte(`line`)}, finish("7", d.Raw, true)}
	for range 3 {
		if err := qs["a"].Publish(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	logs := rdb.LRange(ctx, "q_logs", 0, -1).Val()
	dones := 0
	for _, l := range logs {
		if l == `{"id":"7"}` {
			dones++
		}
	}
	if dones != 1 || len(logs) != 4 { // three retried lines, one done
		t.Errorf("logs after three publishes: %q", logs)
	}
	if n := rdb.LLen(ctx, "q:processing:a").Val(); n != 0 {
		t.Errorf("processing list holds %d after finish", n)
	}
	if st, _ := qs["a"].Status(ctx, "7"); st == nil || st.State != task.Succeeded || string(st.Done) != `{"id":"7"}` {
		t.Errorf("status %+v", st)
	}
}

func TestKillRouting(t *testing.T) {
	ctx := context.Background()
	rdb, qs := setup(t, "a", "b")
	rdb.RPush(ctx, "q", `{"id":"run"}`, `{"id":"wait"}`)
	d := take(t, qs["a"])
	qs["a"].Claim(ctx, d, "run")
	if r, err := qs["b"].RouteKill(ctx, "run"); err != nil || r.Executor != "a" {
		t.Errorf("route of a running task = %+v, %v; want executor a", r, err)
	}
	if r, _ := qs["b"].RouteKill(ctx, "wait"); !r.Queued {
		t.Errorf("route of a queued task = %+v, want queued", r)
	}
	removed, err := qs["b"].RemoveQueued(ctx, "wait", func(raw []byte) *queue.Finish {
		return &queue.Finish{ID: "wait", State: task.Killed, Done: []byte(`killed`), Raw: raw}
	})
	if err != nil || !removed || rdb.LLen(ctx, "q").Val() != 0 {
		t.Errorf("RemoveQueued = %v, %v; task list %d", removed, err, rdb.LLen(ctx, "q").Val())
	}
	// A kill before the task exists cancels it when it is taken.
	qs["b"].RouteKill(ctx, "later")
	rdb.RPush(ctx, "q", `{"id":"later"}`)
	if c, _ := qs["a"].Claim(ctx, take(t, qs["a"]), "later"); c != queue.CancelledWhileQueued {
		t.Errorf("claim after an early kill = %v", c)
	}
	if err := qs["b"].Forward(ctx, "a", []byte(`{"id":"run","type":"kill"}`)); err != nil {
		t.Fatal(err)
	}
	if c, err := qs["a"].TakeForwarded(ctx); err != nil || c == nil || !c.Forwarded {
		t.Errorf("TakeForwarded = %+v, %v", c, err)
	}
}

func TestRecoverReportsStartedTasksLostAndRequeuesTheRest(t *testing.T) {
	ctx := context.Background()
	rdb, qs := setup(t, "dead", "peer")
	if err := qs["dead"].Join(ctx); err != nil {
		t.Fatal(err)
	}
	rdb.RPush(ctx, "q", `{"id":"started","type":"t"}`, `{"id":"taken"}`, `not json`)
	d := take(t, qs["dead"])
	qs["dead"].Claim(ctx, d, "started")
	take(t, qs["dead"])
	take(t, qs["dead"])
	rdb.RPush(ctx, "q_control", `{"id":"x","type":"kill"}`)
	if c, _ := qs["dead"].TakeControl(ctx); c == nil {
		t.Fatal("no control taken")
	}
	// Alive: a peer must not touch it.
	if r, _ := qs["peer"].Recover(ctx, "dead"); r != (queue.Recovered{}) {
		t.Fatalf("recovered a live executor: %+v", r)
	}
	rdb.Del(ctx, "q:executor:dead") // its liveness expires
	r, err := qs["peer"].Recover(ctx, "dead")
	if err != nil || r.Lost != 1 || r.Requeued != 2 || r.Controls != 1 {
		t.Fatalf("Recover = %+v, %v", r, err)
	}
	if st, _ := qs["peer"].Status(ctx, "started"); st == nil || st.State != task.Lost || st.Executor != "peer" {
		t.Errorf("status of the started task: %+v", st)
	}
	if got := rdb.LRange(ctx, "q", 0, -1).Val(); len(got) != 2 {
		t.Errorf("task list after recovery: %q", got)
	}
	if execs, _ := qs["peer"].Executors(ctx); len(execs) != 0 {
		t.Errorf("dead executor still registered: %v", execs)
	}
	// Recovering again finds nothing: no second lost done.
	if r, _ := qs["peer"].Recover(ctx, "dead"); r != (queue.Recovered{}) {
		t.Errorf("second recovery: %+v", r)
	}
}

func TestJoinRefusesALiveExecutorWithTheSameID(t *testing.T) {
	ctx := context.Background()
	_, qs := setup(t, "a")
	if err := qs["a"].Join(ctx); err != nil {
		t.Fatal(err)
	}
	other := New(qs["a"].Client(), Options{Names: names, ExecutorID: "a", TTL: 300 * time.Millisecond})
	stop := make(chan struct{})
	defer close(stop)
	go func() { // keep the first one alive
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				qs["a"].Heartbeat(ctx)
			}
		}
	}()
	if err := other.Join(ctx); err == nil {
		t.Fatal("a second executor joined under a live executor's id")
	}
}
