package kafkaqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
)

// startKafka starts franz-go's in-process broker for one test.
func startKafka(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(500 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

var seq atomic.Int64

func testNames() Names {
	return Names{Tasks: fmt.Sprintf("q%d", seq.Add(1))}
}

func open(t testing.TB, c *kfake.Cluster, names Names, executor string, mod ...func(*Options)) *Queue {
	t.Helper()
	opt := Options{Names: names, ExecutorID: executor, TTL: time.Second, CreateTopics: true,
		Partitions: 2, SessionTimeout: time.Second, Retention: time.Hour}
	for _, m := range mod {
		m(&opt)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := New(ctx, c.ListenAddrs(), nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	if err := q.Join(ctx); err != nil {
		t.Fatal(err)
	}
	return q
}

func execID(name string) string { return fmt.Sprintf("%s-%d", name, os.Getpid()) }

func submit(t *testing.T, q *Queue, id string) []byte {
	t.Helper()
	raw := []byte(fmt.Sprintf(`{"id":%q,"type":"t","tube":"","task":{"cmdline":"x.sh","timeout":0}}`, id))
	if _, err := q.produce(context.Background(), &kgo.Record{Topic: q.topics.Tasks, Value: raw}); err != nil {
		t.Fatal(err)
	}
	return raw
}

func take(t *testing.T, q *Queue) *queue.Delivery {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		d, err := q.Take(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if d != nil {
			return d
		}
	}
	t.Fatal("no task arrived")
	return nil
}

// takeAny takes the next task from whichever executor's partitions hold it.
func takeAny(t *testing.T, qs ...*Queue) (*queue.Delivery, *Queue) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, q := range qs {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			d, err := q.Take(ctx)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if d != nil {
				return d, q
			}
		}
	}
	t.Fatal("no task arrived")
	return nil, nil
}

func done(id, executor string, st task.State) []byte {
	return task.Done(task.Ending{ID: id, Type: "t", Executor: executor, Seq: 1, Time: time.Now(),
		Result: task.Result{Status: st}})
}

func finishOf(q *Queue, d *queue.Delivery, id string) *queue.Finish {
	return &queue.Finish{ID: id, State: task.Succeeded, Done: done(id, q.opt.ExecutorID, task.Succeeded), Raw: d.Raw, Claimed: true, Token: d.Token}
}

func finish(t *testing.T, q *Queue, d *queue.Delivery, id string, claimed bool) bool {
	t.Helper()
	f := &queue.Finish{ID: id, State: task.Succeeded, Done: done(id, q.opt.ExecutorID, task.Succeeded), Raw: d.Raw, Claimed: claimed}
	if claimed {
		f.Token = d.Token
	}
	ok, err := q.Publish(context.Background(), []queue.Message{{Log: []byte(`{"id":"` + id + `","msg_type":"stdout","data":"hi","seq":1}`)}, {Finish: f}})
	if err != nil {
		t.Fatal(err)
	}
	return ok[1]
}

// dones reads every done in the logs topic.
// dones counts the dones on the logs topic, read from its start. Every
// caller expects at least one, so it reads until it has seen a record and
// then a second more with nothing new (a second done would be caught), or
// 15 s pass: a fixed 2 s window read nothing on a loaded machine, where a
// new client takes longer to reach the broker.
func dones(t *testing.T, c *kfake.Cluster, q *Queue) map[string]int {
	t.Helper()
	return countLogs(t, c, q, task.MsgDone)
}

// lines counts the output lines (stdout) on the logs topic, as dones does.
func lines(t *testing.T, c *kfake.Cluster, q *Queue) map[string]int {
	t.Helper()
	return countLogs(t, c, q, task.MsgStdout)
}

func countLogs(t *testing.T, c *kfake.Cluster, q *Queue, msgType string) map[string]int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(q.topics.Logs),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out := map[string]int{}
	var last time.Time
	for ctx.Err() == nil && (last.IsZero() || time.Since(last) < time.Second) {
		pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			last = time.Now()
			var l task.Log
			if json.Unmarshal(r.Value, &l) == nil && l.MsgType == msgType {
				out[l.ID]++
			}
		})
		pcancel()
	}
	return out
}

