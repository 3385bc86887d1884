package kafkaqueue

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
)

func openClient(t *testing.T, c *kfake.Cluster, names Names) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := NewClient(ctx, c.ListenAddrs(), nil, ClientConfig{Names: names, TTL: time.Second, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// The client reads one partition per id: it must be the one the
// executors' producer puts the id's records in.
func TestClientPartitionOfID(t *testing.T) {
	c := startKafka(t)
	q := open(t, c, testNames(), execID("a"), func(o *Options) { o.Partitions = 6 })
	cl := openClient(t, c, q.opt.Names)
	seen := map[int32]bool{}
	for i := range 64 {
		id := fmt.Sprintf("id-%d", i)
		r, err := q.produce(context.Background(), &kgo.Record{Topic: q.topics.Logs, Key: []byte(id), Value: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		if p := cl.partition(q.topics.Logs, id); p != r.Partition {
			t.Fatalf("%s: produced to partition %d, client reads %d", id, r.Partition, p)
		}
		seen[r.Partition] = true
	}
	if len(seen) < 3 {
		t.Fatalf("64 ids in only %d of 6 partitions", len(seen))
	}
}

// The client's submit, status, kill and log reads against an executor's
// side of the queue.
func TestClientLifecycle(t *testing.T) {
	c := startKafka(t)
	q := open(t, c, testNames(), execID("a"))
	cl := openClient(t, c, q.opt.Names)
	ctx := context.Background()

	raw := []byte(`{"id":"c1","type":"t","tube":"","task":{"cmdline":"x.sh","timeout":0}}`)
	if res, err := cl.SubmitTask(ctx, "c1", "", raw); err != nil || res != queue.Pushed {
		t.Fatalf("submit: %v %v", res, err)
	}
	// Not claimed yet: unknown, and a read of its logs starts at the end.
	if st, err := cl.Status(ctx, "c1"); err != nil || st != nil {
		t.Fatalf("status before the claim: %+v %v", st, err)
	}
	first, err := cl.ReadLogs(ctx, "c1", "", 0)
	if err != nil || len(first.Messages) != 0 {
		t.Fatalf("logs before the claim: %+v %v", first, err)
	}
	d := take(t, q)
	if string(d.Raw) != string(raw) {
		t.Fatalf("took %q", d.Raw)
	}
	if got, err := q.Claim(ctx, d, "c1"); err != nil || got != queue.Claimed {
		t.Fatalf("claim: %v %v", got, err)
	}
	if state, exec, err := cl.State(ctx, "c1"); err != nil || state != string(task.Running) || exec != q.opt.ExecutorID {
		t.Fatalf("state while running: %q %q %v", state, exec, err)
	}
	// A second submit of a claimed id is refused.
	if res, err := cl.SubmitTask(ctx, "c1", "", raw); err != nil || res != queue.IDUsed {
		t.Fatalf("second submit: %v %v", res, err)
	}
	// A follower that started before the claim gets the line and the done.
	line := []byte(`{"id":"c1","msg_type":"stdout","data":"hi","seq":1}`)
	if _, err := q.Publish(ctx, []queue.Message{{Log: line}}); err != nil {
		t.Fatal(err)
	}
	b, err := cl.ReadLogs(ctx, "c1", first.Next, 5*time.Second)
	if err != nil || len(b.Messages) != 1 || string(b.Messages[0]) != string(line) {
		t.Fatalf("followed line: %q %v", b.Messages, err)
	}
	if !finish(t, q, d, "c1", true) {
		t.Fatal("finish refused")
	}
	st, err := cl.Status(ctx, "c1")
	if err != nil || st == nil || st.State != task.Succeeded || !strings.Contains(string(st.Done), `"msg_type":"done"`) {
		t.Fatalf("status after the end: %+v %v", st, err)
	}
	// From the start, a finished task's messages: its lines, then its done.
	all, err := cl.ReadLogs(ctx, "c1", "", 0)
	if err != nil || len(all.Messages) != 3 || string(all.Messages[0]) != string(line) ||
		!strings.Contains(string(all.Messages[2]), `"msg_type":"done"`) {
		t.Fatalf("logs of the finished task: %q %v", all.Messages, err)
	}

	// A kill goes to the control topic, which the executor reads.
	kill := []byte(`{"id":"c2","type":"kill"}`)
	if err := cl.SendControl(ctx, kill); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		cd, err := q.TakeControl(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cd != nil && string(cd.Raw) == string(kill) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the executor did not read the kill")
		}
	}
	if ex, err := cl.Executors(ctx); err != nil || !ex[q.opt.ExecutorID] {
		t.Fatalf("executors: %v %v", ex, err)
	}
}
