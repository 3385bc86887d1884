package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/observe"
	"github.com/taskjob/task-job/test/redisserver"
)

// fill writes to path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 512)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", path, err)
			}
			return
		}
	}
}

// The executor fails closed: while its audit log cannot be written no task
// starts, and once it can, tasks run again.
func TestAuditUnwritableStopsTasks(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root: this test must run there")
		}
		t.Skip("mounting a tmpfs needs root (CI runs as root)")
	}
	dir := sandboxDir(t)
	marks := filepath.Join(dir, "ran")
	if err := os.Mkdir(marks, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(marks, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	script(t, dir, "ok.sh", `touch "ran/$TASK_ID"; echo ran`)
	small := observe.TinyTmpfs(t)
	auditFile := filepath.Join(small, "audit.log")
	g := startGuarded(t, dir, uniqueID("full"), map[string]any{"audit_file": auditFile})
	expectStatus(t, "before the disk fills", g.run(t, "before", 0, "ok.sh"), task.Succeeded)

	fill(t, filepath.Join(small, "filler"))
	// The audit file's last page may still have room for a few records, so
	// tasks may succeed until an append fails; then either that task is
	// rejected or (when only its end record failed) the next one waits.
	var queued []string
	for i := 0; ; i++ {
		if i == 10 {
			t.Fatalf("ten tasks ran although the audit log's disk is full:\n%s", g.p.output())
		}
		id := fmt.Sprintf("full-%d", i)
		g.push(t, task.Task{ID: id, Type: "e2e", Task: task.Spec{Cmdline: "ok.sh"}})
		d, ok := g.doneWithin(t, id, 4*time.Second)
		if !ok {
			t.Logf("%s stayed queued after an earlier task's end record failed", id)
			queued = append(queued, id)
			break
		}
		if d.Status == task.Succeeded {
			continue
		}
		t.Logf("%s: %s: %s", id, d.Status, d.Reason)
		expectStatus(t, id, d, task.Rejected)
		if !strings.Contains(d.Reason, "audit log") {
			t.Errorf("%s: reason %q does not mention the audit log", id, d.Reason)
		}
		if _, err := os.Stat(filepath.Join(marks, id)); err == nil {
			t.Errorf("%s was rejected but its script ran", id)
		}
		break
	}
	g.p.waitLog(t, "the audit log cannot be written: no task is started until it can", 5*time.Second)

	// Further tasks stay on the queue for an executor that can record them.
	g.push(t, task.Task{ID: "while-full", Type: "e2e", Task: task.Spec{Cmdline: "ok.sh"}})
	queued = append(queued, "while-full")
	if d, ok := g.doneWithin(t, "while-full", 2*time.Second); ok {
		t.Fatalf("a task ended while the audit log could not be written: %+v", d)
	}
	if n := g.rdb.LLen(context.Background(), "queue_job_task").Val(); n != int64(len(queued)) {
		t.Errorf("queue holds %d tasks while the audit log is unwritable, want %d", n, len(queued))
	}
	for _, id := range queued {
		if _, err := os.Stat(filepath.Join(marks, id)); err == nil {
			t.Errorf("%s ran while the audit log could not be written", id)
		}
	}

	if err := os.Remove(filepath.Join(small, "filler")); err != nil {
		t.Fatal(err)
	}
	g.p.waitLog(t, "the audit log can be written again; taking tasks", 10*time.Second)
	for _, id := range queued {
		expectStatus(t, id+" after space was freed", g.done(t, id), task.Succeeded)
	}
	if out, code := run(t, "audit", "-file="+auditFile, "-verify"); code != 0 {
		t.Errorf("audit -verify after the outage: exit %d\n%s", code, out)
	}
}

// doneWithin is done without failing: ok is false when no done came.
func (g *guarded) doneWithin(t *testing.T, id string, timeout time.Duration) (task.Log, bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range g.seen[id] {
			if l.MsgType == task.MsgDone {
				return l, true
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			return task.Log{}, false
		}
		// BLPOP waits a whole number of seconds.
		res, err := g.rdb.BLPop(context.Background(), time.Second, "queue_job_task_logs").Result()
		if err != nil {
			continue
		}
		var l task.Log
		if err := json.Unmarshal([]byte(res[1]), &l); err != nil {
			t.Fatalf("malformed TaskLog %q", res[1])
		}
		g.seen[l.ID] = append(g.seen[l.ID], l)
	}
}

// taskGroups lists the cgroup directories of tasks under the executor's
// parent group, per sandbox/cgroup/doc.go: /<Name>/<group> in each of the
// memory, cpu, cpuacct, pids and freezer hierarchies on v1, or
// /sys/fs/cgroup/<Name>/<group> on v2. Spares ('~' names) are not tasks'.
func taskGroups(t *testing.T, name string) []string {
	t.Helper()
	var parents []string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		parents = []string{filepath.Join("/sys/fs/cgroup", name)}
	} else {
		for _, c := range []string{"memory", "cpu", "cpuacct", "pids", "freezer"} {
			parents = append(parents, filepath.Join("/sys/fs/cgroup", c, name))
		}
	}
	var groups []string
	for _, p := range parents {
		entries, _ := os.ReadDir(p)
		for _, e := range entries {
			if e.IsDir() && !strings.HasPrefix(e.Name(), "~") {
				groups = append(groups, filepath.Join(p, e.Name()))
			}
		}
	}
	return groups
}

