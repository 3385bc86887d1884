package redisqueue

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/taskjob/task-job/test/redisserver"
)

// A move with a token older than the epoch is refused and moves nothing;
// the same or a newer token moves, and a newer one raises the epoch.
func TestFencedMoveRefusesAnOldToken(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	q := tubeQueue(t, srv, "disp")
	rdb.RPush(ctx, "q", `{"id":"a"}`, `{"id":"b"}`, `{"id":"c"}`)
	dst := q.AssignedKey("ex1")

	if res, err := q.MoveHead(ctx, 100, "q", dst, ""); err != nil || res != Moved {
		t.Fatalf("move with token 100: %q, %v", res, err)
	}
	if got := rdb.Get(ctx, q.EpochKey()).Val(); got != "100" {
		t.Errorf("epoch %q after token 100", got)
	}
	if _, err := q.MoveHead(ctx, 99, "q", dst, "*"); !errors.Is(err, ErrFenced) {
		t.Fatalf("move with the older token 99: %v, want fenced", err)
	}
	if _, err := q.ReturnAssigned(ctx, 99, "ex1"); !errors.Is(err, ErrFenced) {
		t.Fatalf("return with the older token 99: %v, want fenced", err)
	}
	if err := q.ClaimEpoch(ctx, 99); !errors.Is(err, ErrFenced) {
		t.Fatalf("claiming the epoch with 99: %v, want fenced", err)
	}
	if got := rdb.LRange(ctx, "q", 0, -1).Val(); !reflect.DeepEqual(got, []string{`{"id":"b"}`, `{"id":"c"}`}) {
		t.Errorf("the refused calls moved something: q = %v", got)
	}
	if got := rdb.LRange(ctx, dst, 0, -1).Val(); !reflect.DeepEqual(got, []string{`{"id":"a"}`}) {
		t.Errorf("assigned = %v", got)
	}
	if err := q.ClaimEpoch(ctx, 200); err != nil {
		t.Fatal(err)
	}
	if _, err := q.MoveHead(ctx, 100, "q", dst, "*"); !errors.Is(err, ErrFenced) {
		t.Fatalf("the first leader's token after a newer claimed the epoch: %v, want fenced", err)
	}
	if res, err := q.MoveHead(ctx, 200, "q", dst, "*"); err != nil || res != Moved {
		t.Fatalf("move with token 200: %q, %v", res, err)
	}
	// Given back to the head of q, in order.
	if n, err := q.ReturnAssigned(ctx, 200, "ex1"); err != nil || n != 2 {
		t.Fatalf("return: %d, %v", n, err)
	}
	if got := rdb.LRange(ctx, "q", 0, -1).Val(); !reflect.DeepEqual(got, []string{`{"id":"a"}`, `{"id":"b"}`, `{"id":"c"}`}) {
		t.Errorf("after the return q = %v", got)
	}
	if res, err := q.MoveHead(ctx, 200, "empty", dst, "*"); err != nil || res != Empty {
		t.Errorf("move from an empty list: %q, %v", res, err)
	}
}

// The head's tube is read in Redis; a head that changed since it was
// looked at is not moved to an executor chosen for another tube.
func TestPeekTubeAndChangedHead(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	q := tubeQueue(t, srv, "peek")
	if _, ok, err := q.PeekTube(ctx, "q"); ok || err != nil {
		t.Fatalf("empty list: %v, %v", ok, err)
	}
	rdb.RPush(ctx, "q", `{"id":"a","tube":"gpu"}`)
	if tube, ok, err := q.PeekTube(ctx, "q"); tube != "gpu" || !ok || err != nil {
		t.Fatalf("peek: %q %v %v", tube, ok, err)
	}
	if res, err := q.MoveHead(ctx, 1, "q", q.AssignedKey("x"), ""); err != nil || res != Changed {
		t.Fatalf("move expecting the untubed head: %q, %v", res, err)
	}
	rdb.LPush(ctx, "q", `{"id":"b","tube":"bad tube"}`, `not json`, string(make([]byte, 2<<20)))
	for _, want := range []string{"", "", ""} {
		tube, ok, err := q.PeekTube(ctx, "q")
		if tube != want || !ok || err != nil {
			t.Fatalf("peek: %q %v %v, want %q", tube, ok, err, want)
		}
		rdb.LPop(ctx, "q")
	}
}

// A dispatched executor takes only from its assigned list, and a task it
// puts back returns to its tube's list.
func TestDispatchedExecutorTakesItsAssignedList(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	q := tubeQueue(t, srv, "dispatched", "build", "")
	q.opt.Dispatched = true
	rdb.RPush(ctx, "q", `{"id":"shared"}`)
	rdb.RPush(ctx, "q:tube:build", `{"id":"tubed","tube":"build"}`)
	if d := takeNow(t, q); d != nil {
		t.Fatalf("took %s from a shared list", d.Raw)
	}
	rdb.RPush(ctx, q.AssignedKey(q.opt.ExecutorID), `{"id":"mine","tube":"build"}`)
	d := takeNow(t, q)
	if d == nil || string(d.Raw) != `{"id":"mine","tube":"build"}` || d.Tube != "build" {
		t.Fatalf("took %+v", d)
	}
	if err := q.Requeue(ctx, d); err != nil {
		t.Fatal(err)
	}
	if got := rdb.LIndex(ctx, "q:tube:build", 0).Val(); got != string(d.Raw) {
		t.Errorf("put back to %q's head: %q", "q:tube:build", got)
	}
}
