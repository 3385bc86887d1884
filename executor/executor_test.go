package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/observe"
	"github.com/taskjob/task-job/test/redisserver"
)

func TestEveryTerminalStatus(t *testing.T) {
	c := newCluster(t)
	c.script("ok.sh", `echo "out $1"; echo "err" >&2; echo "out 2"`)
	c.script("fail.sh", `exit 3`)
	c.script("sleep.sh", `sleep 30`)
	c.executor("a")

	c.submit("ok", "ok.sh", []string{"one two"}, 0)
	c.submit("fail", "fail.sh", nil, 0)
	c.submit("timeout", "sleep.sh", nil, 0.5)
	c.submit("rejected", "../../etc/hostname", nil, 0)
	c.submit("killed", "sleep.sh", nil, 0)
	c.waitFor("killed to start", 10*time.Second, func(map[string][]task.Log) bool { return true })

	tests := []struct {
		id     string
		status task.State
		exit   int
		reason string
	}{
		{"ok", task.Succeeded, 0, "exited with status 0"},
		{"fail", task.Failed, 3, "exited with status 3"},
		// sleep (not PID 1) dies of the SIGTERM; the script, its
		// namespace's PID 1, then exits 128+15. (On a loaded machine the
		// SIGTERM may come before sh has forked sleep: PID 1 ignores it,
		// and the kill after kill_grace ends it, exit -1; see below.)
		{"timeout", task.Timeout, 143, "timeout"},
		{"rejected", task.Rejected, -1, "cmd_dir"},
	}
	for _, tc := range tests {
		d := c.done(tc.id, 20*time.Second)
		exitOK := d.ExitCode == tc.exit || (tc.status == task.Timeout && d.ExitCode == -1 && d.Signal == "SIGKILL")
		if d.Status != tc.status || !exitOK || !strings.Contains(d.Reason, tc.reason) {
			t.Errorf("%s: done %+v, want status %s exit %d reason ~%q", tc.id, *d.Result, tc.status, tc.exit, tc.reason)
		}
		if d.Type != "test" || d.Executor != "a" {
			t.Errorf("%s: done does not echo type and executor: %+v", tc.id, d)
		}
	}
	c.kill("killed")
	if d := c.done("killed", 20*time.Second); d.Status != task.Killed {
		t.Errorf("killed: %+v", *d.Result)
	}

	// Output: in order per stream (the two streams are separate pipes, so
	// only per-stream order exists), numbered, done last; the argument with
	// a space stayed one argv entry.
	var stdout, stderr []string
	var last uint64
	msgs := c.messages("ok")
	for _, l := range msgs {
		if l.Seq <= last {
			t.Errorf("seq not increasing: %d after %d", l.Seq, last)
		}
		last = l.Seq
		switch l.MsgType {
		case task.MsgStdout:
			stdout = append(stdout, l.Data)
		case task.MsgStderr:
			stderr = append(stderr, l.Data)
		}
	}
	if got := strings.Join(stdout, "|"); got != "out one two|out 2" {
		t.Errorf("stdout of ok: %q", got)
	}
	if got := strings.Join(stderr, "|"); got != "err" {
		t.Errorf("stderr of ok: %q", got)
	}
	if msgs[len(msgs)-1].MsgType != task.MsgDone {
		t.Errorf("done is not last: %+v", msgs)
	}
}

func TestStatusIsQueryableByID(t *testing.T) {
	c := newCluster(t)
	c.script("ok.sh", `true`)
	c.executor("a")
	c.submit("s1", "ok.sh", nil, 0)
	c.done("s1", 10*time.Second)
	h, err := c.rdb.HGetAll(context.Background(), "queue_job_task:status:s1").Result()
	if err != nil || h["state"] != "succeeded" || h["executor"] != "a" || !strings.Contains(h["done"], `"status":"succeeded"`) {
		t.Fatalf("status record %v, %v", h, err)
	}
	ttl := c.rdb.TTL(context.Background(), "queue_job_task:status:s1").Val()
	if ttl <= 0 || ttl > time.Hour {
		t.Errorf("status retention TTL = %v, want (0, 1h]", ttl)
	}
}

