package redisqueue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
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

func finish(id string, d *queue.Delivery, claimed bool) queue.Message {
	return queue.Message{Finish: &queue.Finish{ID: id, State: task.Succeeded, Done: []byte(`{"id":"` + id + `"}`), Raw: d.Raw, Claimed: claimed, Token: d.Token}}
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
	if ok, err := qs["a"].Publish(ctx, []queue.Message{finish("1", d1, true)}); err != nil || !ok[0] {
		t.Fatal(ok, err)
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
	batch := []queue.Message{{Log: []byte(`line`)}, finish("7", d, true)}
	for range 3 {
		// A retried finish that took effect reports so again.
		if ok, err := qs["a"].Publish(ctx, batch); err != nil || !ok[0] || !ok[1] {
			t.Fatal(ok, err)
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

// Issue 8, report 1: two copies of one id taken by the same executor are
// two deliveries; only the first claim holds, whatever the executor id.
func TestSecondCopyOnTheSameExecutorIsADuplicate(t *testing.T) {
	ctx := context.Background()
	rdb, qs := setup(t, "a")
	rdb.RPush(ctx, "q", `{"id":"A"}`, `{"id":"A"}`)
	d1, d2 := take(t, qs["a"]), take(t, qs["a"])
	if d1.Token == d2.Token || d1.Token == "" {
		t.Fatalf("tokens %q and %q: each take needs its own", d1.Token, d2.Token)
	}
	if c, _ := qs["a"].Claim(ctx, d1, "A"); c != queue.Claimed {
		t.Fatalf("first claim = %v", c)
	}
	if c, _ := qs["a"].Claim(ctx, d2, "A"); c != queue.Duplicate {
		t.Errorf("second copy on the same executor = %v, want duplicate", c)
	}
	if c, _ := qs["a"].Claim(ctx, d1, "A"); c != queue.Claimed {
		t.Errorf("the first delivery's retried claim = %v, want claimed", c)
	}
	// The duplicate cannot end the id either.
	if ok, err := qs["a"].Publish(ctx, []queue.Message{finish("A", d2, true)}); err != nil || ok[0] {
		t.Errorf("the duplicate's finish = %v, %v; want not published", ok, err)
	}
	if ok, err := qs["a"].Publish(ctx, []queue.Message{finish("A", d1, true)}); err != nil || !ok[0] {
		t.Errorf("the owner's finish = %v, %v; want published", ok, err)
	}
	if n := rdb.LLen(ctx, "q_logs").Val(); n != 1 {
		t.Errorf("%d dones, want 1", n)
	}
}

// Issue 8, report 2: a kill that reaches a task taken but not yet claimed
// marks it cancelled; the claim must still make the delivery the owner, so
// that its finish (killed before it started) publishes a done.
func TestClaimOfACancelledTaskOwnsItsFinish(t *testing.T) {
	ctx := context.Background()
	rdb, qs := setup(t, "a", "b")
	rdb.RPush(ctx, "q", `{"id":"m3"}`)
	d := take(t, qs["a"])
	if r, _ := qs["b"].RouteKill(ctx, "m3"); !r.Queued {
		t.Fatalf("route of a taken, unclaimed task = %+v, want queued", r)
	}
	if c, _ := qs["a"].Claim(ctx, d, "m3"); c != queue.CancelledWhileQueued {
		t.Fatalf("claim = %v, want cancelled-while-queued", c)
	}
	if c, _ := qs["a"].Claim(ctx, d, "m3"); c != queue.CancelledWhileQueued {
		t.Errorf("retried claim = %v, want cancelled-while-queued again", c)
	}
	f := finish("m3", d, true)
	f.Finish.State = task.Killed
	if ok, err := qs["a"].Publish(ctx, []queue.Message{f}); err != nil || !ok[0] {
		t.Fatalf("finish of the cancelled task = %v, %v; want published", ok, err)
	}
	if st, _ := qs["a"].Status(ctx, "m3"); st == nil || st.State != task.Killed {
		t.Errorf("status %+v, want killed", st)
	}
	if n := rdb.LLen(ctx, "q_logs").Val(); n != 1 {
		t.Errorf("%d dones, want 1", n)
	}
}

// A paused executor whose task a peer reported lost can neither publish a
// second done nor think it still owns the task.
func TestRecoveredClaimIsFenced(t *testing.T) {
	ctx := context.Background()
	rdb, qs := setup(t, "paused", "peer")
	if err := qs["paused"].Join(ctx); err != nil {
		t.Fatal(err)
	}
	rdb.RPush(ctx, "q", `{"id":"p1"}`, `{"id":"p2"}`)
	d1, d2 := take(t, qs["paused"]), take(t, qs["paused"])
	qs["paused"].Claim(ctx, d1, "p1")
	qs["paused"].Claim(ctx, d2, "p2")
	claims := map[string]string{"p1": d1.Token, "p2": d2.Token}
	if own, err := qs["paused"].Owned(ctx, claims); err != nil || !own["p1"] || !own["p2"] {
		t.Fatalf("Owned before = %v, %v", own, err)
	}
	rdb.Del(ctx, "q:executor:paused") // its liveness expired while it was stopped
	if r, err := qs["peer"].Recover(ctx, "paused"); err != nil || r.Lost != 2 {
		t.Fatalf("Recover = %+v, %v", r, err)
	}
	if err := qs["paused"].Heartbeat(ctx); !errors.Is(err, queue.ErrLivenessLost) {
		t.Errorf("Heartbeat after the expiry = %v, want ErrLivenessLost", err)
	}
	if err := qs["paused"].Heartbeat(ctx); err != nil {
		t.Errorf("second Heartbeat = %v, want renewed", err)
	}
	if own, err := qs["paused"].Owned(ctx, claims); err != nil || own["p1"] || own["p2"] {
		t.Errorf("Owned after recovery = %v, %v; want neither", own, err)
	}
	if ok, err := qs["paused"].Publish(ctx, []queue.Message{finish("p1", d1, true)}); err != nil || ok[0] {
		t.Errorf("finish after recovery = %v, %v; want not published", ok, err)
	}
	if n := rdb.LLen(ctx, "q_logs").Val(); n != 2 {
		t.Errorf("%d dones, want the 2 lost ones only", n)
	}
	// While a peer holds the recovery lock, the answer is not final.
	rdb.Set(ctx, "q:recovering:paused", "peer", time.Minute)
	if _, err := qs["paused"].Owned(ctx, claims); !errors.Is(err, queue.ErrRecovering) {
		t.Errorf("Owned during a recovery = %v, want ErrRecovering", err)
	}
}

func TestJoinIsIdempotentAndNamesTheHolder(t *testing.T) {
	ctx := context.Background()
	_, qs := setup(t, "a")
	if err := qs["a"].Join(ctx); err != nil {
		t.Fatal(err)
	}
	if err := qs["a"].Join(ctx); err != nil {
		t.Fatalf("second Join from the same process = %v", err)
	}
	other := New(qs["a"].Client(), Options{Names: names, ExecutorID: "a", TTL: 100 * time.Millisecond})
	err := other.Join(ctx)
	if !errors.Is(err, queue.ErrIdentityTaken) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("Join under a held id = %v; want ErrIdentityTaken naming the holder's pid", err)
	}
}
