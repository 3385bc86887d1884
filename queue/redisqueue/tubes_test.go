package redisqueue

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/redisserver"
)

func tubeQueue(t *testing.T, srv *redisserver.Server, name string, tubes ...string) *Queue {
	t.Helper()
	q := New(redis.NewClient(&redis.Options{Addr: srv.Addr()}),
		Options{Names: names, ExecutorID: fmt.Sprintf("%s-%d", name, os.Getpid()), Retention: time.Hour, TTL: time.Second, Tubes: tubes})
	if err := q.Join(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// takeNow takes with a short deadline; nil when nothing is there.
func takeNow(t *testing.T, q *Queue) *queue.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	d, err := q.Take(ctx)
	if err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	return d
}

func TestTubesTakenInPriorityOrder(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	q := tubeQueue(t, srv, "prio", "deploy", "build", "")
	rdb.RPush(ctx, "q", `{"id":"plain"}`)
	rdb.RPush(ctx, "q:tube:build", `{"id":"b1","tube":"build"}`, `{"id":"b2","tube":"build"}`)
	rdb.RPush(ctx, "q:tube:deploy", `{"id":"d1","tube":"deploy"}`)
	rdb.RPush(ctx, "q:tube:other", `{"id":"o1","tube":"other"}`)
	var got []string
	for d := takeNow(t, q); d != nil; d = takeNow(t, q) {
		got = append(got, d.Tube+"/"+string(d.Raw)[7:9])
	}
	if want := []string{"deploy/d1", "build/b1", "build/b2", "/pl"}; !reflect.DeepEqual(got, want) {
		t.Errorf("taken %v, want %v", got, want)
	}
	if n := rdb.LLen(ctx, "q:tube:other").Val(); n != 1 {
		t.Errorf("a tube this executor does not serve lost a task: %d left", n)
	}
}

// A task with a tube pushed to the untubed list goes to its tube's list;
// one with no, an empty or an invalid tube is taken from the untubed list
// as before (the executor refuses the invalid one).
func TestTubedTaskOnTheUntubedListIsRouted(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	plain := tubeQueue(t, srv, "plain")
	build := tubeQueue(t, srv, "build", "build")
	rdb.RPush(ctx, "q", `{"id":"1","tube":"build"}`, `{"id":"2","tube":"gpu"}`, `{"id":"3","tube":""}`,
		`{"id":"4","tube":"no spaces"}`, `not json`, `{"id":"5"}`)
	if d := takeNow(t, build); d != nil {
		t.Fatalf("an executor serving only build took %s first", d.Raw)
	}
	var got []string
	for d := takeNow(t, plain); d != nil; d = takeNow(t, plain) {
		got = append(got, string(d.Raw))
	}
	if want := []string{`{"id":"3","tube":""}`, `{"id":"4","tube":"no spaces"}`, `not json`, `{"id":"5"}`}; !reflect.DeepEqual(got, want) {
		t.Errorf("the untubed executor took %q, want %q", got, want)
	}
	d := takeNow(t, build)
	if d == nil || string(d.Raw) != `{"id":"1","tube":"build"}` || d.Tube != "build" {
		t.Fatalf("build executor took %+v", d)
	}
	if got := rdb.LRange(ctx, "q:tube:gpu", 0, -1).Val(); !reflect.DeepEqual(got, []string{`{"id":"2","tube":"gpu"}`}) {
		t.Errorf("tube gpu holds %q", got)
	}
	// Put back, it goes to the head of the list it came from.
	rdb.RPush(ctx, "q:tube:build", `{"id":"later","tube":"build"}`)
	if err := build.Requeue(ctx, d); err != nil {
		t.Fatal(err)
	}
	if got := rdb.LIndex(ctx, "q:tube:build", 0).Val(); got != `{"id":"1","tube":"build"}` {
		t.Errorf("requeued to the head of q:tube:build? head is %q", got)
	}
}

func TestWaitingTakeWakesOnAnyServedTube(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	q := tubeQueue(t, srv, "wake", "a", "b")
	got := make(chan time.Time, 1)
	done := make(chan struct{})
	go func() { defer close(done); takeLoop(ctx, t, q, got) }()
	defer func() { cancel(); <-done }()
	for _, key := range []string{"q:tube:b", "q:tube:a", "q:tube:b"} {
		waitArmed(t, q)
		t0 := time.Now()
		rdb.RPush(ctx, key, `{"id":"x"}`)
		select {
		case t1 := <-got:
			if d := t1.Sub(t0); d > 200*time.Millisecond {
				t.Errorf("push to %s taken after %v", key, d)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("push to %s not taken", key)
		}
	}
}

// Status sees a tube nobody serves, and which live executors serve the rest.
func TestTubeStates(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	b := tubeQueue(t, srv, "st", "build", "")
	takeNow(t, b) // announces what it serves
	rdb.RPush(ctx, "q:tube:gpu", `{"id":"g1","tube":"gpu"}`, `{"id":"g2","tube":"gpu"}`)
	st, err := b.TubeStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	me := []string{b.opt.ExecutorID}
	want := []TubeState{
		{Tube: "", Key: "q", Waiting: 0, Servers: me},
		{Tube: "build", Key: "q:tube:build", Waiting: 0, Servers: me},
		{Tube: "gpu", Key: "q:tube:gpu", Waiting: 2},
	}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("TubeStates = %+v\nwant %+v", st, want)
	}
	if tube, pos, ok, err := b.FindQueued(ctx, "g2", st); err != nil || !ok || tube != "gpu" || pos != 1 {
		t.Errorf("FindQueued(g2) = %q %d %v %v", tube, pos, ok, err)
	}
	// Gone from the registry, it serves nothing.
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ = b.TubeStates(ctx)
	for _, s := range st {
		if len(s.Servers) > 0 {
			t.Errorf("after Leave, %q is served by %v", s.Tube, s.Servers)
		}
	}
}

// A dead executor's untouched tubed task goes back to its tube's list.
func TestRecoverRequeuesToTheTube(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	dead := tubeQueue(t, srv, "dead", "build")
	peer := tubeQueue(t, srv, "peer", "")
	rdb.RPush(ctx, "q:tube:build", `{"id":"r1","tube":"build"}`)
	if d := takeNow(t, dead); d == nil {
		t.Fatal("nothing taken")
	}
	rdb.Del(ctx, dead.liveness(dead.opt.ExecutorID))
	r, err := peer.Recover(ctx, dead.opt.ExecutorID)
	if err != nil || r.Requeued != 1 {
		t.Fatalf("Recover = %+v, %v", r, err)
	}
	if got := rdb.LRange(ctx, "q:tube:build", 0, -1).Val(); !reflect.DeepEqual(got, []string{`{"id":"r1","tube":"build"}`}) {
		t.Errorf("q:tube:build = %q", got)
	}
}

// A kill reaches a queued task wherever it waits: in a tube's list (served
// or not) or in an executor's assigned list, where a dispatcher put it. It
// ends at once, killed, with its done, instead of when someone takes it.
func TestRemoveQueuedFindsTubesAndAssignedLists(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	q := tubeQueue(t, srv, "rq", "build", "")
	takeNow(t, q) // announces what it serves
	d := tubeQueue(t, srv, "rq-dispatched")
	rdb.RPush(ctx, "q:tube:build", `{"id":"b1","tube":"build"}`)
	rdb.RPush(ctx, "q:tube:nobody", `{"id":"n1","tube":"nobody"}`)
	rdb.RPush(ctx, d.AssignedKey(d.opt.ExecutorID), `{"id":"a1"}`)
	for _, c := range []struct{ id, list string }{{"b1", "q:tube:build"}, {"n1", "q:tube:nobody"}, {"a1", d.AssignedKey(d.opt.ExecutorID)}} {
		removed, err := q.RemoveQueued(ctx, c.id, func(raw []byte) *queue.Finish {
			return &queue.Finish{ID: c.id, State: task.Killed, Done: []byte(`{"id":"` + c.id + `","msg_type":"done"}`), Raw: raw}
		})
		if err != nil || !removed {
			t.Errorf("RemoveQueued(%s) = %v, %v; want it taken out of %s", c.id, removed, err, c.list)
		}
		if n := rdb.LLen(ctx, c.list).Val(); n != 0 {
			t.Errorf("%s still holds %d after the kill of %s", c.list, n, c.id)
		}
		if st, _ := q.Status(ctx, c.id); st == nil || st.State != task.Killed {
			t.Errorf("status of %s = %+v, want killed", c.id, st)
		}
	}
}

// A kill whose scan starts while the task is in the task list, and which a
// dispatcher then moves to a tube's list that did not exist when the lists
// were named, still finds it there: nobody serves that tube, so a miss
// would leave the task waiting for ever with no done.
func TestRemoveQueuedFollowsATaskMovedToANewList(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	q := tubeQueue(t, srv, "rq", "")
	rdb.RPush(ctx, "q", `{"id":"m1","tube":"nobody"}`)
	q.beforeScan = func(list string) {
		if list == "q" {
			rdb.LMove(ctx, "q", "q:tube:nobody", "LEFT", "RIGHT") // the dispatcher's move
		}
	}
	removed, err := q.RemoveQueued(ctx, "m1", func(raw []byte) *queue.Finish {
		return &queue.Finish{ID: "m1", State: task.Killed, Done: []byte(`{"id":"m1","msg_type":"done"}`), Raw: raw}
	})
	if err != nil || !removed {
		t.Fatalf("RemoveQueued = %v, %v; want the task taken out of the tube's list it moved to", removed, err)
	}
	if n := rdb.LLen(ctx, "q:tube:nobody").Val(); n != 0 {
		t.Errorf("q:tube:nobody still holds %d", n)
	}
}
