package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/taskjob/task-job/queue/kafkaqueue"
	"github.com/taskjob/task-job/signature"
	"github.com/taskjob/task-job/signature/kafkaguard"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/observe"
)

// kafkaSite is franz-go's in-process broker, the executors serving it
// (this test binary run as task-job, with "transport": "kafka") and a
// reader of every TaskLog message in the logs topic.
type kafkaSite struct {
	t      *testing.T
	broker *kfake.Cluster
	queue  string
	dir    string
	cl     *kgo.Client
	status *kafkaqueue.Queue // a client's view: never joined, so no executor

	mu   sync.Mutex
	logs map[string][]task.Log
}

// kafkaBrokerOpts are the in-process broker's settings in these tests.
func kafkaBrokerOpts(extra ...kfake.Opt) []kfake.Opt {
	return append([]kfake.Opt{kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(500 * time.Millisecond)}, extra...)
}

func newKafkaSite(t *testing.T, brokerOpts ...kfake.Opt) *kafkaSite {
	t.Helper()
	broker, err := kfake.NewCluster(kafkaBrokerOpts(brokerOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	s := &kafkaSite{t: t, broker: broker, queue: fmt.Sprintf("kq%d", os.Getpid()), dir: scripts(t), logs: map[string][]task.Log{}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The client's view creates the topics, as the first executor would.
	s.status, err = kafkaqueue.New(ctx, broker.ListenAddrs(), nil, kafkaqueue.Options{
		Names: kafkaqueue.Names{Tasks: s.queue}, ExecutorID: "client", Partitions: 2, CreateTopics: true, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// The broker closes last (cleanups run in reverse), and it may have
	// been replaced by a restart.
	t.Cleanup(func() { s.broker.Close() })
	t.Cleanup(func() { s.status.Close() })
	topics := s.status.Topics()
	s.cl, err = kgo.NewClient(kgo.SeedBrokers(broker.ListenAddrs()...), kgo.ConsumeTopics(topics.Logs),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for rctx.Err() == nil {
			s.cl.PollFetches(rctx).EachRecord(func(r *kgo.Record) {
				var l task.Log
				if err := json.Unmarshal(r.Value, &l); err != nil {
					t.Errorf("malformed TaskLog %q", r.Value)
					return
				}
				s.mu.Lock()
				s.logs[l.ID] = append(s.logs[l.ID], l)
				s.mu.Unlock()
			})
		}
	}()
	t.Cleanup(func() { stop(); <-done; s.cl.Close() })
	return s
}

type kafkaExecutor struct {
	id   string
	cfg  string // its config file
	cmd  *exec.Cmd
	log  *observe.Buffer
	done chan struct{}
}

// start starts an executor; extra keys are added to its config.
func (s *kafkaSite) start(name string, extra ...map[string]any) *kafkaExecutor {
	t := s.t
	t.Helper()
	id := fmt.Sprintf("kx-%d-%s", os.Getpid(), name)
	keys := map[string]any{
		"transport": "kafka", "kafka_brokers": s.broker.ListenAddrs(), "kafka_partitions": 2,
		"queue_name": s.queue, "cmd_dir": s.dir, "executor_id": id, "executor_ttl": "1s",
		"isolation": "off", "logs": true, "state_dir": t.TempDir(), "shutdown_grace": "2s", "concurrency": 2,
	}
	for _, m := range extra {
		maps.Copy(keys, m)
	}
	cfg, _ := json.Marshal(keys)
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e := &kafkaExecutor{id: id, cfg: path, cmd: exec.Command(self, "-config="+path), log: &observe.Buffer{}, done: make(chan struct{})}
	e.cmd.Env = append(os.Environ(), mainEnv+"=1", "GORACE=atexit_sleep_ms=0")
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.cmd.Wait(); close(e.done) }()
	t.Cleanup(func() {
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(15 * time.Second):
			_ = e.cmd.Process.Kill()
			<-e.done
		}
		if t.Failed() {
			t.Logf("executor %s log:\n%s", id, e.log.String())
		}
	})
	observe.Eventually(t, "executor "+id+" to serve", 20*time.Second, func() bool {
		return strings.Contains(e.log.String(), "executor serving")
	})
	return e
}

func (s *kafkaSite) produce(topic, value string) {
	s.t.Helper()
	if err := s.cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: []byte(value)}).FirstErr(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *kafkaSite) submit(id, cmdline string) {
	s.produce(s.queue, fmt.Sprintf(`{"id":%q,"type":"t","tube":"","task":{"cmdline":%q,"timeout":0}}`, id, cmdline))
}

func (s *kafkaSite) kill(id string) {
	s.produce(s.status.Topics().Control, fmt.Sprintf(`{"id":%q,"type":"kill"}`, id))
}

// dones returns id's done messages.
func (s *kafkaSite) dones(id string) []task.Log {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []task.Log
	for _, l := range s.logs[id] {
		if l.MsgType == task.MsgDone {
			out = append(out, l)
		}
	}
	return out
}

func (s *kafkaSite) waitDone(id string) task.Log {
	s.t.Helper()
	observe.Eventually(s.t, "the done of "+id, 30*time.Second, func() bool { return len(s.dones(id)) > 0 })
	return s.dones(id)[0]
}

func (s *kafkaSite) waitLine(id, data string) {
	s.t.Helper()
	observe.Eventually(s.t, id+" to print "+data, 30*time.Second, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, l := range s.logs[id] {
			if l.Data == data {
				return true
			}
		}
		return false
	})
}

// TestKafkaExecutors runs real executor processes on the Kafka transport:
// a task to its done, a duplicate id, kills before and during a task (with
// a rebalance in the middle, three executors), and an executor SIGKILLed
// while it runs one, reported lost by a peer.
func TestKafkaExecutors(t *testing.T) {
	s := newKafkaSite(t)
	a, b := s.start("a"), s.start("b")
	byID := map[string]*kafkaExecutor{a.id: a, b.id: b}

	s.submit("ok1", "hello.sh world")
	if d := s.waitDone("ok1"); d.Result == nil || d.Result.Status != task.Succeeded {
		t.Fatalf("done of ok1: %+v", d)
	}
	s.waitLine("ok1", "hello world")

	// The same id twice, back to back: one run, one done.
	s.submit("dup1", "hello.sh one")
	s.submit("dup1", "hello.sh two")
	s.waitDone("dup1")

	// A kill before the task is submitted cancels it when it comes.
	s.kill("kb1")
	time.Sleep(500 * time.Millisecond) // every executor has read the kill
	s.submit("kb1", "long.sh")
	if d := s.waitDone("kb1"); d.Result == nil || d.Result.Status != task.Killed || d.Result.Reason != task.KilledBeforeStart {
		t.Fatalf("done of a task killed before it was submitted: %+v", d.Result)
	}

	// A rebalance in the middle of a long task (a third executor joins the
	// group) does not hand the task to anyone else, and the kill, read by
	// all three, still reaches it.
	s.submit("reb1", "long.sh")
	s.waitLine("reb1", "begun")
	c := s.start("c")
	byID[c.id] = c
	time.Sleep(2 * time.Second) // the group has rebalanced
	s.kill("reb1")
	if d := s.waitDone("reb1"); d.Result == nil || d.Result.Status != task.Killed {
		t.Fatalf("done of a task killed after a rebalance: %+v", d.Result)
	}

	// A kill while it runs.
	s.submit("kr1", "long.sh")
	s.waitLine("kr1", "begun")
	s.kill("kr1")
	if d := s.waitDone("kr1"); d.Result == nil || d.Result.Status != task.Killed {
		t.Fatalf("done of a killed running task: %+v", d.Result)
	}

	// An executor SIGKILLed while it runs a task: its peer reports it lost;
	// it is not run again.
	s.submit("crash1", "long.sh")
	s.waitLine("crash1", "begun")
	st, err := s.status.Status(context.Background(), "crash1")
	if err != nil || st == nil || byID[st.Executor] == nil {
		t.Fatalf("status of crash1: %+v %v", st, err)
	}
	victim := byID[st.Executor]
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-victim.done
	d := s.waitDone("crash1")
	if d.Result == nil || d.Result.Status != task.Lost {
		t.Fatalf("done of a task whose executor died: %+v", d.Result)
	}
	// executors tells the dead one from the living by their heartbeats.
	var ex struct {
		Executors []struct {
			ID      string `json:"id"`
			Alive   bool   `json:"alive"`
			PID     int    `json:"pid"`
			Running int    `json:"running"`
		} `json:"executors"`
	}
	r := cli("executors", "-config="+s.clientConfig(), "-json")
	if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &ex) != nil || len(ex.Executors) != 3 {
		t.Fatalf("executors -json after a crash:\n%s", r)
	}
	for _, x := range ex.Executors {
		if e := byID[x.ID]; e == nil || x.Alive != (e != victim) || x.PID != e.cmd.Process.Pid || x.Running != 0 {
			t.Errorf("executors -json: %+v (the victim is %s)", x, victim.id)
		}
	}
	// And the survivor still serves: the group hands it the dead one's
	// partitions.
	s.submit("after1", "hello.sh again")
	s.waitDone("after1")

	time.Sleep(2 * time.Second) // room for a second done, which must not come
	for _, id := range []string{"ok1", "dup1", "kb1", "reb1", "kr1", "crash1", "after1"} {
		if n := len(s.dones(id)); n != 1 {
			t.Errorf("%s: %d dones, want 1: %+v", id, n, s.dones(id))
		}
	}
	s.mu.Lock()
	// Each task's messages are keyed by its id, so they stay in order on
	// one partition: its done is its last message, and its lines keep
	// their seq order.
	for _, id := range []string{"ok1", "dup1", "kb1", "reb1", "kr1", "crash1", "after1"} {
		msgs := s.logs[id]
		if len(msgs) == 0 || msgs[len(msgs)-1].MsgType != task.MsgDone {
			t.Errorf("%s: the done is not the last of its %d messages", id, len(msgs))
		}
		for i := 1; i < len(msgs); i++ {
			if msgs[i].MsgType != task.MsgDone && msgs[i-1].MsgType != task.MsgDone && msgs[i].Seq <= msgs[i-1].Seq {
				t.Errorf("%s: seq %d after %d", id, msgs[i].Seq, msgs[i-1].Seq)
			}
		}
	}
	for _, id := range []string{"reb1", "crash1"} {
		begun := 0
		for _, l := range s.logs[id] {
			if l.Data == "begun" {
				begun++
			}
		}
		if begun != 1 {
			t.Errorf("%s began %d times, want once", id, begun)
		}
	}
	s.mu.Unlock()
}

