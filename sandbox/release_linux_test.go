package sandbox_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/taskjob/task-job/sandbox"
)

// TestNothingRunsAfterResult: Wait returns, and the executor publishes the
// done, before the task's cgroup and namespaces are released; no process of
// the task may act after that. Each task leaves behind a process that
// writes a file without pause and a setsid one that writes another every
// few ms, both deaf to SIGTERM and SIGHUP. (The setsid writer once slept
// 50 ms and wrote once: on a loaded machine it wrote before the main
// process exited, and the test failed on a task that behaved.)
// When Wait returns, the task's cgroup must hold no process, and neither
// file may change afterwards. The kernel gives this: a pid namespace ends
// with its PID 1, and PID 1's exit is reported only once every other
// process of it is gone. The sandbox logs a warning if it ever had to kill
// a straggler itself before the result; none may appear.
func TestNothingRunsAfterResult(t *testing.T) {
	var logs syncBuffer
	r := jailed(t, func(o *sandbox.Options) {
		o.Logger = hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})
	})
	const rounds = 10
	for i := range rounds {
		dir := taskDir(t)
		spec := shell(`
			( trap '' TERM HUP; while :; do echo x >> beat; done ) &
			setsid sh -c 'trap "" TERM HUP; while :; do echo late >> late; sleep 0.005; done' &
			while [ ! -s beat ] || [ ! -s late ]; do :; done
			exit 0`, nil, nil)
		spec.Dir, spec.Name = dir, "after-result"
		spec.Limits.CmdDirWritable = true
		p := start(t, r, spec)
		res := wait(t, p)
		// Right at the result: nothing of the task in its cgroup.
		if procs := groupProcs(t, p.Cgroup()); procs != "" {
			t.Fatalf("round %d: the task's cgroup still holds %q when Wait returned", i, procs)
		}
		size, late := fileSize(t, filepath.Join(dir, "beat")), fileSize(t, filepath.Join(dir, "late"))
		if res.ExitCode != 0 || size == 0 || late == 0 {
			t.Fatalf("round %d: exit %d, beat %d and late %d bytes: the task did not run as planned", i, res.ExitCode, size, late)
		}
		time.Sleep(100 * time.Millisecond)
		if after := fileSize(t, filepath.Join(dir, "beat")); after != size {
			t.Fatalf("round %d: a process of the task wrote after Wait returned (beat %d → %d bytes)", i, size, after)
		}
		if after := fileSize(t, filepath.Join(dir, "late")); after != late {
			t.Fatalf("round %d: a setsid process of the task wrote after Wait returned (late %d → %d bytes)", i, late, after)
		}
		<-p.Released()
	}
	if strings.Contains(logs.String(), "left in its cgroup") {
		t.Errorf("the sandbox had to kill a straggler before the result:\n%s", logs.String())
	}
}

// groupProcs returns what the cgroup.procs files of group (as
// Process.Cgroup names it) list, in every hierarchy where it still exists.
func groupProcs(t *testing.T, group string) string {
	t.Helper()
	if group == "" {
		t.Fatal("the task has no cgroup")
	}
	var all []string
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/freezer"} {
		b, err := os.ReadFile(filepath.Join(root, group, "cgroup.procs"))
		if err == nil && len(strings.TrimSpace(string(b))) > 0 {
			all = append(all, strings.Fields(string(b))...)
		}
	}
	return strings.Join(all, " ")
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// TestPoolHelperServesOneTask: tasks started through the pool of
// pre-started helpers each get namespaces of their own, never a helper
// another task used, and on cgroup v1 a group named after them. The tasks
// are alive together while their namespaces are compared: the kernel
// reuses a freed namespace's number.
func TestPoolHelperServesOneTask(t *testing.T) {
	r := jailed(t)
	const n = 2 * sandbox.DefaultPoolSize
	outs := make([]*syncBuffer, n)
	procs := make([]*sandbox.Process, n)
	for i := range n {
		outs[i] = &syncBuffer{}
		spec := shell(`for n in mnt pid ipc uts; do readlink /proc/self/ns/$n; done; echo end; exec sleep 60`, outs[i], outs[i])
		spec.Name = fmt.Sprintf("once-%d", i)
		procs[i] = start(t, r, spec)
	}
	seen := map[string]int{}
	for i, p := range procs {
		eventually(t, 10*time.Second, "the task to print its namespaces", func() bool { return strings.Contains(outs[i].String(), "end\n") })
		for _, ns := range strings.Fields(strings.TrimSuffix(outs[i].String(), "end\n")) {
			if prev, ok := seen[ns]; ok {
				t.Errorf("tasks %d and %d share namespace %s", prev, i, ns)
			}
			seen[ns] = i
		}
		if g := p.Cgroup(); !strings.Contains(g, "/once-") && !strings.Contains(g, "/pool") {
			t.Errorf("task %d ran in cgroup %q", i, g)
		}
	}
	if len(seen) != 4*n {
		t.Errorf("%d distinct namespaces over %d tasks, want 4 each", len(seen), n)
	}
	for _, p := range procs {
		p.Stop(0)
		wait(t, p)
	}
}

// TestPooledTaskStartsOnce: the helper may exec the task, and close its end
// of the socket, the moment the task's setup has been sent. The sandbox
// once wrote the (empty) rest of the message after that, got EPIPE, took the
// helper for unusable, killed it — with the task already running — and
// started the task again with a fresh helper: its first instructions ran
// twice. The hook holds the sandbox until the helper has closed its end.
func TestPooledTaskStartsOnce(t *testing.T) {
	dir := taskDir(t)
	var hooked atomic.Int32
	sandbox.SetAfterSpecSent(func(sock *os.File) {
		hooked.Add(1)
		// Until the helper has exec'd the task (its end closes) and the
		// task has made its mark: the moment a loaded machine gave it.
		fds := []unix.PollFd{{Fd: int32(sock.Fd()), Events: unix.POLLRDHUP}}
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if n, _ := unix.Poll(fds, 10); n > 0 && fds[0].Revents&(unix.POLLHUP|unix.POLLRDHUP) != 0 && fileSize(t, filepath.Join(dir, "starts")) > 0 {
				return
			}
		}
	})
	t.Cleanup(func() { sandbox.SetAfterSpecSent(nil) })
	r := jailed(t)
	time.Sleep(500 * time.Millisecond) // the pool fills in the background
	spec := shell(`echo ran >> starts; sleep 0.2`, nil, nil)
	spec.Dir, spec.Name = dir, "starts-once"
	spec.Limits.CmdDirWritable = true
	res := wait(t, start(t, r, spec))
	if hooked.Load() == 0 {
		t.Fatal("no pre-started helper served the task")
	}
	b, _ := os.ReadFile(filepath.Join(dir, "starts"))
	if got := strings.Count(string(b), "ran"); got != 1 || res.ExitCode != 0 {
		t.Fatalf("the task started %d times (exit %d); want once", got, res.ExitCode)
	}
}
