package redisqueue

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"

	"github.com/taskjob/task-job/task"
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

	if res, err := q.Move(ctx, 100, "q", 0, dst, "*", ""); err != nil || res != Moved {
		t.Fatalf("move with token 100: %q, %v", res, err)
	}
	if got := rdb.Get(ctx, q.EpochKey()).Val(); got != "100" {
		t.Errorf("epoch %q after token 100", got)
	}
	if _, err := q.Move(ctx, 99, "q", 0, dst, "*", ""); !errors.Is(err, ErrFenced) {
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
	if _, err := q.Move(ctx, 100, "q", 0, dst, "*", ""); !errors.Is(err, ErrFenced) {
		t.Fatalf("the first leader's token after a newer claimed the epoch: %v, want fenced", err)
	}
	if res, err := q.Move(ctx, 200, "q", 0, dst, "*", ""); err != nil || res != Moved {
		t.Fatalf("move with token 200: %q, %v", res, err)
	}
	if got := rdb.Get(ctx, q.RefusedKey()).Val(); got != "4" {
		t.Errorf("refused count %q after four refused calls", got)
	}
	// Given back to the head of q, in order.
	if n, err := q.ReturnAssigned(ctx, 200, "ex1"); err != nil || n != 2 {
		t.Fatalf("return: %d, %v", n, err)
	}
	if got := rdb.LRange(ctx, "q", 0, -1).Val(); !reflect.DeepEqual(got, []string{`{"id":"a"}`, `{"id":"b"}`, `{"id":"c"}`}) {
		t.Errorf("after the return q = %v", got)
	}
	if res, err := q.Move(ctx, 200, "empty", 0, dst, "*", ""); err != nil || res != Empty {
		t.Errorf("move from an empty list: %q, %v", res, err)
	}
}

// The placement of the first tasks of a list is read in Redis: tube and
// constraints, none for a message that is not JSON, too big or invalid;
// a task whose placement changed since it was looked at is not moved to
// an executor chosen for another.
func TestPeekAndChangedHead(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	q := tubeQueue(t, srv, "peek")
	if hs, err := q.Peek(ctx, "q", 8); len(hs) != 0 || err != nil {
		t.Fatalf("empty list: %v, %v", hs, err)
	}
	rdb.RPush(ctx, "q", `{"id":"a","tube":"gpu"}`)
	if hs, err := q.Peek(ctx, "q", 8); err != nil || len(hs) != 1 || hs[0].Tube != "gpu" || hs[0].Constraints != nil {
		t.Fatalf("peek: %+v %v", hs, err)
	}
	if res, err := q.Move(ctx, 1, "q", 0, q.AssignedKey("x"), "\n", ""); err != nil || res != Changed {
		t.Fatalf("move expecting the untubed head: %q, %v", res, err)
	}
	rdb.Del(ctx, "q")
	rdb.RPush(ctx, "q", `{"id":"b","tube":"bad tube"}`, `not json`, string(make([]byte, 2<<20)),
		`{"id":"c","tube":"gpu","constraints":{"zone":"b","gpu":"a100"}}`,
		`{"id":"d","constraints":{"gpu":1}}`, `{"id":"e","constraints":{"g p u":"x"}}`, `{"id":"f","constraints":["gpu"]}`)
	hs, err := q.Peek(ctx, "q", 5)
	if err != nil || len(hs) != 5 {
		t.Fatalf("peek 5: %+v, %v", hs, err)
	}
	for i, h := range hs {
		if i == 3 {
			if h.Tube != "gpu" || !maps.Equal(h.Constraints, map[string]string{"gpu": "a100", "zone": "b"}) || h.Key != "gpu\ngpu=a100\nzone=b\n" {
				t.Errorf("task %d: %+v", i, h)
			}
			continue
		}
		if h.Tube != "" || h.Constraints != nil || h.Key != "\n" {
			t.Errorf("task %d: %+v, want no tube and no constraints", i, h)
		}
	}
	hs, _ = q.Peek(ctx, "q", 10)
	for _, h := range hs[5:] {
		if h.Constraints != nil || h.Key != "\n" {
			t.Errorf("invalid constraints read as %+v, want none (the executor rejects the task)", h)
		}
	}
	// From the middle: the others keep their order.
	dst := q.AssignedKey("x")
	if res, err := q.Move(ctx, 1, "q", 3, dst, hs[3].Key, ""); err != nil || res != Moved {
		t.Fatalf("move of the fourth: %q, %v", res, err)
	}
	if got := rdb.LRange(ctx, dst, 0, -1).Val(); len(got) != 1 || !strings.Contains(got[0], `"id":"c"`) {
		t.Errorf("assigned %v", got)
	}
	got := rdb.LRange(ctx, "q", 0, -1).Val()
	if len(got) != 6 || got[0] != `{"id":"b","tube":"bad tube"}` || got[1] != `not json` || len(got[2]) != 2<<20 || got[3] != `{"id":"d","constraints":{"gpu":1}}` {
		t.Errorf("left behind: %d tasks, %q…", len(got), got[:2])
	}
	if res, err := q.Move(ctx, 1, "q", 9, dst, "*", ""); err != nil || res != Empty {
		t.Errorf("move past the end: %q, %v", res, err)
	}
}

