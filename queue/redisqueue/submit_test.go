package redisqueue

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/test/redisserver"
)

// A second submit of an id still queued (no status yet) is refused, the
// executor still claims the reserved task as its own, and once claimed the
// id is refused for its status.
func TestSubmitReservesTheID(t *testing.T) {
	ctx := context.Background()
	rdb, qs := setup(t, "a")
	q := qs["a"]
	raw := []byte(`{"id":"s1","task":{"cmdline":"a.sh"}}`)
	if r, err := q.Submit(ctx, "q", "s1", raw); r != Pushed || err != nil {
		t.Fatalf("first submit = %v, %v", r, err)
	}
	if r, err := q.IDState(ctx, "s1"); r != IDReserved || err != nil {
		t.Errorf("IDState of a queued, reserved id = %v, %v", r, err)
	}
	if r, err := q.Submit(ctx, "q", "s1", []byte(`{"id":"s1","task":{"cmdline":"b.sh"}}`)); r != IDReserved || err != nil {
		t.Fatalf("second submit while queued = %v, %v, want %v", r, err, IDReserved)
	}
	if got := rdb.LRange(ctx, "q", 0, -1).Val(); len(got) != 1 || got[0] != string(raw) {
		t.Fatalf("task list = %q, want the first message alone, byte for byte", got)
	}
	if at, err := q.SubmittedAt(ctx, "s1"); err != nil || time.Since(at) > time.Minute || time.Since(at) < 0 {
		t.Errorf("SubmittedAt = %v, %v", at, err)
	}
	if ttl := rdb.PTTL(ctx, q.SubmittedKey("s1")).Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("the reservation's TTL is %v, want (0, retention]", ttl)
	}

	// The reservation is no claim: the executor takes and claims the task.
	d := take(t, q)
	if string(d.Raw) != string(raw) {
		t.Fatalf("took %q, want %q", d.Raw, raw)
	}
	if c, err := q.Claim(ctx, d, "s1"); c != queue.Claimed || err != nil {
		t.Fatalf("claim of a reserved id = %v, %v, want claimed", c, err)
	}
	if r, _ := q.Submit(ctx, "q", "s1", raw); r != IDUsed {
		t.Errorf("submit of a running id = %v, want %v", r, IDUsed)
	}
	if ok, err := q.Publish(ctx, []queue.Message{finish("s1", d, true)}); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	if r, _ := q.Submit(ctx, "q", "s1", raw); r != IDUsed {
		t.Errorf("submit of an ended id = %v, want %v", r, IDUsed)
	}
	if r, _ := q.IDState(ctx, "never"); r != IDFree {
		t.Errorf("IDState of an unknown id = %v, want %v", r, IDFree)
	}
	if n := rdb.LLen(ctx, "q").Val(); n != 0 {
		t.Errorf("%d tasks left in the list, want 0", n)
	}
}

// Clients that only RPUSH are untouched: they reserve nothing, and what
// they push is taken and claimed as before; a kill of a reserved, queued
// task still cancels it.
func TestSubmitLeavesPlainRPUSHAndKillsAlone(t *testing.T) {
	ctx := context.Background()
	rdb, qs := setup(t, "a")
	q := qs["a"]
	rdb.RPush(ctx, "q", `{"id":"p1"}`)
	if n := rdb.Exists(ctx, q.SubmittedKey("p1")).Val(); n != 0 {
		t.Error("a plain RPUSH left a reservation")
	}
	d := take(t, q)
	if c, _ := q.Claim(ctx, d, "p1"); c != queue.Claimed {
		t.Errorf("claim of a plain RPUSH = %v, want claimed", c)
	}

	if r, _ := q.Submit(ctx, "q", "k1", []byte(`{"id":"k1"}`)); r != Pushed {
		t.Fatalf("submit = %v", r)
	}
	if r, err := q.RouteKill(ctx, "k1"); err != nil || !r.Queued {
		t.Fatalf("kill of a reserved, queued task = %+v, %v", r, err)
	}
	d = take(t, q)
	if c, _ := q.Claim(ctx, d, "k1"); c != queue.CancelledWhileQueued {
		t.Errorf("claim of a reserved task killed while queued = %v, want cancelled while queued", c)
	}
}

// The reservation expires after the retention time (so an id whose task
// was lost before any claim is not blocked for ever), and a tube's list is
// a list like any other.
func TestSubmitReservationExpires(t *testing.T) {
	ctx := context.Background()
	srv := redisserver.Start(t)
	q := New(redis.NewClient(&redis.Options{Addr: srv.Addr()}), Options{Names: names, ExecutorID: "a", Retention: 300 * time.Millisecond, TTL: time.Second})
	t.Cleanup(func() { q.Close() })
	list := q.TubeKey("gpu")
	if r, _ := q.Submit(ctx, list, "e1", []byte(`{"id":"e1","tube":"gpu"}`)); r != Pushed {
		t.Fatalf("submit = %v", r)
	}
	if r, _ := q.Submit(ctx, list, "e1", []byte(`{"id":"e1","tube":"gpu"}`)); r != IDReserved {
		t.Fatalf("second submit = %v, want %v", r, IDReserved)
	}
	deadline := time.Now().Add(10 * time.Second)
	for q.rdb.Exists(ctx, q.SubmittedKey("e1")).Val() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the reservation did not expire")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r, _ := q.Submit(ctx, list, "e1", []byte(`{"id":"e1","tube":"gpu"}`)); r != Pushed {
		t.Errorf("submit after the reservation expired = %v, want %v", r, Pushed)
	}
	if n := q.rdb.LLen(ctx, list).Val(); n != 2 {
		t.Errorf("tube list holds %d tasks, want 2", n)
	}
}

// Of many submits of one id at once, exactly one is pushed.
func TestSubmitRaceOnePushed(t *testing.T) {
	ctx := context.Background()
	srv := redisserver.Start(t)
	const n = 16
	results := make(chan SubmitResult, n)
	var wg sync.WaitGroup
	for range n {
		q := New(redis.NewClient(&redis.Options{Addr: srv.Addr()}), Options{Names: names})
		t.Cleanup(func() { q.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := q.Submit(ctx, "q", "r1", []byte(`{"id":"r1"}`))
			if err != nil {
				t.Error(err)
			}
			results <- r
		}()
	}
	wg.Wait()
	close(results)
	pushed := 0
	for r := range results {
		switch r {
		case Pushed:
			pushed++
		case IDReserved:
		default:
			t.Errorf("a racing submit answered %v", r)
		}
	}
	if pushed != 1 {
		t.Errorf("%d of %d racing submits were pushed, want 1", pushed, n)
	}
	if l := srv.Client(t).LLen(ctx, "q").Val(); l != 1 {
		t.Errorf("task list holds %d tasks, want 1", l)
	}
}
