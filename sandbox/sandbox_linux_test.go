package sandbox_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taskjob/task-job/sandbox"
)

func init() {
	helpers["hold"] = holdHelper
}

// holdHelper is a stand-in executor: it starts a sandboxed sleep marked with
// SANDBOX_TEST_MARKER, says so, and blocks until it is killed.
func holdHelper() {
	r, err := sandbox.New(runnerOptions(os.Getenv("SANDBOX_TEST_ISOLATE") == "1", nil))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	p, err := r.Start(sandbox.Spec{Path: "/bin/sleep", Args: []string{"sleep", os.Getenv("SANDBOX_TEST_MARKER")}, Dir: os.TempDir(), Name: "held"})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Println("started", p.Pid(), r.Isolated())
	_, _ = io.Copy(io.Discard, os.Stdin) // the test never closes it
	os.Exit(3)
}

// marked returns the host pids of live processes running "sleep marker".
// Zombies have an empty command line and do not count.
func marked(t testing.TB, marker string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue // gone meanwhile
		}
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		if len(args) == 2 && filepath.Base(args[0]) == "sleep" && args[1] == marker {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killMarkedAtCleanup SIGKILLs whatever is left of the marked sleeps this
// test started, so a failing test leaves nothing behind.
func killMarkedAtCleanup(t testing.TB, markers ...string) {
	t.Cleanup(func() {
		for _, m := range markers {
			for _, pid := range marked(t, m) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

func allGone(t testing.TB, markers []string) func() bool {
	return func() bool {
		for _, m := range markers {
			if len(marked(t, m)) > 0 {
				return false
			}
		}
		return true
	}
}

// TestTreeDies: after Stop and Wait, no process of the task is left, even
// ones that ignore SIGTERM, called setsid or double-forked. Without a pid
// namespace only processes that stayed in the group are caught, and they die
// shortly after Wait (the group was SIGKILLed, death is asynchronous).
func TestTreeDies(t *testing.T) {
	tests := []struct {
		name         string
		script       string // %s is a marker; every line runs in the background
		isolatedOnly bool
	}{
		{"background child", "sleep %s &", false},
		{"double fork", "(sleep %s &)", false},
		{"setsid", "setsid sleep %s &", true},
		{"setsid double-fork daemon", "(setsid sleep %s </dev/null >/dev/null 2>&1 &)", true},
	}
	forEachMode(t, func(t *testing.T, r *sandbox.Runner) {
		for _, tt := range tests {
			if tt.isolatedOnly && !r.Isolated() {
				continue // setsid escapes a process group by design; see Describe
			}
			t.Run(tt.name, func(t *testing.T) {
				child, main := newMarker(), newMarker()
				markers := []string{child, main}
				killMarkedAtCleanup(t, markers...)
				script := "trap '' TERM\n" + fmt.Sprintf(tt.script, child) + "\nexec sleep " + main
				p := start(t, r, shell(script, nil, nil))
				eventually(t, 10*time.Second, "the task's sleeps to run", func() bool {
					return len(marked(t, child)) == 1 && len(marked(t, main)) == 1
				})
				p.Stop(100 * time.Millisecond)
				res := wait(t, p)
				if res.Signal != "SIGKILL" {
					t.Errorf("signal %q, want SIGKILL (the task ignores SIGTERM)", res.Signal)
				}
				if r.Isolated() {
					if !allGone(t, markers)() {
						t.Fatalf("processes of the task are still alive after Wait")
					}
					return
				}
				eventually(t, 5*time.Second, "the task's group to die", allGone(t, markers))
			})
		}
	})
}

// TestOutputHolderDoesNotDelayWait: a background process holding stdout
// cannot make Wait wait for it beyond the bound once the main process exits.
func TestOutputHolderDoesNotDelayWait(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		escapes bool // survives a group kill
	}{
		{"background", "sleep %s & echo bye", false},
		{"setsid", "setsid sleep %s & echo bye", true},
	}
	forEachMode(t, func(t *testing.T, r *sandbox.Runner) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				marker := newMarker()
				killMarkedAtCleanup(t, marker)
				var out syncBuffer
				p := start(t, r, shell(fmt.Sprintf(tt.script, marker), &out, nil))
				begin := time.Now()
				res := wait(t, p)
				took := time.Since(begin)
				bound := 1500 * time.Millisecond // no holder is left
				if tt.escapes && !r.Isolated() {
					bound = 4 * time.Second // the 2 s drain bound, plus slack
				}
				if took > bound || res.ExitCode != 0 || out.String() != "bye\n" {
					t.Errorf("Wait took %v (want <= %v), exit %d, output %q", took, bound, res.ExitCode, out.String())
				}
				if r.Isolated() && len(marked(t, marker)) > 0 {
					t.Errorf("the background sleep outlived the task's namespace")
				}
			})
		}
	})
}

