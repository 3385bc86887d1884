package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/queue/kafkaqueue"
	"github.com/taskjob/task-job/task"
)

// kafkaEnv is the management server over the Kafka transport (franz-go's
// in-process broker): an executor's transport to claim, print and finish
// tasks as an executor does, and the server reading through the client
// side, with a token per role.
func kafkaEnv(t *testing.T) (*env, *kafkaqueue.Queue) {
	t.Helper()
	broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	n := kafkaqueue.Names{Tasks: fmt.Sprintf("apikq%d", os.Getpid())}
	ex, err := kafkaqueue.New(ctx, broker.ListenAddrs(), nil, kafkaqueue.Options{Names: n, ExecutorID: "api-kafka-ex",
		TTL: time.Second, CreateTopics: true, Partitions: 2, SessionTimeout: time.Second, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ex.Close() })
	if err := ex.Join(ctx); err != nil {
		t.Fatal(err)
	}
	cl, err := kafkaqueue.NewClient(ctx, broker.ListenAddrs(), nil, kafkaqueue.ClientConfig{Names: n, Retention: time.Hour, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	e := &env{t: t, tokens: map[string]string{}}
	var lines []string
	for _, r := range testRoles {
		tok, line := NewToken(r.name, r.role)
		e.tokens[r.name] = tok
		lines = append(lines, line+" "+r.tubes)
	}
	toks, err := ParseTokens([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Tasks: cl, Tokens: toks, Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{t}})})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = s
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(rctx) }()
	t.Cleanup(func() { stop(); <-done })
	<-s.Ready()
	e.http = httptest.NewServer(s.Handler())
	t.Cleanup(e.http.Close)
	return e, ex
}

// takeClaim produces a task and takes and claims it as an executor does.
func takeClaim(t *testing.T, q *kafkaqueue.Queue, id string) *queue.Delivery {
	t.Helper()
	raw, _ := json.Marshal(task.Task{ID: id, Type: "test", Task: task.Spec{Cmdline: "x.sh", CmdArgs: []string{}}})
	ctx := context.Background()
	if err := q.Client().ProduceSync(ctx, &kgo.Record{Topic: q.Topics().Tasks, Key: []byte(id), Value: raw}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		d, err := q.Take(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d == nil {
			continue
		}
		if c, err := q.Claim(ctx, d, id); c != queue.Claimed || err != nil {
			t.Fatalf("claim %s: %v %v", id, c, err)
		}
		return d
	}
	t.Fatal("no task arrived")
	return nil
}

// Over Kafka the server answers a task's status and streams its log, live,
// to its done; the endpoints that need Redis keys say they are not served.
func TestKafkaReadOnlyEndpoints(t *testing.T) {
	e, ex := kafkaEnv(t)
	ctx := context.Background()
	reader := e.tokens["reader"]

	if code, body := e.do("GET", "/api/v1/tasks/k1", reader, nil); code != http.StatusNotFound {
		t.Fatalf("a task never taken: %d %s", code, body)
	}
	d := takeClaim(t, ex, "k1")
	if _, err := ex.Publish(ctx, []queue.Message{lineMsg("k1", 1, "first")}); err != nil {
		t.Fatal(err)
	}
	var v TaskView
	e.getJSON("/api/v1/tasks/k1", reader, &v)
	if v.State != task.Running || v.Executor != "api-kafka-ex" {
		t.Fatalf("view of a running task: %+v", v)
	}

	st, code := e.openStream("/api/v1/tasks/k1/logs", reader, "")
	if code != http.StatusOK {
		t.Fatalf("log stream: %d", code)
	}
	if ev, ok := st.next(t, 10*time.Second); !ok || ev.Name != task.MsgStdout || !strings.Contains(ev.Data, "first") {
		t.Fatalf("first event: %+v %v", ev, ok)
	}
	// Published after the stream opened: it arrives live, then the done,
	// then the stream ends.
	if _, err := ex.Publish(ctx, []queue.Message{lineMsg("k1", 2, "second"), doneMsg("k1", 3, d, task.Succeeded)}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{task.MsgStdout, task.MsgDone} {
		if ev, ok := st.next(t, 10*time.Second); !ok || ev.Name != want {
			t.Fatalf("want a %s event, got %+v %v", want, ev, ok)
		}
	}
	if ev, ok := st.next(t, 10*time.Second); ok {
		t.Fatalf("the stream went on after the done: %+v", ev)
	}
	e.getJSON("/api/v1/tasks/k1", reader, &v)
	if v.State != task.Succeeded || len(v.Done) == 0 {
		t.Fatalf("view of an ended task: %+v", v)
	}
	// Asked again after the done, with its seq: nothing more (204).
	if _, code := e.openStream("/api/v1/tasks/k1/logs", reader, "3"); code != http.StatusNoContent {
		t.Fatalf("stream after the done: %d, want 204", code)
	}

	for _, c := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/api/v1/tasks/k1", "", http.StatusUnauthorized},
		{"GET", "/api/v1/tasks/k1", e.tokens["blue"], http.StatusForbidden}, // tubes cannot be checked
		{"GET", "/api/v1/tasks?tube=blue", reader, http.StatusBadRequest},   // not recorded
		{"GET", "/api/v1/tasks?cursor=x", reader, http.StatusBadRequest},
		{"GET", "/api/v1/queues", reader, http.StatusNotFound},
		{"POST", "/api/v1/tasks", e.tokens["admin"], http.StatusNotFound},
		{"POST", "/api/v1/tasks/k1/kill", e.tokens["admin"], http.StatusNotFound},
		{"GET", "/", reader, http.StatusNotFound},
	} {
		if code, body := e.do(c.method, c.path, c.token, nil); code != c.want {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, code, body, c.want)
		}
	}
}