func TestBadInputIsAnsweredAndServingGoesOn(t *testing.T) {
	c := newCluster(t)
	c.script("ok.sh", `echo fine`)
	c.executor("a", func(o *Options) { o.MaxTaskBytes = 1 << 20 })
	huge := `{"id":"huge","type":"t","task":{"cmdline":"ok.sh","cmd_args":["` + strings.Repeat("x", 10<<20) + `"]}}`
	bad := []struct{ id, raw, reason string }{
		{"", `this is not json`, ""},
		{"", `{"task":{"cmdline":"ok.sh"}}`, ""},
		{"42", `{"id":42,"task":{"cmdline":"ok.sh"}}`, "string"},
		{"mixed", `{"ID":"mixed","task":{"cmdline":"ok.sh"}}`, "case-sensitive"},
		{"types", `{"id":"types","task":{"cmdline":"ok.sh","cmd_args":"a b","timeout":"1h"}}`, "must be a JSON"},
		{"huge", huge, "over the limit"},
		{"trunc", `{"id":"trunc","task":{"cmdline":"ok.sh"`, "cut short"},
		{"dotdot", `{"id":"dotdot","task":{"cmdline":"../../../../etc/hostname"}}`, "cmd_dir"},
		{"abs", `{"id":"abs","task":{"cmdline":"/bin/sh"}}`, "jail"},
		{"bashc", `{"id":"bashc","task":{"cmdline":"bash -c id"}}`, "option"},
		{"inject", `{"id":"inject","task":{"cmdline":"ok.sh; rm -rf /"}}`, "jail"},
		{"subst", `{"id":"subst","task":{"cmdline":"ok.sh $(id)"}}`, "jail"},
		{"missing", `{"id":"missing","task":{"cmdline":"nope.sh"}}`, "jail"},
		{"nul", `{"id":"nul","task":{"cmdline":"ok.sh","cmd_args":["a\u0000b"]}}`, "NUL"},
	}
	for _, b := range bad {
		c.push(b.raw)
	}
	c.submit("after", "ok.sh", nil, 0)
	if d := c.done("after", 20*time.Second); d.Status != task.Succeeded {
		t.Fatalf("a good task after bad ones: %+v", *d.Result)
	}
	for _, b := range bad {
		if b.id == "" {
			continue
		}
		d := c.done(b.id, 5*time.Second)
		if d.Status != task.Rejected || !strings.Contains(d.Reason, b.reason) {
			t.Errorf("%s: got %s %q, want rejected ~%q", b.id, d.Status, d.Reason, b.reason)
		}
	}
	// Nothing is left behind in the executor's processing list.
	observe.Eventually(t, "processing list to empty", 5*time.Second, func() bool {
		return c.rdb.LLen(context.Background(), "queue_job_task:processing:a").Val() == 0
	})
}

func TestDuplicateIDRunsOnceAndGetsOneDone(t *testing.T) {
	c := newMemCluster(t)
	count := c.writable("count")
	c.script("count.sh", `echo x >> `+count)
	c.executor("a")
	c.submit("dup", "count.sh", nil, 0)
	c.done("dup", 10*time.Second)
	c.submit("dup", "count.sh", nil, 0)
	c.submit("next", "count.sh", nil, 0)
	c.done("next", 10*time.Second)
	b, _ := os.ReadFile(count)
	if n := strings.Count(string(b), "x"); n != 2 { // dup once, next once
		t.Errorf("script ran %d times, want 2", n)
	}
	if n := c.dones("dup"); n != 1 {
		t.Errorf("dup got %d dones, want 1", n)
	}
}

func TestTakesTaskOnlyWithAFreeSlot(t *testing.T) {
	c := newCluster(t)
	c.script("block.sh", `sleep 30`)
	waits := &waitObserver{}
	c.executor("a", func(o *Options) { o.Concurrency = 1; o.Observer = waits })
	c.submit("first", "block.sh", nil, 0)
	observe.Eventually(t, "first to be taken", 10*time.Second, func() bool {
		return c.rdb.LLen(context.Background(), names.Tasks).Val() == 0
	})
	// The second is submitted as the API and CLI do, so the queue knows
	// when it entered: its wait must count the time the slot was busy.
	raw, _ := json.Marshal(task.Task{ID: "second", Type: "test", Task: task.Spec{Cmdline: "block.sh", CmdArgs: []string{}}})
	q := redisqueue.New(c.rdb, redisqueue.Options{Names: names, Retention: time.Hour})
	if st, err := q.Submit(context.Background(), names.Tasks, "second", raw); err != nil || st != redisqueue.Pushed {
		t.Fatalf("submit second: %v, %v", st, err)
	}
	// A busy executor must leave the second task on the list for others; give it
	// a fair chance to misbehave (several blocking-pop cycles would be needed).
	time.Sleep(1500 * time.Millisecond) // observing that nothing happens needs a wait
	if n := c.rdb.LLen(context.Background(), names.Tasks).Val(); n != 1 {
		t.Fatalf("task list holds %d, want the second task still queued", n)
	}
	c.kill("first")
	c.done("first", 10*time.Second)
	observe.Eventually(t, "second to be taken", 10*time.Second, func() bool {
		return c.rdb.LLen(context.Background(), names.Tasks).Val() == 0
	})
	observe.Eventually(t, "second to start", 10*time.Second, func() bool { return len(waits.get()) == 2 })
	w := waits.get()
	// The first was plain RPUSHed and taken at once: its wait counts from
	// the take. The second sat queued for the 1.5 s above.
	if w[0] > time.Second {
		t.Errorf("first waited %v, want it taken at once", w[0])
	}
	if w[1] < 1200*time.Millisecond {
		t.Errorf("second waited %v, want at least the 1.5 s it was queued while the only slot was busy", w[1])
	}
	c.kill("second")
	c.done("second", 10*time.Second)
}