// TestIsolatedView: the task is PID 1 of its own pid namespace and inherits
// no fd above 2 even when the executor leaked one.
func TestIsolatedView(t *testing.T) {
	// No helper pool: its refill marks every fd close-on-exec in the
	// background, which would race with the leak this test makes on purpose
	// (a start without the pool does the same, but synchronously).
	opts := runnerOptions(true, testLogger(t))
	opts.PoolSize = -1
	r := newRunnerWith(t, opts)

	leak, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer leak.Close()
	leaked, err := syscall.Dup(int(leak.Fd())) // no close-on-exec: inherited by every child
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(leaked)
	plain, err := exec.Command("ls", "/proc/self/fd").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(plain), "\n"+strconv.Itoa(leaked)+"\n") {
		t.Fatalf("a plain child does not see the leaked fd %d (%q); this test would prove nothing", leaked, plain)
	}

	var out syncBuffer
	p := start(t, r, shell(`echo $PPID $$; ls /proc/self/fd; sleep 1000`, &out, nil))
	const want = "0 1\n0\n1\n2\n3\n" // no parent in its namespace; 3 is the directory ls reads
	eventually(t, 10*time.Second, "the task's report", func() bool { return strings.Count(out.String(), "\n") >= 5 })
	if got := out.String(); got != want {
		t.Errorf("task saw %q, want %q: PID 1 with no parent, fds 0-2 plus ls's own", got, want)
	}
	ours, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if ours == theirs {
		t.Errorf("the task shares our pid namespace %s", ours)
	}
	p.Stop(0)
	wait(t, p)
}

// TestExecutorKilled: when the executor dies by SIGKILL, with no chance to
// clean up, its task dies too (parent-death signal; with isolation the
// death of the namespace's PID 1 ends everything in it).
func TestExecutorKilled(t *testing.T) {
	forEachMode(t, func(t *testing.T, r *sandbox.Runner) {
		marker := newMarker()
		killMarkedAtCleanup(t, marker)
		isolate := "0"
		if r.Isolated() {
			isolate = "1"
		}
		helper := exec.Command(os.Args[0], "-test.run=^$")
		cgroupName := testCgroup() + "-held"
		helper.Env = append(os.Environ(), "SANDBOX_TEST_HELPER=hold", "SANDBOX_TEST_MARKER="+marker,
			"SANDBOX_TEST_ISOLATE="+isolate, "SANDBOX_TEST_CGROUP="+cgroupName)
		stdin, err := helper.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		defer stdin.Close()
		stdout, err := helper.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		helper.Stderr = t.Output()
		if err := helper.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "started ") || !strings.HasSuffix(line, " "+strconv.FormatBool(r.Isolated())+"\n") {
			_ = helper.Process.Kill()
			_ = helper.Wait()
			t.Fatalf("helper said %q (%v), want started with isolated=%v", line, err, r.Isolated())
		}
		eventually(t, 10*time.Second, "the task's sleep to run", func() bool { return len(marked(t, marker)) == 1 })

		// Its pre-started helpers, waiting for tasks, must die with it too.
		var children []int
		if r.Isolated() {
			eventually(t, 10*time.Second, "the pool of pre-started helpers to fill", func() bool {
				children = childrenOf(t, helper.Process.Pid)
				return len(children) >= 1+sandbox.DefaultPoolSize
			})
		}
		if err := helper.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = helper.Wait()
		eventually(t, 5*time.Second, "the task to die with its executor", allGone(t, []string{marker}))
		eventually(t, 5*time.Second, "the pre-started helpers to die with their executor", func() bool {
			for _, pid := range children {
				if alive(pid) {
					return false
				}
			}
			return true
		})
		if !r.Isolated() {
			return
		}
		// Its cgroup outlived it; the next executor of that name removes it.
		if left := heldGroups(t, cgroupName); len(left) == 0 {
			t.Errorf("no cgroup of the killed executor found; this test would prove nothing")
		}
		opts := runnerOptions(true, testLogger(t))
		opts.CgroupName = cgroupName
		newRunnerWith(t, opts)
		if left := heldGroups(t, cgroupName); len(left) > 0 {
			t.Errorf("the restarted executor left the cgroups of the killed one: %v", left)
		}
		// Its copy of /etc too: every copy left is locked by a live runner.
		locks, _ := filepath.Glob(filepath.Join(filepath.Dir(sandbox.DefaultRootDir), "etc-*.lock"))
		for _, name := range locks {
			f, err := os.OpenFile(name, os.O_RDWR, 0)
			if err != nil {
				continue
			}
			if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
				t.Errorf("a stale /etc copy is left: %s", name)
			}
			f.Close()
		}
	})
}

// heldGroups lists the groups of the held task (named after its Spec.Name)
// under parent: the restarted runner's own probe group may still be on its
// way out, removed in the background.
func heldGroups(t *testing.T, parent string) []string {
	var held []string
	for _, g := range cgroupsOf(t, parent) {
		if strings.HasPrefix(filepath.Base(g), "held") {
			held = append(held, g)
		}
	}
	return held
}

// cgroupsOf lists the task groups under parent in every hierarchy.
func cgroupsOf(t *testing.T, parent string) []string {
	var found []string
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/freezer"} {
		ents, _ := os.ReadDir(filepath.Join(root, parent))
		for _, e := range ents {
			if e.IsDir() && !strings.HasPrefix(e.Name(), "~") {
				found = append(found, filepath.Join(root, parent, e.Name()))
			}
		}
	}
	return found
}

// childrenOf lists the children of pid.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	var kids []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, w := range strings.Fields(string(b)) {
			if k, err := strconv.Atoi(w); err == nil {
				kids = append(kids, k)
			}
		}
	}
	return kids
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
