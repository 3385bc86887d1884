package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/executor"
	"github.com/taskjob/task-job/jail"
	"github.com/taskjob/task-job/metrics"
	"github.com/taskjob/task-job/policy"
	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/sandbox"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/observe"
	"github.com/taskjob/task-job/test/redisserver"
)

var names = redisqueue.Names{Tasks: "queue_job_task", Control: "queue_job_task_control", Logs: "queue_job_task_logs"}

// env is one Redis, a management server over it (and optionally an
// executor sharing its audit log, as when an executor serves the API).
type env struct {
	t         testing.TB
	redis     *redisserver.Server
	rdb       *redis.Client
	q         *redisqueue.Queue
	srv       *Server
	http      *httptest.Server
	auditFile string
	audit     *audit.Log
	dir       string
	tokens    map[string]string // name -> token
	metrics   *metrics.Metrics
}

type envOpt struct {
	tokens bool
	// metrics serves /metrics, and the env's executors report to it.
	metrics *metrics.Metrics
	// policy is the source of the policy the server dry-runs ("" = none).
	policy string
	// fleet is the fleet registry the server reads (nil = none).
	fleet Fleet
}

// The tokens of the test: one per role, and one limited to tube "blue".
var testRoles = []struct {
	name  string
	role  Role
	tubes string
}{{"reader", RoleRead, ""}, {"operator", RoleOperate, ""}, {"admin", RoleAdmin, ""}, {"blue", RoleAdmin, "tubes=blue"}}

func newEnv(t testing.TB, o envOpt) *env {
	t.Helper()
	srv := redisserver.Start(t)
	e := &env{t: t, redis: srv, rdb: srv.Client(t), dir: t.TempDir(), tokens: map[string]string{}}
	e.q = redisqueue.New(redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 32}), redisqueue.Options{Names: names, Retention: time.Hour, TTL: time.Second})
	t.Cleanup(func() { e.q.Close() })
	e.auditFile = filepath.Join(e.dir, "audit.log")
	al, err := audit.Open(e.auditFile, audit.Options{Executor: "api-test"})
	if err != nil {
		t.Fatal(err)
	}
	e.audit = al
	t.Cleanup(func() { al.Close() })
	opt := Options{Queue: e.q, Audit: al, AuditFile: e.auditFile, AuditStream: "queue_job_task_audit", Version: "test",
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{t}})}
	opt.Fleet = o.fleet
	if o.metrics != nil {
		opt.Metrics = o.metrics.Handler()
		e.metrics = o.metrics
	}
	if o.policy != "" {
		p, err := policy.Parse([]byte(o.policy), "test.hcl")
		if err != nil {
			t.Fatal(err)
		}
		opt.Policy = func() *policy.Policy { return p }
	}
	if o.tokens {
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
		opt.Tokens = toks
	}
	s, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-s.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the logs feed was not subscribed within 10s")
	}
	e.http = httptest.NewServer(s.Handler())
	t.Cleanup(e.http.Close)
	return e
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// do sends a request as the named token ("" = none) and returns the
// status and body.
func (e *env) do(method, path, token string, body io.Reader, hdr ...string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.http.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *env) getJSON(path, token string, v any) {
	e.t.Helper()
	code, body := e.do("GET", path, token, nil)
	if code != http.StatusOK {
		e.t.Fatalf("GET %s = %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		e.t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// publisher is an executor's transport, used directly to produce a task's
// claim, lines and done exactly as an executor does.
func (e *env) publisher(executorID string) *redisqueue.Queue {
	// It serves the tubes the tests use, so runTask can take a tubed task.
	q := redisqueue.New(redis.NewClient(&redis.Options{Addr: e.redis.Addr()}), redisqueue.Options{Names: names, ExecutorID: executorID, Retention: time.Hour, TTL: time.Second,
		Tubes: []string{"", "blue"}})
	e.t.Cleanup(func() { q.Close() })
	return q
}

// claim takes the task at the head of the list and claims it.
func claim(t testing.TB, q *redisqueue.Queue) *queue.Delivery {
	t.Helper()
	d, err := q.Take(context.Background())
	if err != nil || d == nil {
		t.Fatalf("take: %v %v", d, err)
	}
	id, _ := task.PeekID(d.Raw)
	if c, err := q.Claim(context.Background(), d, id); c != queue.Claimed || err != nil {
		t.Fatalf("claim %s: %v %v", id, c, err)
	}
	return d
}

func lineMsg(id string, seq uint64, data string) queue.Message {
	return queue.Message{Log: task.AppendLine(nil, id, "test", "", task.MsgStdout, "ex", seq, time.Now(), []byte(data))}
}

func doneMsg(id string, seq uint64, d *queue.Delivery, state task.State) queue.Message {
	done := (&task.Log{ID: id, Type: "test", MsgType: task.MsgDone, Seq: seq, Data: string(state), Time: time.Now().UTC().Format(task.TimeFormat),
		Executor: "ex", Result: &task.Result{Status: state, Reason: "because " + string(state)}}).Marshal()
	return queue.Message{Finish: &queue.Finish{ID: id, State: state, Done: done, Raw: d.Raw, Claimed: true, Token: d.Token}}
}

// runTask pushes, claims and ends a task with n lines.
func (e *env) runTask(q *redisqueue.Queue, id, tube string, n int, state task.State) {
	e.t.Helper()
	raw, _ := json.Marshal(task.Task{ID: id, Type: "test", Tube: tube, Task: task.Spec{Cmdline: "x.sh", CmdArgs: []string{}}})
	e.rdb.RPush(context.Background(), q.TubeKey(tube), raw)
	d := claim(e.t, q)
	var msgs []queue.Message
	for i := 1; i <= n; i++ {
		msgs = append(msgs, lineMsg(id, uint64(i), fmt.Sprint("line ", i)))
	}
	msgs = append(msgs, doneMsg(id, uint64(n+1), d, state))
	if _, err := q.Publish(context.Background(), msgs); err != nil {
		e.t.Fatal(err)
	}
}

// event is one Server-Sent Event.
type event struct {
	ID, Name, Data string
}

// stream reads events from path until stop says so or the stream ends.
type stream struct {
	resp   *http.Response
	events chan event
	wg     sync.WaitGroup
}

func (e *env) openStream(path, token, lastID string) (*stream, int) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.http.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, resp.StatusCode
	}
	s := &stream{resp: resp, events: make(chan event, 1024)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		var ev event
		for sc.Scan() {
			l := sc.Text()
			switch {
			case l == "":
				if ev.Name != "" {
					s.events <- ev
				}
				ev = event{}
			case strings.HasPrefix(l, "id: "):
				ev.ID = l[4:]
			case strings.HasPrefix(l, "event: "):
				ev.Name = l[7:]
			case strings.HasPrefix(l, "data: "):
				ev.Data = l[6:]
			}
		}
	}()
	e.t.Cleanup(s.close)
	return s, http.StatusOK
}

func (s *stream) close() {
	s.resp.Body.Close()
	s.wg.Wait()
}

// next returns the next event, failing after timeout; ok false = the
// stream ended.
func (s *stream) next(t *testing.T, timeout time.Duration) (event, bool) {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		return ev, ok
	case <-time.After(timeout):
		t.Fatalf("no event within %v", timeout)
		return event{}, false
	}
}