// waitObserver records the waits TaskStarted reports, in start order.
type waitObserver struct {
	nopObserver
	mu    sync.Mutex
	waits []time.Duration
}

func (o *waitObserver) TaskStarted(_ string, waited, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.waits = append(o.waits, waited)
}

func (o *waitObserver) get() []time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]time.Duration(nil), o.waits...)
}

func TestKillReachesTheRightExecutorAmongThree(t *testing.T) {
	c := newCluster(t)
	c.script("sleep.sh", `sleep 60`)
	for _, id := range []string{"a", "b", "c"} {
		c.executor(id, func(o *Options) { o.Concurrency = 2 })
	}
	ids := make([]string, 6)
	for i := range ids {
		ids[i] = "run-" + strconv.Itoa(i)
		c.submit(ids[i], "sleep.sh", nil, 0)
	}
	observe.Eventually(t, "all six to run", 15*time.Second, func() bool {
		for _, id := range ids {
			h := c.rdb.HGet(context.Background(), "queue_job_task:status:"+id, "state").Val()
			if h != "running" {
				return false
			}
		}
		return true
	})
	// Every executor is full; three more tasks stay queued.
	queued := []string{"q-0", "q-1", "q-2"}
	for _, id := range queued {
		c.submit(id, "sleep.sh", nil, 0)
	}
	for _, id := range append(queued, ids...) {
		c.kill(id)
	}
	execs := map[string]bool{}
	for _, id := range ids {
		d := c.done(id, 20*time.Second)
		if d.Status != task.Killed {
			t.Errorf("%s: %s %q", id, d.Status, d.Reason)
		}
		execs[d.Executor] = true
	}
	if len(execs) != 3 {
		t.Errorf("the six tasks ran on %v, want all three executors", execs)
	}
	for _, id := range queued {
		d := c.done(id, 20*time.Second)
		if d.Status != task.Killed || d.Reason != "killed before it started" {
			t.Errorf("queued %s: %s %q", id, d.Status, d.Reason)
		}
	}
	for _, id := range append(queued, ids...) {
		if n := c.dones(id); n != 1 {
			t.Errorf("%s got %d dones", id, n)
		}
	}
}

func TestKillEndsTheWholeTreeIncludingSetsid(t *testing.T) {
	c := newMemCluster(t)
	marker := fmt.Sprintf("7%09d", time.Now().UnixNano()%1e9)
	// A setsid daemon, a double fork, and a TERM-ignoring child.
	c.script("tree.sh", `setsid sleep 1`+marker+` &
(sleep 2`+marker+` &) &
sh -c 'trap "" TERM; sleep 3`+marker+`' &
echo started
wait`)
	c.executor("a", func(o *Options) { o.KillGrace = 300 * time.Millisecond })
	c.submit("tree", "tree.sh", nil, 0)
	c.waitFor("started", 10*time.Second, func(m map[string][]task.Log) bool { return len(m["tree"]) > 0 })
	observe.Eventually(t, "the marked processes to start", 5*time.Second, func() bool { return observe.ProcessWithMarker("3" + marker) })
	c.kill("tree")
	if d := c.done("tree", 10*time.Second); d.Status != task.Killed {
		t.Fatalf("done %+v", *d.Result)
	}
	for _, p := range []string{"1", "2", "3"} {
		if observe.ProcessWithMarker(p + marker) {
			t.Errorf("process sleep %s%s survived the kill", p, marker)
		}
	}
}