// A waiting reason is written to a queued task's status, fenced, only
// while no executor has claimed it; the move that assigns it clears it,
// and so does a claim.
func TestWaitingNotes(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	q := tubeQueue(t, srv, "notes")
	rdb.RPush(ctx, "q", `{"id":"w1","constraints":{"gpu":"a100"},"task":{"cmdline":"x"}}`, `{"id":"w2","task":{"cmdline":"x"}}`, `not json`)
	rdb.HSet(ctx, q.StatusKey("w2"), "state", "running", "executor", "e")
	hs, _ := q.Peek(ctx, "q", 3)
	notes := []Note{{Index: 0, Key: hs[0].Key, Text: "no gpu"}, {Index: 1, Key: hs[1].Key, Text: "x"}, {Index: 2, Key: hs[2].Key, Text: "y"},
		{Index: 1, Key: hs[0].Key, Text: "a stale look"}}
	if n, err := q.NoteWaiting(ctx, 5, "q", notes); err != nil || n != 1 {
		t.Fatalf("notes written: %d, %v; want 1 (w1's)", n, err)
	}
	st, _ := q.Status(ctx, "w1")
	if st == nil || st.Waiting != "no gpu" || st.State != task.Queued {
		t.Fatalf("w1's status %+v", st)
	}
	if ttl := rdb.PTTL(ctx, q.StatusKey("w1")).Val(); ttl <= 0 {
		t.Errorf("a note's own hash has no expiry: %v", ttl)
	}
	if w := rdb.HGet(ctx, q.StatusKey("w2"), "waiting").Val(); w != "" {
		t.Errorf("a running task got a note: %q", w)
	}
	if n, _ := q.NoteWaiting(ctx, 5, "q", notes[:1]); n != 0 {
		t.Errorf("the same note again wrote %d", n)
	}
	if _, err := q.NoteWaiting(ctx, 4, "q", notes[:1]); !errors.Is(err, ErrFenced) {
		t.Errorf("a note with an older token: %v, want fenced", err)
	}
	// Moved on to a list where it waits: the note changes; assigned: gone.
	if res, err := q.Move(ctx, 5, "q", 0, "q:tube:other", hs[0].Key, "later"); err != nil || res != Moved {
		t.Fatal(res, err)
	}
	if w := rdb.HGet(ctx, q.StatusKey("w1"), "waiting").Val(); w != "later" {
		t.Errorf("note after a move with one: %q", w)
	}
	if res, err := q.Move(ctx, 5, "q:tube:other", 0, q.AssignedKey("e"), "*", ""); err != nil || res != Moved {
		t.Fatal(res, err)
	}
	if n := rdb.Exists(ctx, q.StatusKey("w1")).Val(); n != 0 {
		t.Errorf("assigned, w1 still has a status: %v", rdb.HGetAll(ctx, q.StatusKey("w1")).Val())
	}
	// A claim clears a note too.
	rdb.HSet(ctx, q.StatusKey("w3"), "waiting", "full")
	if r, err := claimScript.Run(ctx, rdb, []string{q.StatusKey("w3"), "kills"}, "e", "1", "tok", "w3").Int(); err != nil || r != 1 {
		t.Fatal(r, err)
	}
	if w := rdb.HGet(ctx, q.StatusKey("w3"), "waiting").Val(); w != "" {
		t.Errorf("claimed, still waiting %q", w)
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

// MoveMany makes its moves in turn in one script: an index counts the
// list as the moves before it left it, a move whose task's placement is
// not the one expected moves nothing (and the others still happen), and
// an older token moves nothing at all.
func TestMoveManyInTurn(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	q := tubeQueue(t, srv, "many")
	rdb.RPush(ctx, "q", `{"id":"a"}`, `{"id":"b","tube":"gpu"}`, `{"id":"c"}`, `{"id":"d"}`)
	x, y := q.AssignedKey("x"), q.AssignedKey("y")
	res, err := q.MoveMany(ctx, 10, "q", []MoveOp{
		{Index: 0, Dst: x, Expect: "\n"}, // a
		{Index: 0, Dst: y, Expect: "\n"}, // b (now at 0) is not this key: changed, stays
		{Index: 1, Dst: y, Expect: "\n"}, // c
		{Index: 1, Dst: x, Expect: "*"},  // d
		{Index: 1, Dst: x, Expect: "*"},  // nothing left at 1
	})
	if err != nil || !reflect.DeepEqual(res, []string{Moved, Changed, Moved, Moved, Empty}) {
		t.Fatalf("MoveMany: %v, %v", res, err)
	}
	if got := rdb.LRange(ctx, "q", 0, -1).Val(); !reflect.DeepEqual(got, []string{`{"id":"b","tube":"gpu"}`}) {
		t.Errorf("q = %v", got)
	}
	if got := rdb.LRange(ctx, x, 0, -1).Val(); !reflect.DeepEqual(got, []string{`{"id":"a"}`, `{"id":"d"}`}) {
		t.Errorf("x = %v", got)
	}
	if got := rdb.LRange(ctx, y, 0, -1).Val(); !reflect.DeepEqual(got, []string{`{"id":"c"}`}) {
		t.Errorf("y = %v", got)
	}
	heads, counts, err := q.PeekCounting(ctx, "q", 32, []string{"x", "y", "z"})
	if err != nil || len(heads) != 1 || heads[0].Tube != "gpu" || !reflect.DeepEqual(counts, map[string]int{"x": 2, "y": 1, "z": 0}) {
		t.Errorf("PeekCounting: %+v %v %v", heads, counts, err)
	}
	if err := q.ClaimEpoch(ctx, 20); err != nil {
		t.Fatal(err)
	}
	if _, err := q.MoveMany(ctx, 10, "q", []MoveOp{{Index: 0, Dst: x, Expect: "*"}}); !errors.Is(err, ErrFenced) {
		t.Fatalf("MoveMany with an older token: %v, want fenced", err)
	}
	if n := rdb.LLen(ctx, "q").Val(); n != 1 {
		t.Errorf("the fenced MoveMany moved something: %d left", n)
	}
}
