package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/taskjob/task-job/jail"
	"github.com/taskjob/task-job/policy"
	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/queue/memqueue"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/sandbox"
	"github.com/taskjob/task-job/sandbox/nsinit"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/redisserver"
)

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == sandbox.InitName {
		nsinit.Main() // the sandbox's setup helper, re-executed from this binary
	}
	redisqueue.RouteClientLog(hclog.NewNullLogger()) // outage tests would print a line per failed dial
	code := m.Run()
	if sharedRunner != nil {
		sharedRunner.Close()
	}
	// Every executor, its loops, its task goroutines and its outbox must be
	// gone once a test has stopped it.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// sharedRunner is the one sandbox runner of this test binary: setting one
// up probes the kernel (about 2 s), and it holds no state between tasks
// that a test could see, so every cluster uses it.
var (
	sharedRunner    *sandbox.Runner
	sharedRunnerErr error
	sharedRunnerSet sync.Once
)

func runnerForTests(t *testing.T) *sandbox.Runner {
	t.Helper()
	sharedRunnerSet.Do(func() {
		sharedRunner, sharedRunnerErr = sandbox.New(sandbox.Options{Isolate: true, InitPath: os.Getenv("TASK_JOB_INIT"),
			CgroupName: fmt.Sprintf("task-job-test-%d", os.Getpid())})
	})
	if sharedRunnerErr != nil {
		t.Fatal(sharedRunnerErr)
	}
	return sharedRunner
}

var names = redisqueue.Names{Tasks: "queue_job_task", Control: "queue_job_task_control", Logs: "queue_job_task_logs"}

// cluster is one Redis (or one in-memory transport), a cmd_dir of
// scripts, and any number of executors sharing them, with a collector that
// reads every TaskLog message.
type cluster struct {
	t      *testing.T
	redis  *redisserver.Server
	rdb    *redis.Client
	hub    *memqueue.Hub // set instead of redis and rdb by newMemCluster
	dir    string
	runner *sandbox.Runner

	// writers: a test records into cmd_dir (see writable).
	writers bool

	mu   sync.Mutex
	msgs map[string][]task.Log
	cond chan struct{}
}

func newCluster(t *testing.T, opts ...redisserver.Options) *cluster {
	t.Helper()
	srv := redisserver.Start(t, opts...)
	c := newSandboxCluster(t)
	c.redis, c.rdb = srv, srv.Client(t)
	c.startCollector(c.collect)
	return c
}

// newMemCluster is a cluster on the in-memory transport, for tests of the
// executor's own logic: the sandbox and the processes are real, the
// transport is not what they test (queue/queuetest holds both transports
// to one contract).
func newMemCluster(t *testing.T) *cluster {
	t.Helper()
	c := newSandboxCluster(t)
	c.hub = memqueue.NewHub()
	c.startCollector(c.collectMem)
	return c
}

func (c *cluster) startCollector(f func(ctx context.Context, done chan struct{})) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	c.t.Cleanup(func() { cancel(); <-done })
	go f(ctx, done)
}

func newSandboxCluster(t *testing.T) *cluster {
	t.Helper()
	runner := runnerForTests(t)
	// cmd_dir: the sandbox runs tasks as an unprivileged user, who must be
	// able to reach the scripts.
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if os.Getenv("CI") != "" && os.Geteuid() == 0 && !runner.Isolated() {
		t.Fatal("CI runs as root: tasks must be isolated: " + runner.Describe())
	}
	return &cluster{t: t, dir: dir, runner: runner, msgs: map[string][]task.Log{}, cond: make(chan struct{})}
}