func TestBackgroundChildDoesNotDelayDone(t *testing.T) {
	c := newMemCluster(t)
	c.script("bg.sh", `sleep 60 & echo main done`)
	c.executor("a")
	start := time.Now()
	c.submit("bg", "bg.sh", nil, 0)
	d := c.done("bg", 20*time.Second)
	if d.Status != task.Succeeded {
		t.Fatalf("done %+v", *d.Result)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("done took %v: a background child held it up", el)
	}
}

func TestOutputCapAndLongLines(t *testing.T) {
	c := newMemCluster(t)
	c.script("chatty.sh", `head -c 5000 /dev/zero | tr '\0' a; echo; i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done`)
	c.executor("a", func(o *Options) { o.MaxLineBytes = 1000; o.MaxOutputBytes = 6000 })
	c.submit("chatty", "chatty.sh", nil, 0)
	d := c.done("chatty", 10*time.Second)
	if d.OutputBytes < 6000 || d.OutputDropped == 0 {
		t.Errorf("output %d bytes, %d dropped; want the cap hit", d.OutputBytes, d.OutputDropped)
	}
	var shipped int
	var notice bool
	for _, l := range c.messages("chatty") {
		if l.MsgType == task.MsgStdout {
			if len(l.Data) > 1000 {
				t.Errorf("line of %d bytes, over max_line_bytes", len(l.Data))
			}
			shipped += len(l.Data)
		}
		notice = notice || strings.Contains(l.Data, "max_output_bytes")
	}
	if shipped > 6000 || !notice {
		t.Errorf("shipped %d bytes (cap 6000), notice %v", shipped, notice)
	}
}

// Empty lines cost what they ship: a whole message each. Before they were
// counted, `yes ” | head -n 1000000` shipped 1,000,001 messages.
func TestEmptyLinesCountAgainstTheCaps(t *testing.T) {
	c := newMemCluster(t)
	c.script("blank.sh", `yes '' | head -n 20000`)
	c.executor("a", func(o *Options) { o.MaxOutputMessages = 500 })
	c.submit("blank", "blank.sh", nil, 0)

	d := c.done("blank", 20*time.Second)
	var lines int
	var notice bool
	for _, l := range c.messages("blank") {
		if l.MsgType == task.MsgStdout {
			lines++
		}
		notice = notice || strings.Contains(l.Data, "max_output_messages")
	}
	if lines > 500 || !notice {
		t.Errorf("blank: %d lines shipped (cap 500), notice %v", lines, notice)
	}
	if d.OutputDroppedLines != int64(20000-lines) || d.OutputDropped != d.OutputDroppedLines {
		t.Errorf("blank: done says %d lines / %d bytes dropped, want %d of each", d.OutputDroppedLines, d.OutputDropped, 20000-lines)
	}

	// max_output_bytes counts the messages shipped, envelope included: an
	// empty line's message is over 100 bytes, though it carries none.
	c = newMemCluster(t)
	c.script("blank.sh", `yes '' | head -n 20000`)
	c.executor("c", func(o *Options) { o.MaxOutputBytes = 50000 })
	c.submit("bytes", "blank.sh", nil, 0)
	d = c.done("bytes", 20*time.Second)
	lines, notice = 0, false
	for _, l := range c.messages("bytes") {
		if l.MsgType == task.MsgStdout {
			lines++
		}
		notice = notice || strings.Contains(l.Data, "max_output_bytes")
	}
	if lines == 0 || lines > 50000/100 || !notice || d.OutputDroppedLines != int64(20000-lines) {
		t.Errorf("bytes: %d empty lines shipped under a 50,000-byte cap, notice %v, %d dropped", lines, notice, d.OutputDroppedLines)
	}

	// The rate cap drops a burst and lets the task speak again once quiet.
	c = newMemCluster(t)
	c.script("burst.sh", `yes '' | head -n 20000; sleep 1.2; echo after`)
	c.executor("b", func(o *Options) { o.MaxOutputRate = 1000 })
	c.submit("burst", "burst.sh", nil, 0)
	d = c.done("burst", 20*time.Second)
	var after, rate bool
	lines = 0
	for _, l := range c.messages("burst") {
		switch {
		case l.MsgType == task.MsgStdout && l.Data == "after":
			after = true
		case l.MsgType == task.MsgStdout:
			lines++
		}
		rate = rate || strings.Contains(l.Data, "max_output_rate")
	}
	// The bucket holds a second's worth and refills while the burst is
	// read, so how many pass depends on the machine's speed; a cap that
	// did not hold would pass all 20,000.
	if lines > 10000 || !rate || !after || d.OutputDroppedLines < 10000 {
		t.Errorf("burst: %d shipped (rate 1000/s), notice %v, line after the pause %v, %d dropped", lines, rate, after, d.OutputDroppedLines)
	}
}