func TestTakeClaimFinish(t *testing.T) {
	c := startKafka(t)
	q := open(t, c, testNames(), execID("a"))
	submit(t, q, "t1")
	d := take(t, q)
	if id, _ := task.PeekID(d.Raw); id != "t1" || d.Token == "" {
		t.Fatalf("took %q token %q", d.Raw, d.Token)
	}
	ctx := context.Background()
	for range 2 { // a retried claim answers as the first did
		if cl, err := q.Claim(ctx, d, "t1"); err != nil || cl != queue.Claimed {
			t.Fatalf("claim: %v %v", cl, err)
		}
	}
	if st, err := q.Status(ctx, "t1"); err != nil || st.State != task.Running || st.Executor != q.opt.ExecutorID {
		t.Fatalf("status while running: %+v %v", st, err)
	}
	for i := range 2 {
		if !finish(t, q, d, "t1", true) {
			t.Fatalf("finish %d (a retry after the first) did not take effect", i)
		}
	}
	if st, err := q.Status(ctx, "t1"); err != nil || st.State != task.Succeeded || len(st.Done) == 0 {
		t.Fatalf("status after the end: %+v %v", st, err)
	}
	// The claim committed the offset: a new member of the group does not
	// see the task again.
	q.Close()
	q2 := open(t, c, q.opt.Names, execID("b"))
	if d, err := q2.Take(ctx); err != nil || d != nil {
		t.Fatalf("task delivered again after its claim was committed: %v %v", d, err)
	}
}

func TestDuplicateID(t *testing.T) {
	c := startKafka(t)
	names := testNames()
	a := open(t, c, names, execID("a"))
	submit(t, a, "dup")
	submit(t, a, "dup")
	ctx := context.Background()
	d1, d2 := take(t, a), take(t, a)
	if cl, err := a.Claim(ctx, d1, "dup"); err != nil || cl != queue.Claimed {
		t.Fatalf("first claim: %v %v", cl, err)
	}
	// Another delivery of the same id, even on the same executor, is a
	// duplicate.
	if cl, err := a.Claim(ctx, d2, "dup"); err != nil || cl != queue.Duplicate {
		t.Fatalf("second claim: %v %v", cl, err)
	}
	if err := a.Drop(ctx, d2); err != nil {
		t.Fatal(err)
	}
	if finish(t, a, d2, "dup", true) {
		t.Fatal("the duplicate's finish took effect")
	}
	if !finish(t, a, d1, "dup", true) {
		t.Fatal("the owner's finish did not take effect")
	}
	if n := dones(t, c, a)["dup"]; n != 1 {
		t.Fatalf("%d dones for the duplicated id, want 1", n)
	}
}

