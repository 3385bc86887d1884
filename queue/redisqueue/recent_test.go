package redisqueue

import (
	"context"
	"strings"
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

// A running task's rule is written to its status while the delivery owns
// the id, and never by another delivery, after the done, or after a peer
// reported the task lost.
func TestNoteRule(t *testing.T) {
	ctx := context.Background()
	rdb, qs := setup(t, "a", "b")
	q := qs["a"]
	rdb.RPush(ctx, "q", `{"id":"1"}`, `{"id":"1"}`, `{"id":"2"}`)
	d1, dup, d2 := take(t, q), take(t, qs["b"]), take(t, q)
	q.Claim(ctx, d1, "1")
	q.Claim(ctx, d2, "2")
	if c, _ := qs["b"].Claim(ctx, dup, "1"); c != queue.Duplicate {
		t.Fatalf("the second copy was claimed: %v", c)
	}
	var _ queue.RuleNoter = q
	if err := q.NoteRule(ctx, d1, "1", "deploy", []string{"LANG=C", "API_KEY=********"}); err != nil {
		t.Fatal(err)
	}
	if got := rdb.HGet(ctx, "q:status:1", "rule").Val(); got != "deploy" {
		t.Errorf("rule = %q, want deploy", got)
	}
	if got := rdb.HGet(ctx, "q:status:1", "env").Val(); got != `["LANG=C","API_KEY=********"]` {
		t.Errorf("env = %q", got)
	}
	// The duplicate's executor, with its own token, changes nothing.
	if err := qs["b"].NoteRule(ctx, dup, "1", "other", []string{"X=1"}); err != nil {
		t.Fatal(err)
	}
	if h := rdb.HGetAll(ctx, "q:status:1").Val(); h["rule"] != "deploy" || strings.Contains(h["env"], "X=1") {
		t.Errorf("after another delivery's note: %v", h)
	}
	// The done keeps the rule; a note after it is ignored.
	if _, err := q.Publish(ctx, []queue.Message{finish("1", d1, true)}); err != nil {
		t.Fatal(err)
	}
	if err := q.NoteRule(ctx, d1, "1", "late", nil); err != nil {
		t.Fatal(err)
	}
	if h := rdb.HGetAll(ctx, "q:status:1").Val(); h["rule"] != "deploy" || h["state"] != "succeeded" {
		t.Errorf("after the done: %v", h)
	}
	// Reported lost by a peer: the paused executor's note is fenced off.
	if err := q.Join(ctx); err != nil {
		t.Fatal(err)
	}
	rdb.Del(ctx, "q:executor:a")
	if _, err := qs["b"].Recover(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := q.NoteRule(ctx, d2, "2", "late", []string{"X=1"}); err != nil {
		t.Fatal(err)
	}
	if h := rdb.HGetAll(ctx, "q:status:2").Val(); h["rule"] != "" || h["env"] != "" || h["state"] != "lost" {
		t.Errorf("a lost task got a rule: %v", h)
	}
}
