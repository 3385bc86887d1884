package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/redisserver"
)

// sandboxDir returns a cmd_dir that the sandbox's unprivileged task user can
// reach: t.TempDir makes the directory and its per-test parent 0700.
func sandboxDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// bashScript writes an executable bash script (script writes sh ones; some
// tasks here need bash's /dev/tcp).
func bashScript(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/bash\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// writeFile replaces path's content atomically, as an operator's editor or
// config management would, so a SIGHUP never reads half a file.
func writeFile(t *testing.T, path, body string, mode os.FileMode) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// guarded is an executor started with the sandbox required, plus what a
// test needs to talk to it.
type guarded struct {
	p    *proc
	cfg  string
	rdb  *redis.Client
	seen map[string][]task.Log
	srv  *redisserver.Server
}

// startGuarded starts a redis-server and an executor with isolation "on",
// so a host that cannot sandbox fails the test instead of weakening it.
func startGuarded(t *testing.T, dir, id string, extra map[string]any) *guarded {
	t.Helper()
	srv := redisserver.Start(t)
	return startGuardedOn(t, srv, dir, id, extra)
}

func startGuardedOn(t *testing.T, srv *redisserver.Server, dir, id string, extra map[string]any) *guarded {
	t.Helper()
	keys := map[string]any{"isolation": "on"}
	for k, v := range extra {
		keys[k] = v
	}
	cfg := config(t, srv.Addr(), dir, id, keys)
	g := &guarded{cfg: cfg, rdb: srv.Client(t), seen: map[string][]task.Log{}, srv: srv}
	g.p = startTidy(t, cfg, id)
	g.p.waitLog(t, "executor serving", 20*time.Second)
	return g
}

// uniqueID makes an executor_id no other test run on this host uses: a
// restarted executor removes every cgroup under its id's parent group.
func uniqueID(name string) string { return fmt.Sprintf("%s-%d", name, os.Getpid()) }

// startTidy starts an executor that is stopped gracefully at cleanup (start
// alone SIGKILLs it, leaving its spare cgroups), and removes the then-empty
// parent groups of its executor_id.
func startTidy(t *testing.T, cfg, id string) *proc {
	t.Helper()
	p := start(t, "-config="+cfg)
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
			}
		}
		for _, c := range []string{"memory", "cpu", "cpuacct", "pids", "freezer", ""} {
			_ = os.Remove(filepath.Join("/sys/fs/cgroup", c, "task-job-"+id))
		}
	})
	return p
}

// push RPUSHes a task as a client would.
func (g *guarded) push(t *testing.T, tk task.Task) {
	t.Helper()
	if tk.Task.CmdArgs == nil {
		tk.Task.CmdArgs = []string{}
	}
	raw, err := json.Marshal(tk)
	if err != nil {
		t.Fatal(err)
	}
	g.pushRaw(t, raw)
}

func (g *guarded) pushRaw(t *testing.T, raw []byte) {
	t.Helper()
	if err := g.rdb.RPush(context.Background(), "queue_job_task", raw).Err(); err != nil {
		t.Fatal(err)
	}
}

// run submits cmdline with args and timeout and returns its done.
func (g *guarded) run(t *testing.T, id string, timeout float64, cmdline string, args ...string) task.Log {
	t.Helper()
	g.push(t, task.Task{ID: id, Type: "e2e", Task: task.Spec{Cmdline: cmdline, CmdArgs: args, Timeout: task.Seconds(timeout)}})
	return g.done(t, id)
}

func (g *guarded) done(t *testing.T, id string) task.Log {
	t.Helper()
	return doneOf(t, g.rdb, g.seen, id, 20*time.Second)
}

// lines returns the task's output lines of msgType, in order.
func (g *guarded) lines(id, msgType string) []string {
	var out []string
	for _, l := range g.seen[id] {
		if l.MsgType == msgType {
			out = append(out, l.Data)
		}
	}
	return out
}

// dones counts the done messages seen for id.
func (g *guarded) dones(id string) int {
	n := 0
	for _, l := range g.seen[id] {
		if l.MsgType == task.MsgDone {
			n++
		}
	}
	return n
}

func expectStatus(t *testing.T, what string, d task.Log, status task.State) {
	t.Helper()
	if d.Status != status {
		t.Errorf("%s: status %q (reason %q), want %q", what, d.Status, d.Reason, status)
	}
}

func expectReason(t *testing.T, what string, d task.Log, want string) {
	t.Helper()
	if d.Reason != want {
		t.Errorf("%s: reason\n  %q\nwant\n  %q", what, d.Reason, want)
	}
}

func joinLines(ss []string) string { return strings.Join(ss, "\n") }
