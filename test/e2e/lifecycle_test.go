package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/observe"
	"github.com/taskjob/task-job/test/redisserver"
)

// oneHostConfig is the config two executors on one host share: the same
// Redis, cmd_dir and state_dir, and nothing else of their own but the
// executor_id (so the spool and work directories are the defaults derived
// from it).
func oneHostConfig(t *testing.T, srv, dir, stateDir, id string) string {
	t.Helper()
	return writeConfig(t, map[string]any{
		"redis_addr": srv, "cmd_dir": dir, "executor_id": id, "concurrency": 1,
		"executor_ttl": "1s", "kill_grace": "1s", "shutdown_grace": "1s", "logs": true,
		"state_dir": stateDir, "isolation": "on",
	})
}

func state(rdb *redis.Client, id string) (string, string) {
	h := rdb.HMGet(context.Background(), "queue_job_task:status:"+id, "state", "executor").Val()
	s, _ := h[0].(string)
	e, _ := h[1].(string)
	return s, e
}

// cgroupParents lists the executor's parent groups (task-job-<id>) in
// every hierarchy.
func cgroupParents(id string) []string {
	var out []string
	for _, c := range []string{"memory", "cpu", "cpuacct", "pids", "freezer", ""} {
		p := filepath.Join("/sys/fs/cgroup", c, "task-job-"+id)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			out = append(out, p)
		}
	}
	return out
}

// drainLogs moves what is left on the logs list into seen.
func drainLogs(t *testing.T, rdb *redis.Client, seen map[string][]task.Log) {
	t.Helper()
	for {
		raw, err := rdb.LPop(context.Background(), "queue_job_task_logs").Result()
		if err != nil {
			return
		}
		var l task.Log
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			t.Fatalf("malformed TaskLog %q", raw)
		}
		seen[l.ID] = append(seen[l.ID], l)
	}
}

// Issue 8: two executors on one host, from one config but for the
// executor_id, run side by side; one is restarted while the other runs a
// task, and neither touches the other's cgroups, spool or tasks.
func TestTwoExecutorsOnOneHostKeepToTheirOwn(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	dir, stateDir := sandboxDir(t), sandboxDir(t)
	marker := fmt.Sprintf("8%09d", time.Now().UnixNano()%1e9)
	script(t, dir, "long.sh", "i=0; while [ $i -lt 6 ]; do echo $i; i=$((i+1)); sleep 1.5"+marker+"; done")
	idA, idB := uniqueID("host-a"), uniqueID("host-b")
	cfgA, cfgB := oneHostConfig(t, srv.Addr(), dir, stateDir, idA), oneHostConfig(t, srv.Addr(), dir, stateDir, idB)
	b := startTidy(t, cfgB, idB)
	b.waitLog(t, "executor serving", 20*time.Second)
	submit(t, rdb, "b-task", "long.sh")
	observe.Eventually(t, "b-task to run on B", 10*time.Second, func() bool {
		s, e := state(rdb, "b-task")
		return s == "running" && e == idB
	})
	parentsB := cgroupParents(idB)
	if len(parentsB) == 0 {
		t.Fatalf("B runs a sandboxed task but has no cgroup parent task-job-%s", idB)
	}
	spoolB := filepath.Join(stateDir, "spool-"+idB)
	if _, err := os.Stat(spoolB); err != nil {
		t.Fatalf("B's spool directory: %v", err)
	}
	// A starts, is stopped, and starts again, all while B's task runs.
	for life := 1; life <= 2; life++ {
		a := startTidy(t, cfgA, idA)
		a.waitLog(t, "executor serving", 20*time.Second)
		a.signal(syscall.SIGTERM)
		if code := a.wait(t, 20*time.Second); code != 0 {
			t.Errorf("A's life %d exited %d", life, code)
		}
		if s, e := state(rdb, "b-task"); s != "running" || e != idB {
			t.Fatalf("after A's life %d, b-task is %s on %q", life, s, e)
		}
		for _, p := range parentsB {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("A's life %d removed B's cgroup parent: %v", life, err)
			}
		}
		if _, err := os.Stat(spoolB); err != nil {
			t.Errorf("A's life %d removed B's spool directory: %v", life, err)
		}
	}
	if filepath.Join(stateDir, "spool-"+idA) == spoolB {
		t.Fatal("A and B share a spool directory")
	}
	if !observe.ProcessWithMarker(marker) {
		t.Error("B's task process is gone after A's restart")
	}
	seen := map[string][]task.Log{}
	d := doneOf(t, rdb, seen, "b-task", 20*time.Second)
	if d.Status != task.Succeeded || d.Executor != idB {
		t.Errorf("b-task: %s by %s (%s), want succeeded by B", d.Status, d.Executor, d.Reason)
	}
	var lines []string
	for _, l := range seen["b-task"] {
		if l.MsgType == task.MsgStdout {
			lines = append(lines, l.Data)
		}
	}
	if joinLines(lines) != "0\n1\n2\n3\n4\n5" {
		t.Errorf("b-task's output %q, want 0..5 whole", lines)
	}
}