// SIGKILL of the executor leaves no task process behind, even a setsid
// double-forked daemon; its cgroups are removed by the restarted executor,
// which reports the task lost.
func TestExecutorSIGKILLLeavesNothing(t *testing.T) {
	dir := sandboxDir(t)
	marker := fmt.Sprintf("7%09d", time.Now().UnixNano()%1e9)
	// The daemon: setsid, and its parent shell exits at once (double fork).
	script(t, dir, "daemon.sh", "setsid sh -c 'sleep 1"+marker+" &' &\nsleep 2"+marker)
	srv := redisserver.Start(t)
	id := uniqueID("sigkill")
	cgName := "task-job-" + id
	g := startGuardedOn(t, srv, dir, id, nil)
	g.push(t, task.Task{ID: "daemonizer", Type: "e2e", Task: task.Spec{Cmdline: "daemon.sh"}})
	observe.Eventually(t, "the task and its daemon to run", 10*time.Second, func() bool {
		return observe.ProcessWithMarker("1"+marker) && observe.ProcessWithMarker("2"+marker)
	})
	groups := taskGroups(t, cgName)
	if len(groups) == 0 {
		t.Fatalf("no task cgroup under %s while the task runs", cgName)
	}

	g.p.signal(syscall.SIGKILL)
	g.p.wait(t, 10*time.Second)
	observe.Eventually(t, "every process of the task to die with its executor", 5*time.Second, func() bool {
		return !observe.ProcessWithMarker("1"+marker) && !observe.ProcessWithMarker("2"+marker)
	})
	var left []string
	for _, gr := range groups {
		if _, err := os.Stat(gr); err == nil {
			left = append(left, gr)
		}
	}
	t.Logf("task cgroups left after the SIGKILL (allowed until restart): %d of %d", len(left), len(groups))

	// The same executor_id again: it cleans up what its previous run left.
	g2 := &guarded{cfg: g.cfg, rdb: g.rdb, seen: map[string][]task.Log{}, srv: srv}
	g2.p = startTidy(t, g.cfg, id)
	d := g2.done(t, "daemonizer")
	expectStatus(t, "the task of the killed executor", d, task.Lost)
	observe.Eventually(t, "the previous run's task cgroups to be removed", 10*time.Second, func() bool {
		for _, gr := range groups {
			if _, err := os.Stat(gr); err == nil {
				return false
			}
		}
		return true
	})
	if observe.ProcessWithMarker(marker) {
		t.Error("a process of the task is alive after the restart")
	}
}