// writable creates an empty file in cmd_dir that tasks may write: the
// sandbox shows them nothing else of the host.
func (c *cluster) writable(name string) string {
	c.t.Helper()
	c.writers = true
	path := filepath.Join(c.dir, name)
	if err := os.WriteFile(path, nil, 0o666); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// collect moves every message from the logs list into c.msgs.
func (c *cluster) collect(ctx context.Context, done chan struct{}) {
	defer close(done)
	rdb := redis.NewClient(&redis.Options{Addr: c.redis.Addr(), MaxRetries: -1})
	defer rdb.Close()
	for ctx.Err() == nil {
		res, err := rdb.BLPop(ctx, time.Second, names.Logs).Result()
		if err != nil {
			if ctx.Err() == nil && err != redis.Nil {
				time.Sleep(50 * time.Millisecond) // Redis is down in an outage test: poll again
			}
			continue
		}
		c.add([]byte(res[1]))
	}
}

// collectMem is collect for the in-memory transport.
func (c *cluster) collectMem(ctx context.Context, done chan struct{}) {
	defer close(done)
	seen := 0
	for {
		ch := c.hub.Changed()
		msgs := c.hub.Published()
		for _, m := range msgs[seen:] {
			c.add(m)
		}
		seen = len(msgs)
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

func (c *cluster) add(raw []byte) {
	var l task.Log
	if err := json.Unmarshal(raw, &l); err != nil {
		c.t.Errorf("malformed TaskLog %q: %v", raw, err)
		return
	}
	c.mu.Lock()
	c.msgs[l.ID] = append(c.msgs[l.ID], l)
	close(c.cond)
	c.cond = make(chan struct{})
	c.mu.Unlock()
}

// script writes an executable script into cmd_dir.
func (c *cluster) script(name, body string) {
	c.t.Helper()
	if err := os.WriteFile(filepath.Join(c.dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		c.t.Fatal(err)
	}
}

type execOpt func(*Options)

// executor starts one executor; it is stopped at cleanup (or by the
// returned stop, which waits for it).
func (c *cluster) executor(id string, opts ...execOpt) (stop func()) {
	c.t.Helper()
	j, err := jail.New(jail.Options{Dir: c.dir})
	if err != nil {
		c.t.Fatal(err)
	}
	o := Options{
		ExecutorID: id, Concurrency: 2, Logs: true, KillGrace: time.Second, ShutdownGrace: 5 * time.Second,
		TTL: time.Second, SpoolDir: filepath.Join(c.t.TempDir(), "spool"),
		Env:  []string{"PATH=/usr/bin:/bin"},
		Jail: j, Runner: c.runner,
		Logger: hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Warn, Output: testWriter{c.t}}),
	}
	// The options are applied once to learn the queue's settings, and again
	// once the queue is set, so an option may wrap the broker.
	pre := o
	if c.writers {
		// Scripts that record into cmd_dir need a rule that lets them
		// write it: the sandbox shows cmd_dir read-only otherwise.
		o.Policy = writablePolicy(c.t)
	}
	for _, f := range opts {
		f(&pre)
	}
	var q queue.Broker
	if c.hub != nil {
		q = c.hub.New(memqueue.Options{ExecutorID: id, Retention: time.Hour, TTL: time.Second, MaxTaskBytes: pre.MaxTaskBytes})
	} else {
		rdb := redis.NewClient(&redis.Options{Addr: c.redis.Addr(), PoolSize: 32, DialTimeout: time.Second})
		q = redisqueue.New(rdb, redisqueue.Options{Names: names, ExecutorID: id, Retention: time.Hour, TTL: time.Second,
			MaxTaskBytes: pre.MaxTaskBytes})
	}
	o.Broker = q
	for _, f := range opts {
		f(&o)
	}
	ex, err := New(o)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := ex.Run(ctx); err != nil {
			c.t.Errorf("executor %s: %v", id, err)
		}
		q.Close()
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	c.t.Cleanup(stop)
	return stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// submit pushes a task the way a client does.
func (c *cluster) submit(id, cmdline string, args []string, timeout float64) {
	c.t.Helper()
	if args == nil {
		args = []string{}
	}
	raw, _ := json.Marshal(task.Task{ID: id, Type: "test", Task: task.Spec{Cmdline: cmdline, CmdArgs: args, Timeout: task.Seconds(timeout)}})
	c.push(string(raw))
}

func (c *cluster) push(raw string) {
	c.t.Helper()
	if c.hub != nil {
		c.hub.Push([]byte(raw))
		return
	}
	if err := c.rdb.RPush(context.Background(), names.Tasks, raw).Err(); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) kill(id string) {
	c.t.Helper()
	if c.hub != nil {
		c.hub.PushControl(fmt.Appendf(nil, `{"id":%q,"type":"kill"}`, id))
		return
	}
	if err := c.rdb.RPush(context.Background(), names.Control, fmt.Sprintf(`{"id":%q,"type":"kill"}`, id)).Err(); err != nil {
		c.t.Fatal(err)
	}
}

// waitFor waits until cond holds for the collected messages.
func (c *cluster) waitFor(what string, timeout time.Duration, cond func(map[string][]task.Log) bool) {
	c.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok, ch := cond(c.msgs), c.cond
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			c.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
	}
}

// done waits for id's done message and returns it.
func (c *cluster) done(id string, timeout time.Duration) task.Log {
	c.t.Helper()
	var d task.Log
	c.waitFor("the done of "+id, timeout, func(m map[string][]task.Log) bool {
		for _, l := range m[id] {
			if l.MsgType == task.MsgDone {
				d = l
				return true
			}
		}
		return false
	})
	return d
}

// status is the transport's state of id ("" when it has none).
func (c *cluster) status(id string) task.State {
	c.t.Helper()
	var st *queue.Status
	var err error
	if c.hub != nil {
		st, err = c.hub.New(memqueue.Options{ExecutorID: "status-reader"}).Status(context.Background(), id)
	} else {
		st, err = redisqueue.New(c.rdb, redisqueue.Options{Names: names}).Status(context.Background(), id)
	}
	if err != nil || st == nil {
		return ""
	}
	return st.State
}

// messages returns a copy of what was collected for id.
func (c *cluster) messages(id string) []task.Log {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]task.Log(nil), c.msgs[id]...)
}

// dones counts the done messages of id.
func (c *cluster) dones(id string) int {
	n := 0
	for _, l := range c.messages(id) {
		if l.MsgType == task.MsgDone {
			n++
		}
	}
	return n
}

// writablePolicy allows the recording tests' scripts, with cmd_dir
// writable.
func writablePolicy(t *testing.T) *policy.Policy {
	t.Helper()
	src := ""
	for _, name := range []string{"count.sh", "append.sh", "sleep.sh"} {
		src += "rule \"" + name + "\" {\n  cmdline = \"" + name + "\"\n  cmd_dir_writable = true\n}\n"
	}
	p, err := policy.Parse([]byte(src), "test.hcl")
	if err != nil {
		t.Fatal(err)
	}
	return p
}