// Over Kafka the task list is the status topic's fold: newest change
// first, filtered by state, paged by its cursor to the last task.
func TestKafkaTaskList(t *testing.T) {
	e, ex := kafkaEnv(t)
	ctx := context.Background()
	reader := e.tokens["reader"]
	var ds []*queue.Delivery
	for _, id := range []string{"l1", "l2", "l3"} {
		ds = append(ds, takeClaim(t, ex, id))
		time.Sleep(5 * time.Millisecond) // distinct update times: a defined order
	}
	if _, err := ex.Publish(ctx, []queue.Message{doneMsg("l2", 1, ds[1], task.Succeeded)}); err != nil {
		t.Fatal(err)
	}
	ids := func(l TaskList) (out []string) {
		for _, v := range l.Tasks {
			out = append(out, v.ID+"="+string(v.State))
		}
		return out
	}
	var l TaskList
	e.getJSON("/api/v1/tasks", reader, &l)
	if got := strings.Join(ids(l), " "); got != "l2=succeeded l3=running l1=running" || l.Next != "" {
		t.Fatalf("list: %s (next %q)", got, l.Next)
	}
	if _, err := time.Parse(time.RFC3339Nano, l.Tasks[0].Updated); err != nil {
		t.Fatalf("updated %q is not the Redis views' form: %v", l.Tasks[0].Updated, err)
	}
	e.getJSON("/api/v1/tasks?state=running", reader, &l)
	if got := strings.Join(ids(l), " "); got != "l3=running l1=running" {
		t.Fatalf("running: %s", got)
	}
	var pages []string
	for cursor, n := "", 0; n == 0 || cursor != ""; n++ {
		if n > 3 {
			t.Fatalf("the cursor does not end: %v, next %q", pages, cursor)
		}
		l = TaskList{} // a last page has no next to overwrite the one before
		e.getJSON("/api/v1/tasks?limit=1&cursor="+cursor, reader, &l)
		pages = append(pages, ids(l)...)
		cursor = l.Next
	}
	if got := strings.Join(pages, " "); got != "l2=succeeded l3=running l1=running" {
		t.Fatalf("paged by one: %s", got)
	}
}