func TestKillAheadAndRunning(t *testing.T) {
	c := startKafka(t)
	names := testNames()
	a := open(t, c, names, execID("a"))
	ctx := context.Background()
	// Before the task exists.
	if r, err := a.RouteKill(ctx, "k1"); err != nil || !r.Queued {
		t.Fatalf("route of a kill ahead: %+v %v", r, err)
	}
	submit(t, a, "k1")
	d := take(t, a)
	if cl, err := a.Claim(ctx, d, "k1"); err != nil || cl != queue.CancelledWhileQueued {
		t.Fatalf("claim after a kill ahead: %v %v", cl, err)
	}
	// While it runs: the kill is routed to its executor.
	submit(t, a, "k2")
	d2 := take(t, a)
	if cl, err := a.Claim(ctx, d2, "k2"); err != nil || cl != queue.Claimed {
		t.Fatalf("claim: %v %v", cl, err)
	}
	b := open(t, c, names, execID("b"))
	if r, err := b.RouteKill(ctx, "k2"); err != nil || r.Executor != a.opt.ExecutorID {
		t.Fatalf("route of a kill for a running task: %+v %v", r, err)
	}
	// Every executor reads the control topic; a forwarded kill reaches only
	// its executor.
	if err := b.Forward(ctx, a.opt.ExecutorID, []byte(`{"id":"k2","type":"kill"}`)); err != nil {
		t.Fatal(err)
	}
	var got *queue.ControlDelivery
	for i := 0; i < 10 && got == nil; i++ {
		var err error
		if got, err = a.TakeForwarded(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got == nil || string(got.Raw) != `{"id":"k2","type":"kill"}` || !got.Forwarded {
		t.Fatalf("forwarded kill: %+v", got)
	}
	if f, _ := b.TakeForwarded(ctx); f != nil {
		t.Fatalf("a kill forwarded to a reached b: %q", f.Raw)
	}
	if !finish(t, a, d2, "k2", true) {
		t.Fatal("finish")
	}
	if r, err := b.RouteKill(ctx, "k2"); err != nil || r.Ended != task.Succeeded {
		t.Fatalf("route of a kill for an ended task: %+v %v", r, err)
	}
}

func TestControlSeenByEveryExecutor(t *testing.T) {
	c := startKafka(t)
	names := testNames()
	a := open(t, c, names, execID("a"))
	b := open(t, c, names, execID("b"))
	if _, err := a.produce(context.Background(), &kgo.Record{Topic: a.topics.Control, Value: []byte(`{"id":"x","type":"kill"}`)}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []*Queue{a, b} {
		var got *queue.ControlDelivery
		for i := 0; i < 10 && got == nil; i++ {
			got, _ = q.TakeControl(context.Background())
		}
		if got == nil || string(got.Raw) != `{"id":"x","type":"kill"}` {
			t.Fatalf("%s did not see the kill: %+v", q.opt.ExecutorID, got)
		}
		if err := q.AckControl(context.Background(), got); err != nil {
			t.Fatal(err)
		}
	}
	// An acknowledged kill is not read again after a restart.
	a.Close()
	a2 := open(t, c, names, a.opt.ExecutorID)
	if got, _ := a2.TakeControl(context.Background()); got != nil {
		t.Fatalf("acknowledged kill read again: %q", got.Raw)
	}
}

func TestCrashReportedLostAndFenced(t *testing.T) {
	c := startKafka(t)
	names := testNames()
	a := open(t, c, names, execID("a"))
	b := open(t, c, names, execID("b"))
	submit(t, a, "c1")
	ctx := context.Background()
	// Whichever executor the group gave the partition to takes it.
	d, owner := takeAny(t, a, b)
	peer := b
	if owner == b {
		peer = a
	}
	if cl, err := owner.Claim(ctx, d, "c1"); err != nil || cl != queue.Claimed {
		t.Fatalf("claim: %v %v", cl, err)
	}
	// The owner stops beating (paused, or dead): after its TTL the peer
	// sees it dead and reports the task lost.
	deadline := time.Now().Add(10 * time.Second)
	for {
		execs, err := peer.Executors(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if alive, ok := execs[owner.opt.ExecutorID]; ok && !alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("owner still alive: %v", execs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r, err := peer.Recover(ctx, owner.opt.ExecutorID)
	if err != nil || r.Lost != 1 {
		t.Fatalf("recover: %+v %v", r, err)
	}
	if st, _ := peer.Status(ctx, "c1"); st == nil || st.State != task.Lost {
		t.Fatalf("status after recovery: %+v", st)
	}
	// The paused owner comes back: its heartbeat says the liveness had
	// expired, Owned says the claim is gone, and its finish is refused.
	if err := owner.Heartbeat(ctx); !errors.Is(err, queue.ErrLivenessLost) {
		t.Fatalf("heartbeat after the pause: %v", err)
	}
	own, err := owner.Owned(ctx, map[string]string{"c1": d.Token})
	if err != nil || own["c1"] {
		t.Fatalf("owned after being reported lost: %v %v", own, err)
	}
	if finish(t, owner, d, "c1", true) {
		t.Fatal("a fenced executor's finish took effect")
	}
	if n := dones(t, c, owner)["c1"]; n != 1 {
		t.Fatalf("%d dones, want exactly the lost one", n)
	}
	// A copy of the task delivered again is a duplicate, never re-run.
	submit(t, peer, "c1")
	d2, q2 := takeAny(t, a, b)
	if cl, err := q2.Claim(ctx, d2, "c1"); err != nil || cl != queue.Duplicate {
		t.Fatalf("claim of a redelivered lost task: %v %v", cl, err)
	}
}

func TestIdentityTaken(t *testing.T) {
	c := startKafka(t)
	names := testNames()
	id := execID("same")
	// A TTL long enough that a loaded test machine never leaves a gap in
	// the first holder's heartbeats that long.
	a := open(t, c, names, id, func(o *Options) { o.TTL = 2 * time.Second })
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				_ = a.Heartbeat(context.Background())
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	q, err := New(ctx, c.ListenAddrs(), nil, Options{Names: names, ExecutorID: id, TTL: 2 * time.Second, CreateTopics: true, Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.Join(ctx); !errors.Is(err, queue.ErrIdentityTaken) {
		t.Fatalf("second holder joined: %v", err)
	}
}

func TestSASL(t *testing.T) {
	c := startKafka(t, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "exec", "right"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	opt := Options{Names: testNames(), ExecutorID: execID("sasl"), CreateTopics: true, Partitions: 1}
	good, err := ClientOptions(DialOptions{SASLMechanism: "scram-sha-512", SASLUser: "exec", SASLPassword: "right"})
	if err != nil {
		t.Fatal(err)
	}
	q, err := New(ctx, c.ListenAddrs(), good, opt)
	if err != nil {
		t.Fatalf("with the right password: %v", err)
	}
	q.Close()
	bad, _ := ClientOptions(DialOptions{SASLMechanism: "scram-sha-512", SASLUser: "exec", SASLPassword: "wrong"})
	bctx, bcancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer bcancel()
	if q, err := New(bctx, c.ListenAddrs(), bad, opt); err == nil {
		q.Close()
		t.Fatal("a wrong SASL password was accepted")
	}
	if _, err := ClientOptions(DialOptions{TLSCAFile: "/nonexistent/ca.pem"}); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
}

// A long task's claim is written again every half retention, so that a
// reader that starts after the first one aged out still finds it.
func TestLongClaimRenewed(t *testing.T) {
	c := startKafka(t)
	names := testNames()
	a := open(t, c, names, execID("a"), func(o *Options) { o.Retention = 400 * time.Millisecond })
	submit(t, a, "long")
	d := take(t, a)
	if cl, err := a.Claim(context.Background(), d, "long"); err != nil || cl != queue.Claimed {
		t.Fatalf("claim: %v %v", cl, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ends, err := a.adm.ListEndOffsets(context.Background(), a.topics.Status)
		if err != nil {
			t.Fatal(err)
		}
		n := int64(0)
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d status records after 10 s, want the claim and two renewals", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if own, err := a.Owned(context.Background(), map[string]string{"long": d.Token}); err != nil || !own["long"] {
		t.Fatalf("renewals changed the owner: %v %v", own, err)
	}
}

// Where the executor may not create topics, it checks them: each missing
// one is named with the settings to create it with, and a status topic
// with the wrong cleanup policy is refused.
func TestTopicsCheckedWhenNotCreated(t *testing.T) {
	c := startKafka(t)
	names := testNames()
	newQ := func() (*Queue, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return New(ctx, c.ListenAddrs(), nil, Options{Names: names, ExecutorID: execID("check"), TTL: time.Second, Partitions: 1})
	}
	_, err := newQ()
	if err == nil {
		t.Fatal("New without topics and without CreateTopics succeeded")
	}
	for _, want := range []string{"missing topics", names.Tasks, "cleanup.policy=delete", "cleanup.policy=compact", "kafka_create_topics"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	// Made once (by an executor allowed to), they pass the check.
	open(t, c, names, execID("maker"))
	q, err := newQ()
	if err != nil {
		t.Fatalf("New with the topics in place: %v", err)
	}
	q.Close()

	// A compacted status topic would forget which claim came first.
	bad := testNames()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	compact := "compact"
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 1, 1,
		map[string]*string{"cleanup.policy": &compact}, TopicsFor(bad).Status); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := New(ctx, c.ListenAddrs(), nil, Options{Names: bad, ExecutorID: execID("bad"), TTL: time.Second, Partitions: 1, CreateTopics: true}); err == nil || !strings.Contains(err.Error(), "must be delete") {
		t.Errorf("New with a compacted status topic: %v", err)
	}
}