// executorEnv adds a real executor sharing the server's audit log, with a
// cmd_dir of scripts and a policy.
func (e *env) startExecutor(id, policySrc string, scripts map[string]string) {
	e.t.Helper()
	cmdDir := filepath.Join(e.dir, "cmd")
	if err := os.MkdirAll(cmdDir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(cmdDir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			e.t.Fatal(err)
		}
	}
	j, err := jail.New(jail.Options{Dir: cmdDir})
	if err != nil {
		e.t.Fatal(err)
	}
	runner, err := sandbox.New(sandbox.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { runner.Close() })
	pol, err := policy.Parse([]byte(policySrc), "test.hcl")
	if err != nil {
		e.t.Fatal(err)
	}
	q := redisqueue.New(redis.NewClient(&redis.Options{Addr: e.redis.Addr(), PoolSize: 16}),
		redisqueue.Options{Names: names, ExecutorID: id, Retention: time.Hour, TTL: time.Second})
	ex, err := executor.New(executor.Options{
		ExecutorID: id, Concurrency: 2, Logs: true, KillGrace: time.Second, ShutdownGrace: 5 * time.Second, TTL: time.Second,
		SpoolDir: filepath.Join(e.dir, "spool-"+id), Env: []string{"PATH=/usr/bin:/bin"},
		Broker: q, Jail: j, Runner: runner, Policy: pol, Audit: e.audit, Observer: observer(e.metrics),
		Logger: hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Warn, Output: testWriter{e.t}}),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := ex.Run(ctx); err != nil {
			e.t.Errorf("executor %s: %v", id, err)
		}
		q.Close()
	}()
	e.t.Cleanup(func() { cancel(); <-done })
}

// waitState polls a task's state through the API until it is want.
func (e *env) waitState(id, token string, want task.State, timeout time.Duration) *TaskView {
	e.t.Helper()
	var v TaskView
	observe.Eventually(e.t, "task "+id+" "+string(want), timeout, func() bool {
		code, body := e.do("GET", "/api/v1/tasks/"+id, token, nil)
		v = TaskView{}
		return code == http.StatusOK && json.Unmarshal([]byte(body), &v) == nil && v.State == want
	})
	return &v
}

// observer is m as the executor's Observer, nil when there is none (a nil
// *Metrics in the interface would not be nil).
func observer(m *metrics.Metrics) executor.Observer {
	if m == nil {
		return nil
	}
	return m
}
