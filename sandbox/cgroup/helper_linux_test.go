package cgroup

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tasks the tests start are this test binary run again as a helper,
// chosen by helperEnv: what they do must not depend on the userland (a
// busybox tail streams where GNU tail buffers, a busybox sh execs its last
// command and setsid may not fork), and the tests count exactly the
// processes the helpers make.
const helperEnv = "TASK_JOB_CGROUP_TEST_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(runHelper(h))
	}
	os.Exit(m.Run())
}

// hogBytes is how much the hog touches before giving up: far above the
// tests' limits, well under the VM's memory.
const hogBytes = 256 << 20

// held keeps the hog's memory reachable, so the garbage collector cannot
// give it back.
var held [][]byte

func runHelper(h string) int {
	switch h {
	case "sleep":
		for {
			time.Sleep(time.Hour)
		}
	case "hog":
		// Allocate and touch every page, 1 MiB at a time: only pages
		// written are charged to the group.
		for len(held)<<20 < hogBytes {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			held = append(held, b)
		}
		fmt.Printf("touched %d MiB\n", len(held))
		return 0
	case "orphan":
		// The middle of a double fork: a new session (set by our parent)
		// that starts a sleeper, says its pid and exits without waiting,
		// so the sleeper is reparented.
		c := helperCmd("sleep")
		if err := c.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(c.Process.Pid)
		return 0
	case "tree":
		return runTree()
	}
	fmt.Fprintf(os.Stderr, "unknown helper %q\n", h)
	return 2
}

// runTree makes three processes and prints "ready <pids>" once they all
// run: itself, a sleeping child, and a sleeper orphaned by a setsid'd
// child that exited (the `setsid sh -c "sleep &"` of a real task).
func runTree() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "tree:", err); return 1 }
	mid := helperCmd("orphan")
	mid.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	out, err := mid.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	if err := mid.Start(); err != nil {
		return fail(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fail(fmt.Errorf("reading the orphan's pid: %w", err))
	}
	if err := mid.Wait(); err != nil {
		return fail(err)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return fail(err)
	}
	child := helperCmd("sleep")
	if err := child.Start(); err != nil {
		return fail(err)
	}
	fmt.Printf("ready %d %d %d\n", os.Getpid(), child.Process.Pid, orphan)
	for {
		time.Sleep(time.Hour)
	}
}

// helperCmd runs this test binary as helper h, its output discarded.
func helperCmd(h string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	c := exec.Command(exe)
	c.Env = append(os.Environ(), helperEnv+"="+h)
	return c
}

// spawnHelper starts helper h inside g. Its output goes to out if not nil.
func spawnHelper(t *testing.T, g *Group, h string, out *syncBuffer) *proc {
	t.Helper()
	cmd := helperCmd(h)
	if out != nil {
		cmd.Stdout, cmd.Stderr = out, out
	}
	return startIn(t, g, cmd)
}

// startTree starts the "tree" helper in g and returns the pids of the three
// processes it made, once they all run.
func startTree(t *testing.T, g *Group) (*proc, []int) {
	t.Helper()
	var out syncBuffer
	cmd := spawnHelper(t, g, "tree", &out)
	var pids []int
	waitFor(t, "the tree helper's three processes", func() bool {
		for _, line := range strings.Split(out.String(), "\n") {
			if f, ok := strings.CutPrefix(line, "ready "); ok {
				for _, s := range strings.Fields(f) {
					pid, err := strconv.Atoi(s)
					if err != nil {
						t.Fatalf("tree helper: %q", line)
					}
					pids = append(pids, pid)
				}
				return true
			}
		}
		return false
	})
	if len(pids) != 3 {
		t.Fatalf("tree helper made %v; output %q", pids, out.String())
	}
	return cmd, pids
}

// samePids reports whether got and want hold the same pids.
func samePids(got, want []int) bool {
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			return false
		}
	}
	return true
}