// clientConfig writes the config a client of the site uses.
func (s *kafkaSite) clientConfig() string {
	s.t.Helper()
	cfg, _ := json.Marshal(map[string]any{
		"transport": "kafka", "kafka_brokers": s.broker.ListenAddrs(), "queue_name": s.queue,
		"cmd_dir": s.dir, "executor_ttl": "1s",
	})
	path := filepath.Join(s.t.TempDir(), "client.json")
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		s.t.Fatal(err)
	}
	return path
}

type cliRun struct {
	code           int
	stdout, stderr string
}

func cli(args ...string) cliRun {
	var stdout, stderr strings.Builder
	code := run(args, &stdout, &stderr)
	return cliRun{code, stdout.String(), stderr.String()}
}

func (r cliRun) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// TestKafkaClientCommands runs submit, kill, status and logs against an
// executor on the Kafka transport, as a user would.
func TestKafkaClientCommands(t *testing.T) {
	s := newKafkaSite(t)
	e := s.start("cli")
	cfg := "-config=" + s.clientConfig()

	// submit -wait prints the task's output and exits with its status.
	r := cli("submit", cfg, "-id=kw1", "-wait", "hello.sh", "world")
	if r.code != exitOK || r.stdout != "hello world\n" || !strings.Contains(r.stderr, "to stderr\n") ||
		!strings.Contains(r.stderr, "done: succeeded (exit 0)") || !strings.Contains(r.stderr, "over Kafka the id was checked against the status topic only") {
		t.Fatalf("submit -wait of a succeeding task:\n%s", r)
	}
	r = cli("submit", cfg, "-id=kf1", "-wait", "fail.sh")
	if r.code != exitFailed || r.stdout != "failing\n" || !strings.Contains(r.stderr, "done: failed (exit 3)") {
		t.Fatalf("submit -wait of a failing task:\n%s", r)
	}

	// The status of a finished task.
	r = cli("status", cfg, "kw1")
	if r.code != exitOK || !strings.Contains(r.stdout, "id:       kw1\nstate:    succeeded\nexecutor: "+e.id+"\nexit:     0\n") {
		t.Fatalf("status of a finished task:\n%s", r)
	}
	r = cli("status", cfg, "kf1", "-json")
	var st struct {
		State string   `json:"state"`
		Done  task.Log `json:"done"`
	}
	if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &st) != nil || st.State != "failed" || st.Done.Result == nil || st.Done.ExitCode != 3 {
		t.Fatalf("status -json of a failed task:\n%s", r)
	}

	// A second submit of an id an executor has claimed is refused.
	r = cli("submit", cfg, "-id=kw1", "hello.sh", "again")
	if r.code != exitFailed || !strings.Contains(r.stderr, `id "kw1" is a duplicate`) || !strings.Contains(r.stderr, "ended: succeeded, on executor "+e.id) {
		t.Fatalf("submit of a used id:\n%s", r)
	}

	// logs of a finished task, with and without -f.
	for _, args := range [][]string{{"logs", cfg, "kw1"}, {"logs", cfg, "-f", "kw1"}} {
		r = cli(args...)
		if r.code != exitOK || r.stdout != "hello world\n" || !strings.Contains(r.stderr, "to stderr\n") {
			t.Fatalf("%v of a finished task:\n%s", args, r)
		}
	}

	// logs -f of a running task follows it to its done; kill ends it.
	r = cli("submit", cfg, "-id=kr1", "long.sh")
	if r.code != exitOK || r.stdout != "kr1\n" {
		t.Fatalf("submit:\n%s", r)
	}
	var out, errs observe.Buffer
	followed := make(chan int, 1)
	go func() { followed <- run([]string{"logs", cfg, "-f", "kr1"}, &out, &errs) }()
	observe.Eventually(t, "logs -f to print the running task's line", 30*time.Second, func() bool { return out.String() == "begun\n" })
	r = cli("kill", cfg, "kr1")
	if r.code != exitOK || r.stdout != "kill sent for kr1, running on executor "+e.id+"\n" {
		t.Fatalf("kill of a running task:\n%s", r)
	}
	select {
	case code := <-followed:
		if code != exitFailed || !strings.Contains(errs.String(), "done: killed") {
			t.Fatalf("logs -f of the killed task: exit %d, stdout %q, stderr %q", code, out.String(), errs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("logs -f did not end at the killed task's done; stdout %q, stderr %q", out.String(), errs.String())
	}
	r = cli("status", cfg, "kr1")
	if r.code != exitOK || !strings.Contains(r.stdout, "state:    killed\n") {
		t.Fatalf("status of the killed task:\n%s", r)
	}
	r = cli("kill", cfg, "kr1")
	if r.code != exitFailed || !strings.Contains(r.stderr, `task "kr1" already ended (killed); nothing to kill`) {
		t.Fatalf("kill of an ended task:\n%s", r)
	}

	// An id nobody submitted: status says so, logs -f gives up at its
	// -timeout, submit -wait at its -wait_timeout.
	r = cli("status", cfg, "nosuch")
	if r.code != exitFailed || !strings.Contains(r.stderr, `task-job status: not known: task "nosuch" has not been claimed by an executor`) ||
		!strings.Contains(r.stderr, "1 of 1 executors alive") {
		t.Fatalf("status of an unknown id:\n%s", r)
	}
	r = cli("logs", cfg, "-f", "-timeout=2s", "nosuch")
	if r.code != exitTimeout || !strings.Contains(r.stderr, "gave up after 2s (-timeout)") {
		t.Fatalf("logs -f of an unknown id:\n%s", r)
	}

	// Every task got exactly one done.
	for _, id := range []string{"kw1", "kf1", "kr1"} {
		s.waitDone(id)
		if n := len(s.dones(id)); n != 1 {
			t.Errorf("%s: %d dones", id, n)
		}
	}

	// ps lists what the status topic holds, newest change first, with
	// the filters it can apply, and refuses the ones it cannot.
	r = cli("ps", cfg)
	rows := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != exitOK || len(rows) != 4 || !strings.HasPrefix(rows[0], "ID ") ||
		!strings.HasPrefix(rows[1], "kr1 ") || !strings.Contains(rows[1], " killed ") || !strings.Contains(rows[1], e.id) ||
		!strings.HasPrefix(rows[2], "kf1 ") || !strings.Contains(rows[2], " failed ") ||
		!strings.HasPrefix(rows[3], "kw1 ") || !strings.Contains(rows[3], " succeeded ") {
		t.Fatalf("ps over Kafka:\n%s", r)
	}
	r = cli("ps", cfg, "-state=failed", "-json")
	var list struct {
		Tasks []struct{ ID, State string } `json:"tasks"`
	}
	if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &list) != nil || len(list.Tasks) != 1 || list.Tasks[0].ID != "kf1" {
		t.Fatalf("ps -state=failed -json over Kafka:\n%s", r)
	}
	r = cli("ps", cfg, "-limit=1")
	if r.code != exitOK || strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stderr, "more tasks match") {
		t.Fatalf("ps -limit=1 over Kafka:\n%s", r)
	}
	r = cli("executors", cfg)
	rows = strings.Split(strings.TrimSpace(r.stdout), "\n")
	host, _ := os.Hostname()
	if r.code != exitOK || len(rows) != 2 || !strings.HasPrefix(rows[0], "ID ") ||
		!regexp.MustCompile(`^`+regexp.QuoteMeta(e.id)+` +yes +0 +`+regexp.QuoteMeta(host)+` +`+strconv.Itoa(e.cmd.Process.Pid)+` +\d+s ago$`).MatchString(rows[1]) {
		t.Fatalf("executors over Kafka:\n%s", r)
	}
	r = cli("ps", cfg, "-rule=hello")
	if r.code != 2 || !strings.Contains(r.stderr, "tube, rule and key cannot be filtered on this transport") {
		t.Fatalf("ps -rule over Kafka:\n%s", r)
	}
}