func TestGracefulShutdownFinishesOrKillsAndReports(t *testing.T) {
	c := newCluster(t)
	c.script("short.sh", `sleep 0.5; echo finished`)
	c.script("long.sh", `sleep 60`)
	stop := c.executor("a", func(o *Options) { o.ShutdownGrace = 2 * time.Second })
	c.submit("short", "short.sh", nil, 0)
	c.submit("long", "long.sh", nil, 0)
	observe.Eventually(t, "both to run", 10*time.Second, func() bool {
		return c.rdb.HGet(context.Background(), "queue_job_task:status:long", "state").Val() == "running" &&
			c.rdb.HGet(context.Background(), "queue_job_task:status:short", "state").Val() == "running"
	})
	c.submit("queued", "short.sh", nil, 0) // no free slot: must stay queued
	stop()
	if d := c.done("short", 10*time.Second); d.Status != task.Succeeded {
		t.Errorf("short: %+v", *d.Result)
	}
	if d := c.done("long", 10*time.Second); d.Status != task.Killed || !strings.Contains(d.Reason, "shut down") {
		t.Errorf("long: %+v", *d.Result)
	}
	if n := c.rdb.LLen(context.Background(), names.Tasks).Val(); n != 1 {
		t.Errorf("task list holds %d after shutdown, want the queued task back", n)
	}
	if c.rdb.SIsMember(context.Background(), "queue_job_task:executors", "a").Val() {
		t.Error("executor still registered after a clean shutdown")
	}
}

func TestRedisOutageLosesNothingAndKeepsOrder(t *testing.T) {
	c := newCluster(t, redisserver.Options{Persist: true})
	c.script("count.sh", `i=1; while [ $i -le 120 ]; do echo $i; i=$((i+1)); sleep 0.05; done`)
	spoolDir := filepath.Join(t.TempDir(), "spool")
	// A small memory budget, so the outage's messages must spill to disk.
	c.executor("a", func(o *Options) { o.SpoolDir, o.SpoolMemBytes = spoolDir, 2<<10 })
	c.submit("outage", "count.sh", nil, 0)
	c.waitFor("first lines", 10*time.Second, func(m map[string][]task.Log) bool { return len(m["outage"]) >= 5 })
	c.redis.Stop(t)
	outage := time.Now()
	observe.Eventually(t, "messages to spill to disk", 10*time.Second, func() bool {
		files, _ := os.ReadDir(spoolDir)
		return len(files) > 0
	})
	time.Sleep(time.Until(outage.Add(10 * time.Second))) // the outage itself: Redis is down for 10 s
	c.redis.Restart(t)
	t.Logf("Redis was down for %v", time.Since(outage))
	d := c.done("outage", 30*time.Second)
	if d.Status != task.Succeeded {
		t.Fatalf("done %+v", *d.Result)
	}
	seen := map[string]bool{}
	next := 1
	for _, l := range c.messages("outage") {
		if l.MsgType != task.MsgStdout || seen[l.Data] { // a retried batch may repeat lines; seq tells
			continue
		}
		seen[l.Data] = true
		if l.Data != strconv.Itoa(next) {
			t.Fatalf("line %q where %d was due: order broken or a line lost", l.Data, next)
		}
		next++
	}
	if next != 121 {
		t.Fatalf("got lines up to %d, want 120", next-1)
	}
	if n := c.dones("outage"); n != 1 {
		t.Errorf("%d dones", n)
	}
}

