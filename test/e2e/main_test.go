// Package e2e tests the task-job binary as users run it: built from
// cmd/task-job, started as a separate process with a config.json, against a
// real redis-server, and killed with real signals.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/task"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "task-job-e2e-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "task-job")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "../../cmd/task-job")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building task-job:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running task-job process whose log is kept for the test.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{}
	err  error
}

// start runs the binary with args; it is killed at cleanup if still running.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(binary, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	r, w := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	go func() { p.err = p.cmd.Wait(); w.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("log of %v:\n%s", args, p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// waitLog waits until the process has logged substr.
func (p *proc) waitLog(t *testing.T, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.output(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log within %v:\n%s", substr, timeout, p.output())
		}
		time.Sleep(20 * time.Millisecond) // polling the log
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("process did not exit within %v", timeout)
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return 0
}

func (p *proc) signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// writeConfig writes a config.json in the style users have: comments and a
// trailing comma.
func writeConfig(t *testing.T, keys map[string]any) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("{\n  // written by the test\n")
	for k, v := range keys {
		j, _ := json.Marshal(v)
		fmt.Fprintf(&b, "  %q: %s,\n", k, j)
	}
	b.WriteString("}\n")
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func script(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func submit(t *testing.T, rdb redis.UniversalClient, id, cmdline string, args ...string) {
	t.Helper()
	if args == nil {
		args = []string{}
	}
	raw, _ := json.Marshal(task.Task{ID: id, Type: "e2e", Task: task.Spec{Cmdline: cmdline, CmdArgs: args}})
	if err := rdb.RPush(context.Background(), "queue_job_task", raw).Err(); err != nil {
		t.Fatal(err)
	}
}

// doneOf pops TaskLog messages until id's done arrives; other messages are
// kept in seen.
func doneOf(t *testing.T, rdb redis.UniversalClient, seen map[string][]task.Log, id string, timeout time.Duration) task.Log {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range seen[id] {
			if l.MsgType == task.MsgDone {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no done for %s within %v (seen: %v)", id, timeout, seen[id])
		}
		res, err := rdb.BLPop(context.Background(), time.Second, "queue_job_task_logs").Result()
		if err != nil {
			continue
		}
		var l task.Log
		if err := json.Unmarshal([]byte(res[1]), &l); err != nil {
			t.Fatalf("malformed TaskLog %q", res[1])
		}
		seen[l.ID] = append(seen[l.ID], l)
	}
}