// Issue 8: a real SIGSTOP of an executor past its executor_ttl. A peer
// declares it dead and reports its task lost; on SIGCONT the executor
// finds out, stops the task, and publishes nothing more for it: no line
// after the lost done, no second done.
func TestSIGSTOPPastTheTTLIsFencedOnResume(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	dir := sandboxDir(t)
	marker := fmt.Sprintf("6%09d", time.Now().UnixNano()%1e9)
	script(t, dir, "chatty.sh", "i=0; while [ $i -lt 300 ]; do echo $i; i=$((i+1)); sleep 0.1"+marker+"; done")
	idA, idB := uniqueID("gc-a"), uniqueID("gc-b")
	a := startGuardedOn(t, srv, dir, idA, map[string]any{"executor_ttl": "1s"})
	submit(t, rdb, "paused", "chatty.sh")
	observe.Eventually(t, "paused to run on A", 10*time.Second, func() bool {
		s, e := state(rdb, "paused")
		return s == "running" && e == idA
	})
	startGuardedOn(t, srv, dir, idB, map[string]any{"executor_ttl": "1s"})
	seen := map[string][]task.Log{}
	observe.Eventually(t, "paused's first lines", 10*time.Second, func() bool {
		return rdb.LLen(context.Background(), "queue_job_task_logs").Val() > 0
	})
	a.p.signal(syscall.SIGSTOP)
	stopped := time.Now()
	d := doneOf(t, rdb, seen, "paused", 20*time.Second)
	if d.Status != task.Lost || d.Executor != idB {
		t.Fatalf("paused: %s by %s (%s), want lost by B", d.Status, d.Executor, d.Reason)
	}
	t.Logf("lost reported %v after the SIGSTOP (executor_ttl 1s)", time.Since(stopped).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond) // paused longer still
	a.p.signal(syscall.SIGCONT)
	resumed := time.Now()
	observe.Eventually(t, "A to stop the task its peer reported lost", 10*time.Second, func() bool {
		return !observe.ProcessWithMarker(marker)
	})
	t.Logf("the task's processes were gone %v after SIGCONT", time.Since(resumed).Round(time.Millisecond))
	a.p.waitLog(t, "declared dead", 5*time.Second)
	time.Sleep(2 * time.Second) // whatever A would still publish, it has by now
	drainLogs(t, rdb, seen)
	dones, after := 0, 0
	for _, l := range seen["paused"] {
		if l.MsgType == task.MsgDone {
			dones++
		} else if dones > 0 {
			after++
		}
	}
	if dones != 1 || after != 0 {
		t.Errorf("paused: %d dones and %d lines after the lost done; want 1 and 0", dones, after)
	}
	if s, e := state(rdb, "paused"); s != "lost" || e != idB {
		t.Errorf("status after the resume: %s by %s", s, e)
	}
	// A goes on serving: a new task runs on it or on B.
	script(t, dir, "ok.sh", "echo ok")
	submit(t, rdb, "after", "ok.sh")
	if d := doneOf(t, rdb, seen, "after", 20*time.Second); d.Status != task.Succeeded {
		t.Errorf("after: %+v", d)
	}
}
