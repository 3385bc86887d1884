package redisqueue

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/test/redisserver"
)

func logLine(id string, n int) []byte {
	q, _ := json.Marshal(id)
	return []byte(fmt.Sprintf(`{"id":%s,"type":"t","msg_type":"stdout","data":"line %d","seq":%d}`, q, n, n))
}

func newQueue(t testing.TB, srv *redisserver.Server, opt Options) *Queue {
	t.Helper()
	opt.Names, opt.TTL = names, time.Second
	if opt.Retention == 0 {
		opt.Retention = time.Hour
	}
	q := New(redis.NewClient(&redis.Options{Addr: srv.Addr()}), opt)
	t.Cleanup(func() { q.Close() })
	return q
}

// The shared logs list keeps its newest logs_max_len messages, while each
// task's own stream keeps all of that task's, and only that task's.
func TestLogsListBound(t *testing.T) {
	ctx := context.Background()
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	q := newQueue(t, srv, Options{ExecutorID: "a", LogsMaxLen: 10})
	var batch []queue.Message
	for n := 1; n <= 25; n++ {
		batch = append(batch, queue.Message{Log: logLine("A", n)}, queue.Message{Log: logLine(`B"1`, n)})
		if n%5 == 0 { // several publishes, as the executor does
			if _, err := q.Publish(ctx, batch); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
	}
	items, err := rdb.LRange(ctx, "q_logs", 0, -1).Result()
	if err != nil || len(items) != 10 {
		t.Fatalf("the logs list holds %d messages (%v), want logs_max_len = 10", len(items), err)
	}
	if items[9] != string(logLine(`B"1`, 25)) || items[0] != string(logLine("A", 21)) {
		t.Errorf("the list kept the wrong end: first %s, last %s", items[0], items[9])
	}
	for _, id := range []string{"A", `B"1`} {
		b, err := q.ReadLogs(ctx, id, "", 0)
		if err != nil || len(b.Messages) != 25 {
			t.Fatalf("ReadLogs(%q) = %d messages, %v; want 25", id, len(b.Messages), err)
		}
		for i, m := range b.Messages {
			if want := logLine(id, i+1); string(m) != string(want) {
				t.Fatalf("ReadLogs(%q)[%d] = %s, want %s", id, i, m, want)
			}
		}
		if more, err := q.ReadLogs(ctx, id, b.Next, 0); err != nil || len(more.Messages) != 0 {
			t.Errorf("reading %q again from %s = %d messages, %v; want none", id, b.Next, len(more.Messages), err)
		}
		if ttl := rdb.PTTL(ctx, q.TaskLogsKey(id)).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
			t.Errorf("%q's stream expires in %v, want the status retention (1h)", id, ttl)
		}
	}

	unbounded := newQueue(t, srv, Options{ExecutorID: "b", LogsMaxLen: -1})
	rdb.Del(ctx, "q_logs")
	for range 3 {
		if _, err := unbounded.Publish(ctx, []queue.Message{{Log: logLine("C", 1)}, {Log: logLine("C", 2)}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := rdb.LLen(ctx, "q_logs").Val(); n != 6 {
		t.Errorf("with logs_max_len < 0 the list holds %d messages, want all 6", n)
	}
}

// A task's done reaches its stream only when the finish took effect.
func TestTaskStreamGetsOnlyTheRealDone(t *testing.T) {
	ctx := context.Background()
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	a := newQueue(t, srv, Options{ExecutorID: "a"})
	b := newQueue(t, srv, Options{ExecutorID: "b"})
	rdb.RPush(ctx, "q", `{"id":"7"}`)
	d := take(t, a)
	if c, err := a.Claim(ctx, d, "7"); c != queue.Claimed || err != nil {
		t.Fatalf("claim = %v, %v", c, err)
	}
	// b never held 7: its line and its finish are refused, and must not
	// reach 7's readers.
	if _, err := b.Publish(ctx, []queue.Message{{Log: logLine("7", 1)}, finish("7", d, true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Publish(ctx, []queue.Message{{Log: logLine("7", 2)}, finish("7", d, true)}); err != nil {
		t.Fatal(err)
	}
	got, err := a.ReadLogs(ctx, "7", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{string(logLine("7", 2)), `{"id":"7"}`}
	if len(got.Messages) != len(want) {
		t.Fatalf("7's stream = %q, want %q", got.Messages, want)
	}
	for i := range want {
		if string(got.Messages[i]) != want[i] {
			t.Errorf("7's stream[%d] = %s, want %s", i, got.Messages[i], want[i])
		}
	}
}

// A follower blocked on a task's stream wakes with its next batch.
func TestReadLogsBlocks(t *testing.T) {
	ctx := context.Background()
	srv := redisserver.Start(t)
	q := newQueue(t, srv, Options{ExecutorID: "a"})
	if _, err := q.Publish(ctx, []queue.Message{{Log: logLine("9", 1)}}); err != nil {
		t.Fatal(err)
	}
	first, err := q.ReadLogs(ctx, "9", "", 0)
	if err != nil || len(first.Messages) != 1 {
		t.Fatalf("ReadLogs = %d, %v", len(first.Messages), err)
	}
	if has, err := q.HasLogs(ctx, "nine"); has || err != nil {
		t.Errorf("HasLogs(unknown) = %v, %v", has, err)
	}
	got := make(chan LogBatch, 1)
	go func() {
		b, _ := q.ReadLogs(ctx, "9", first.Next, 5*time.Second)
		got <- b
	}()
	// Publish until the follower has seen it: it may not be blocked yet.
	deadline := time.Now().Add(5 * time.Second)
	for n := 2; ; n++ {
		if _, err := q.Publish(ctx, []queue.Message{{Log: logLine("9", n)}}); err != nil {
			t.Fatal(err)
		}
		select {
		case b := <-got:
			if len(b.Messages) == 0 || !strings.Contains(string(b.Messages[0]), `"line 2"`) {
				t.Fatalf("the follower got %q, want line 2 first", b.Messages)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the follower never woke")
		}
	}
}

// BenchmarkPublishLines measures shipping output in the executor's batch
// size (256 lines), over the shared list, the trim and each task's stream.
func BenchmarkPublishLines(b *testing.B) {
	ctx := context.Background()
	srv := redisserver.Start(b)
	q := newQueue(b, srv, Options{ExecutorID: "bench"})
	batch := make([]queue.Message, 256)
	for i := range batch {
		batch[i] = queue.Message{Log: logLine(fmt.Sprint("t", i%4), i)}
	}
	b.ResetTimer()
	for range b.N {
		if _, err := q.Publish(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "lines/s")
}