// 1500 sandboxed tasks (500 an executor) take 1-4 minutes under -race on
// two cores, more when other tests share them; 5000 timed out at 10
// minutes on a loaded machine without adding a race the history checker
// does not try.
func TestFloodOverThreeExecutorsRunsEachTaskOnce(t *testing.T) {
	n := 1500
	if testing.Short() {
		n = 500
	}
	c := newCluster(t)
	c.script("true.sh", `exit 0`)
	for _, id := range []string{"a", "b", "c"} {
		c.executor(id, func(o *Options) { o.Concurrency = 4; o.Logs = false })
	}
	pipe := c.rdb.Pipeline()
	for i := 0; i < n; i++ {
		pipe.RPush(context.Background(), names.Tasks, fmt.Sprintf(`{"id":"f%d","type":"flood","tube":"","task":{"cmdline":"true.sh","cmd_args":[],"timeout":60}}`, i))
	}
	if _, err := pipe.Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.waitFor(fmt.Sprintf("%d dones", n), 10*time.Minute, func(m map[string][]task.Log) bool { return len(m) >= n })
	t.Logf("%d tasks over 3 executors in %v (%.0f tasks/s)", n, time.Since(start), float64(n)/time.Since(start).Seconds())
	per := map[string]int{}
	for i := 0; i < n; i++ {
		msgs := c.messages("f" + strconv.Itoa(i))
		if len(msgs) != 1 || msgs[0].Status != task.Succeeded {
			t.Fatalf("f%d: %d messages, first %+v", i, len(msgs), msgs)
		}
		per[msgs[0].Executor]++
	}
	t.Logf("tasks per executor: %v", per)
}

func TestLogsHTTPReceivesEveryMessageWithRetries(t *testing.T) {
	var mu sync.Mutex
	var got []task.Log
	failures := 1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if failures > 0 { // the first POST fails: it must be retried
			failures--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var l task.Log
		if err := json.NewDecoder(r.Body).Decode(&l); err != nil || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("POST body: %v, content type %q", err, r.Header.Get("Content-Type"))
		}
		got = append(got, l)
	}))
	defer srv.Close()
	c := newMemCluster(t)
	c.script("hi.sh", `echo hi`)
	stop := c.executor("a", func(o *Options) { o.LogsHTTP = srv.URL })
	c.submit("h", "hi.sh", nil, 0)
	c.done("h", 10*time.Second)
	stop() // delivers what the HTTP sink still holds
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0].Data != "hi" || got[1].MsgType != task.MsgDone || got[1].Status != task.Succeeded {
		t.Errorf("logs_http received %+v", got)
	}
}

// A take whose reply was lost (Redis moved the task, the executor never saw
// it) leaves the task in the executor's processing list; the sweep puts it
// back and it runs, without waiting for a restart.
func TestTaskStrandedInProcessingListIsPutBack(t *testing.T) {
	c := newCluster(t)
	c.script("ok.sh", `echo ok`)
	c.executor("a")
	raw := `{"id":"stranded","type":"test","tube":"","task":{"cmdline":"ok.sh","cmd_args":[],"timeout":0}}`
	if err := c.rdb.RPush(context.Background(), "queue_job_task:processing:a", raw).Err(); err != nil {
		t.Fatal(err)
	}
	if d := c.done("stranded", 15*time.Second); d.Status != task.Succeeded {
		t.Fatalf("done %+v", *d.Result)
	}
	// Tasks the executor does hold are never swept: a long one still runs once.
	c.script("slow.sh", `sleep 4; echo slow`)
	c.submit("held", "slow.sh", nil, 0)
	if d := c.done("held", 20*time.Second); d.Status != task.Succeeded || c.dones("held") != 1 {
		t.Fatalf("held: %+v, %d dones", *d.Result, c.dones("held"))
	}
}

// A task ended before its process started says what ended it: the
// history checker holds a done to its story (a "killed" needs a kill
// message; a shutdown must say so), and a start that failed because the
// executor was shutting down is no failure of the task.
func TestEndingBeforeStartNamesItsCause(t *testing.T) {
	for _, c := range []struct {
		cause  error
		state  task.State
		reason string
	}{
		{ErrKilled, task.Killed, task.KilledBeforeStart},
		{ErrShutdown, task.Killed, "killed: the executor shut down before the task started"},
		{ErrTimeout, task.Timeout, "timeout: its timeout ran out before it started"},
		{ErrFenced, task.Lost, "lost: " + ErrFenced.Error() + "; it was not started"},
		{ErrRegistrationLost, task.Lost, "lost: " + ErrRegistrationLost.Error() + "; it was not started"},
	} {
		if got := beforeStart(fmt.Errorf("wrapped: %w", c.cause)); got.state != c.state || got.reason != c.reason {
			t.Errorf("before start, %v: %s %q, want %s %q", c.cause, got.state, got.reason, c.state, c.reason)
		}
	}
}