// Over Kafka the client commands say which brokers they could not use, and
// which topics are missing, instead of waiting.
func TestKafkaClientConnectErrors(t *testing.T) {
	broker, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	for _, c := range []struct {
		brokers []string
		want    string
	}{
		{broker.ListenAddrs(), "missing topics nokq, nokq_control, nokq_logs, nokq_status, nokq_executors, nokq_signatures, nokq_audit: an executor creates them"},
		{[]string{"127.0.0.1:1"}, "cannot use Kafka at 127.0.0.1:1 (kafka_brokers in "},
	} {
		cfg, _ := json.Marshal(map[string]any{"transport": "kafka", "kafka_brokers": c.brokers, "queue_name": "nokq", "cmd_dir": "/"})
		path := filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(path, cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		r := cli("status", "-config="+path, "x")
		if r.code != exitFailed || !strings.Contains(r.stderr, c.want) || r.stdout != "" {
			t.Fatalf("brokers %v:\n%s", c.brokers, r)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("brokers %v: took %s to fail", c.brokers, d)
		}
	}
}

// An executor SIGKILLed after its claim is durable and before the tasks
// topic's offset is committed (the test kills it when its commit reaches
// the broker, and the commit is dropped): the record is delivered again to
// the peer, whose claim is a duplicate, and the peer reports the task lost.
// It is never run, by either.
func TestKafkaExecutorKilledBetweenClaimAndCommit(t *testing.T) {
	s := newKafkaSite(t)
	a := s.start("a")
	var killed atomic.Bool
	s.broker.ControlKey(int16(kmsg.OffsetCommit), func(r kmsg.Request) (kmsg.Response, error, bool) {
		s.broker.KeepControl()
		if r.(*kmsg.OffsetCommitRequest).Group != s.queue+"-executors" || killed.Load() {
			return nil, nil, false
		}
		killed.Store(true)
		_ = a.cmd.Process.Kill()
		return nil, errors.New("the executor died"), true
	})
	s.submit("cc1", "long.sh")
	observe.Eventually(t, "the commit of cc1's claim to be attempted", 30*time.Second, killed.Load)
	<-a.done
	if st, err := s.status.Status(context.Background(), "cc1"); err != nil || st == nil || st.State != task.Running || st.Executor != a.id {
		t.Fatalf("status of cc1 after the crash: %+v %v (want its claim, running on %s)", st, err, a.id)
	}
	s.start("b")
	d := s.waitDone("cc1")
	if d.Result == nil || d.Result.Status != task.Lost {
		t.Fatalf("done of a task whose executor died before its commit: %+v", d.Result)
	}
	// The peer has had the redelivered record (its group took a's
	// partitions): a task after it on the same partition is served.
	s.submit("cc2", "hello.sh after")
	s.waitDone("cc2")
	time.Sleep(time.Second) // room for a second done, which must not come
	if n := len(s.dones("cc1")); n != 1 {
		t.Errorf("cc1: %d dones, want 1", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.logs["cc1"] {
		if l.Data == "begun" {
			t.Errorf("cc1 ran (after its claim was lost with its executor): %+v", l)
		}
	}
}

// freePort returns a TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// A broker restart with its data (kfake's data directory, the same
// address): the executor reconnects, its running task keeps its claim and
// takes a kill sent after the restart, a task submitted before the restart
// and one after it both run once, and no status or done is lost.
func TestKafkaBrokerRestart(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	opts := []kfake.Opt{kfake.DataDir(dir), kfake.Ports(port)}
	s := newKafkaSite(t, opts...)
	s.start("a")
	s.submit("br1", "hello.sh before")
	s.waitDone("br1")
	s.submit("br2", "long.sh")
	s.waitLine("br2", "begun")

	s.broker.Close()
	broker, err := kfake.NewCluster(kafkaBrokerOpts(opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	s.broker = broker

	// A client started now reads the status from the restarted broker
	// (the site's own view remembers it).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := kafkaqueue.NewClient(ctx, broker.ListenAddrs(), nil, kafkaqueue.ClientConfig{Names: kafkaqueue.Names{Tasks: s.queue}})
	if err != nil {
		t.Fatalf("the restarted broker lost the topics: %v", err)
	}
	defer cl.Close()
	for id, want := range map[string]task.State{"br1": task.Succeeded, "br2": task.Running} {
		if st, err := cl.Status(ctx, id); err != nil || st == nil || st.State != want {
			t.Fatalf("status of %s after the restart: %+v %v, want %s", id, st, err, want)
		}
	}
	s.kill("br2")
	if d := s.waitDone("br2"); d.Result == nil || d.Result.Status != task.Killed {
		t.Fatalf("done of the task killed after the restart: %+v", d.Result)
	}
	s.submit("br3", "hello.sh after")
	if d := s.waitDone("br3"); d.Result == nil || d.Result.Status != task.Succeeded {
		t.Fatalf("done of a task submitted after the restart: %+v", d.Result)
	}
	time.Sleep(time.Second) // room for a second done, which must not come
	for _, id := range []string{"br1", "br2", "br3"} {
		if n := len(s.dones(id)); n != 1 {
			t.Errorf("%s: %d dones, want 1: %+v", id, n, s.dones(id))
		}
	}
}

// An executor on Kafka with server_port serves the read-only endpoints:
// a task's status and its log stream, to its done.
func TestKafkaServeAPI(t *testing.T) {
	s := newKafkaSite(t)
	port := freePort(t)
	s.start("api", map[string]any{"server_port": strconv.Itoa(port)})
	s.submit("api1", "hello.sh http")
	s.waitDone("api1")
	base := fmt.Sprintf("http://127.0.0.1:%d/api/v1/tasks/api1", port)
	get := func(url string) string {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
		}
		return string(b)
	}
	var v struct {
		State    task.State `json:"state"`
		Executor string     `json:"executor"`
	}
	if body := get(base); json.Unmarshal([]byte(body), &v) != nil || v.State != task.Succeeded {
		t.Fatalf("status of api1: %s", body)
	}
	if body := get(base + "/logs"); !strings.Contains(body, "hello http") || !strings.Contains(body, "event: done") {
		t.Fatalf("log stream of api1: %s", body)
	}
	if body := get(strings.TrimSuffix(base, "/api1") + "?state=succeeded"); !strings.Contains(body, `"id":"api1"`) {
		t.Fatalf("task list: %s", body)
	}
}

// readTopic returns every record of topic, all partitions, up to their
// ends as they are now.
func (s *kafkaSite) readTopic(topic string) []*kgo.Record {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(s.cl).ListEndOffsets(ctx, topic)
	if err != nil {
		s.t.Fatal(err)
	}
	parts := map[int32]kgo.Offset{}
	left := 0
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			parts[o.Partition] = kgo.NewOffset().AtStart()
			left++
		}
	})
	if left == 0 {
		return nil
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(s.broker.ListenAddrs()...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}))
	if err != nil {
		s.t.Fatal(err)
	}
	defer rd.Close()
	var out []*kgo.Record
	for left > 0 {
		fs := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			s.t.Fatalf("reading %s timed out", topic)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, r)
			if end, _ := ends.Lookup(topic, r.Partition); r.Offset+1 == end.Offset {
				left--
			}
		})
	}
	return out
}

