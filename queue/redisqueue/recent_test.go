package redisqueue

import (
	"context"
	"testing"

	"github.com/taskjob/task-job/queue"
)

// The index gets an entry and a message copy at the claim, keeps its first
// score when a duplicate is claimed, survives a script cache flush, and its
// copy gets a lifetime when the task ends.
func TestRecentIndex(t *testing.T) {
	ctx := context.Background()
	rdb, qs := setup(t, "a")
	q := qs["a"]
	rdb.RPush(ctx, "q", `{"id":"1"}`, `{"id":"2"}`)
	d1 := take(t, q)
	if c, err := q.Claim(ctx, d1, "1"); c != queue.Claimed || err != nil {
		t.Fatalf("claim = %v, %v", c, err)
	}
	first := rdb.ZScore(ctx, "q:recent", "1").Val()
	if first == 0 {
		t.Fatal("the claim did not add the id to q:recent")
	}
	if got := rdb.Get(ctx, "q:task:1").Val(); got != `{"id":"1"}` {
		t.Errorf("q:task:1 = %q, want the message", got)
	}
	rdb.ScriptFlush(ctx) // as after a Redis restart: the claim must still work
	d2 := take(t, q)
	if c, err := q.Claim(ctx, d2, "2"); c != queue.Claimed || err != nil {
		t.Fatalf("claim after a script flush = %v, %v", c, err)
	}
	if rdb.ZScore(ctx, "q:recent", "2").Val() == 0 {
		t.Error("the claim after a script flush did not index the id")
	}
	if ttl := rdb.PTTL(ctx, "q:task:2").Val(); ttl <= 0 {
		t.Errorf("q:task:2 has no lifetime (%v): it would outlive retention", ttl)
	}
	if _, err := q.Publish(ctx, []queue.Message{finish("1", d1, true)}); err != nil {
		t.Fatal(err)
	}
	if s := rdb.ZScore(ctx, "q:recent", "1").Val(); s != first {
		t.Errorf("the end moved the entry from %v to %v: the list would reorder", first, s)
	}
	if ttl := rdb.PTTL(ctx, "q:task:1").Val(); ttl <= 0 {
		t.Errorf("q:task:1 after the end has no lifetime (%v)", ttl)
	}
}