// On Kafka, an executor that requires signatures remembers each accepted
// signature in the signatures topic, shared with its peers, and copies its
// audit log to the audit topic, keyed by its id: the two guards a Redis
// deployment has, without Redis.
func TestKafkaSignaturesAndAuditMirror(t *testing.T) {
	s := newKafkaSite(t)
	dir := t.TempDir()
	keys, auditDir := filepath.Join(dir, "keys"), filepath.Join(dir, "audit")
	for _, d := range []string{keys, auditDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	const secret = "0123456789abcdef0123456789abcdef0123456789abcdef"
	if err := os.WriteFile(filepath.Join(keys, "web"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auditFile := filepath.Join(auditDir, "audit.jsonl")
	e := s.start("signed", map[string]any{"signing_keys_dir": keys, "require_signatures": true, "audit_file": auditFile})

	tk := task.Task{ID: "signed1", Type: "t", Task: task.Spec{Cmdline: "hello.sh signed", CmdArgs: []string{}}}
	signature.Sign(&tk, "web", []byte(secret), time.Now())
	raw, err := json.Marshal(tk)
	if err != nil {
		t.Fatal(err)
	}
	s.produce(s.queue, string(raw))
	if d := s.waitDone("signed1"); d.Result == nil || d.Result.Status != task.Succeeded {
		t.Fatalf("signed task: %+v", d)
	}
	topics := s.status.Topics()
	var uses int
	for _, r := range s.readTopic(topics.Signatures) {
		if string(r.Key) == kafkaguard.Key("web", tk.Sig.MAC) {
			uses++
		}
	}
	if uses != 1 {
		t.Errorf("the signatures topic holds %d uses of the task's signature, want 1", uses)
	}

	// The audit topic catches up with the local log: every line, once, in
	// order, under this executor's key.
	var local [][]byte
	observe.Eventually(t, "the audit topic to hold the local log", 20*time.Second, func() bool {
		data, err := os.ReadFile(auditFile)
		if err != nil {
			t.Fatal(err)
		}
		local = bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
		var copied [][]byte
		for _, r := range s.readTopic(topics.Audit) {
			if string(r.Key) == e.id {
				copied = append(copied, r.Value)
			}
		}
		return len(local) >= 4 && slices.EqualFunc(local, copied, bytes.Equal)
	})
	if !strings.Contains(e.log.String(), "topic="+topics.Audit) {
		t.Errorf("the start-up line does not name the audit topic:\n%s", e.log.String())
	}

	// audit -verify, given the executor's config, compares the log with
	// that copy, and names a tail removed from the local log.
	code, out, stderr := runAuditCmd("-config="+e.cfg, "-verify")
	if want := fmt.Sprintf("the mirror topic %s (executor %s) agrees: ", topics.Audit, e.id); code != 0 || !strings.Contains(out, want) {
		t.Fatalf("audit -verify of the untouched log: exit %d, want %q:\n%s%s", code, want, out, stderr)
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(15 * time.Second):
		t.Fatal("the executor did not stop within 15s of SIGTERM")
	}
	if err := os.WriteFile(auditFile, append(bytes.Join(local[:len(local)-2], []byte("\n")), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runAuditCmd("-config="+e.cfg, "-verify")
	if code != 1 || !strings.Contains(out, "intact: ") || !strings.Contains(out, "BROKEN:") || !strings.Contains(out, "tail was removed") {
		t.Fatalf("audit -verify of a log whose last 2 records were removed: exit %d:\n%s", code, out)
	}
}
