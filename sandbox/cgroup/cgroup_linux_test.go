package cgroup

import (
	"bytes"
	"context"
	"errors"
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

	"github.com/containerd/cgroups/v3"
	"github.com/hashicorp/go-hclog"

	"github.com/taskjob/task-job/test/observe"
)

// needRoot skips a test that needs root, except in CI where a missing
// privilege must not pass silently.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("cgroup tests need root, and CI=true: run them as root")
	}
	t.Skip("cgroup tests need root (real cgroups, real processes)")
}

// sharedParent reports whether every Manager of this process gets the same
// parent group whatever its Name: on the delegated v2 path it is
// <own>/tasks. Tests over it cannot run in parallel, since each one's
// CleanupStale and parent checks would meet the others' groups.
var sharedParent = sync.OnceValue(func() bool {
	if cgroups.Mode() != cgroups.Unified {
		return false
	}
	_, own, err := cgroups.ParseCgroupFileUnified("/proc/self/cgroup")
	return err == nil && own != "/"
})

// parallel is t.Parallel unless the parent group is shared.
func parallel(t *testing.T) {
	if !sharedParent() {
		t.Parallel()
	}
}

// testName is a parent group per test, so tests can run in parallel and
// never touch a real executor's groups.
func testName(t testing.TB) string {
	return "task-job-test-" + strings.NewReplacer("/", "-", "#", "-").Replace(t.Name())
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: tWriter{t}, Level: hclog.Debug})
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func newTestManager(t testing.TB, hs hostSetup) *Manager {
	t.Helper()
	needRoot(t)
	m, err := newManager(Options{Name: testName(t), Logger: testLogger(t)}, hs)
	if err != nil {
		t.Fatal(err)
	}
	if m.Mode() == Unavailable {
		t.Fatalf("running as root, yet: %s", m.Describe())
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
		// Kill and remove what a failed test left, as the next run would,
		// then the parent group, which outlives a Manager on purpose.
		hs.noPool = true
		if sweep, err := newManager(Options{Name: testName(t)}, hs); err == nil {
			if _, err := sweep.CleanupStale(); err != nil {
				t.Error(err)
			}
			_ = sweep.Close()
		}
		for _, h := range m.hier {
			_ = removeTree(h.parent)
		}
	})
	return m
}

func hostManager(t testing.TB) *Manager { return newTestManager(t, detect()) }

// spawn starts /bin/sh -c script inside g. Its output goes to out if not nil.
func spawn(t *testing.T, g *Group, script string, out io.Writer) *proc {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Stdout, cmd.Stderr = out, out
	return startIn(t, g, cmd)
}

// waitLimit bounds every wait on a task's process: a test must fail, not
// hang. waitDelay bounds the wait for its output pipes once it has exited
// (an orphan that survived a kill would hold them open forever).
const (
	waitLimit = 20 * time.Second
	waitDelay = 5 * time.Second
)

// proc is a process a test started in a group. Its Wait runs once, in the
// background, so that the test and its cleanup can both wait on it, each
// with a bound.
type proc struct {
	cmd  *exec.Cmd
	g    *Group
	done chan struct{}
	err  error
}

func track(g *Group, cmd *exec.Cmd) *proc {
	p := &proc{cmd: cmd, g: g, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p
}

// waitUpTo returns the process's Wait error, or timedOut after d.
func (p *proc) waitUpTo(d time.Duration) (err error, timedOut bool) {
	select {
	case <-p.done:
		return p.err, false
	case <-time.After(d):
		return nil, true
	}
}

// wait returns the process's Wait error; the test fails if it takes more
// than waitLimit.
func (p *proc) wait(t *testing.T) error {
	t.Helper()
	err, timedOut := p.waitUpTo(waitLimit)
	if timedOut {
		t.Fatalf("pid %d not reaped after %v; %s", p.cmd.Process.Pid, waitLimit, groupState(p.g))
	}
	return err
}

// groupState says what is left in g, for a test that timed out.
func groupState(g *Group) string {
	pids, err := g.pids()
	s := fmt.Sprintf("%s holds %v (%v)", g.Path(), pids, err)
	if g.m.mode == V1 && g.m.frz >= 0 {
		b, _ := os.ReadFile(filepath.Join(g.dirs[g.m.frz], "freezer.state"))
		s += ", freezer " + strings.TrimSpace(string(b))
	}
	for _, pid := range pids {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		s += fmt.Sprintf("; %d: %q", pid, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
	}
	return s
}

// gateScript holds a process before its first instruction of the task
// until fd 3 reads EOF, then runs the task in its place.
const gateScript = `read _ <&3; exec "$@" 3<&-`

// start starts cmd inside g as the sandbox does: born inside with CgroupFD
// on v2, or, on v1 (or when gated), blocked behind gateScript until AddProc
// has moved it. If AddProc fails, the process is killed and reaped.
func start(g *Group, cmd *exec.Cmd, gated bool) (*proc, error) {
	cmd.WaitDelay = waitDelay
	if fd, ok := g.CgroupFD(); ok && !gated {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		return track(g, cmd), nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer w.Close() // the task goes on, or, killed, is not left blocked
	cmd.Args = append([]string{"/bin/sh", "-c", gateScript, "sh", cmd.Path}, cmd.Args[1:]...)
	cmd.Path = "/bin/sh"
	cmd.ExtraFiles = append([]*os.File{r}, cmd.ExtraFiles...)
	err = cmd.Start()
	r.Close()
	if err != nil {
		return nil, err
	}
	p := track(g, cmd)
	if err := g.AddProc(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		_, _ = p.waitUpTo(waitLimit)
		return nil, err
	}
	return p, nil
}

// startIn starts cmd inside g (see start); the test's cleanup kills and
// reaps it.
func startIn(t *testing.T, g *Group, cmd *exec.Cmd) *proc {
	t.Helper()
	p, err := start(g, cmd, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The whole group, then the process itself: an orphan left in the
		// group by a failed test would hold the output pipes.
		_ = g.Kill()
		_ = cmd.Process.Kill()
		if _, timedOut := p.waitUpTo(waitLimit); timedOut {
			t.Errorf("cleanup: pid %d not reaped after %v; %s", cmd.Process.Pid, waitLimit, groupState(g))
		}
	})
	return p
}

// syncBuffer collects output a test reads while the task still writes.
type syncBuffer = observe.Buffer

// threadsIn returns, for each thread of the test process, the lines of its
// /proc/self/task/<tid>/cgroup that name a hierarchy m uses and contain
// prefix. A thread that ends meanwhile is skipped.
func threadsIn(m *Manager, prefix string) []string {
	files, _ := filepath.Glob("/proc/self/task/*/cgroup")
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range cgroupLines(m, string(b)) {
			if strings.Contains(line, prefix) {
				out = append(out, f+": "+line)
			}
		}
	}
	return out
}

// cgroupLines returns the lines of a /proc/<pid>/cgroup text that name the
// hierarchies m uses.
func cgroupLines(m *Manager, text string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if m.mode == V2 && parts[0] == "0" {
			out = append(out, line)
		}
		if m.mode == V1 {
			for _, c := range strings.Split(parts[1], ",") {
				if c == "memory" || c == "cpu" || c == "cpuacct" || c == "pids" || c == "freezer" {
					out = append(out, line)
					break
				}
			}
		}
	}
	return out
}

// inside counts the lines of a /proc/<pid>/cgroup text that put the
// process in g, and how many there must be: every hierarchy of ours on v2,
// the five controllers on v1 (whatever shares a mount).
func inside(m *Manager, g *Group, text string) (got, want int) {
	for _, line := range cgroupLines(m, text) {
		if strings.HasSuffix(line, ":"+g.Path()) {
			got++
		}
	}
	want = len(m.hier)
	if m.mode == V1 {
		want = 5
	}
	return got, want
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// assertGone checks that a group's directory is gone from every hierarchy.
func assertGone(t *testing.T, m *Manager, g *Group) {
	t.Helper()
	for _, d := range g.dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there (stat: %v)", d, err)
		}
	}
}

func TestDescribe(t *testing.T) {
	m := hostManager(t)
	t.Logf("mode %v: %s", m.Mode(), m.Describe())
	switch m.Mode() {
	case V1:
		if !strings.HasPrefix(m.Describe(), "cgroup v1 (") || !strings.Contains(m.Describe(), "kill by") {
			t.Errorf("Describe = %q", m.Describe())
		}
	case V2:
		if !strings.HasPrefix(m.Describe(), "cgroup v2: memory, cpu, pids limits") {
			t.Errorf("Describe = %q", m.Describe())
		}
		if exists(filepath.Join(m.hier[0].parent, "cgroup.kill")) != strings.HasSuffix(m.Describe(), "kill by cgroup.kill") {
			t.Errorf("Describe = %q, yet cgroup.kill exists: %v", m.Describe(), m.cgKill)
		}
	}
}

func TestUnavailableDescribesWhy(t *testing.T) {
	m, err := newManager(Options{}, hostSetup{why: "no cgroup filesystem is mounted at /sys/fs/cgroup"})
	if err != nil {
		t.Fatal(err)
	}
	want := "cgroups unavailable: no cgroup filesystem is mounted at /sys/fs/cgroup; tasks have no memory/cpu/pids limits"
	if m.Mode() != Unavailable || m.Describe() != want {
		t.Errorf("Mode %v, Describe %q; want Unavailable, %q", m.Mode(), m.Describe(), want)
	}
	if _, err := m.New("x", Limits{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("New on an unavailable Manager: %v, want ErrUnavailable", err)
	}
	if n, err := m.CleanupStale(); n != 0 || err != nil {
		t.Errorf("CleanupStale = %d, %v", n, err)
	}
	if err := m.Close(); err != nil {
		t.Error(err)
	}
}

func TestBadOptionsAndLimits(t *testing.T) {
	for _, name := range []string{".", "..", "a/b"} {
		if _, err := NewManager(Options{Name: name}); err == nil {
			t.Errorf("NewManager(Name %q) succeeded", name)
		}
	}
	for _, l := range []Limits{{MemoryBytes: -1}, {Pids: -1}, {CPUCores: -0.5}} {
		if err := checkLimits(l); err == nil {
			t.Errorf("checkLimits(%+v) accepted it", l)
		}
	}
	if q := quotaUS(0.2); q != 20000 {
		t.Errorf("quotaUS(0.2) = %d", q)
	}
	if q := quotaUS(0.0001); q != minQuotaUS {
		t.Errorf("quotaUS(0.0001) = %d, want the kernel's minimum", q)
	}
}

func TestSafeName(t *testing.T) {
	long := strings.Repeat("x", 300)
	seen := map[string]string{}
	for _, id := range []string{"", ".", "..", "a/b", "../../etc", "~spare-1-1", "build 42", "ünï", "ok-id_1.2", long, long + "y", strings.Repeat("/", 200)} {
		s := safeName(id)
		if s == "." || s == ".." || s == "" || strings.ContainsAny(s, "/\x00") || strings.HasPrefix(s, "~") || strings.HasPrefix(s, ".") || len(s) > maxEscaped {
			t.Errorf("safeName(%q) = %q: not a safe directory name", id, s)
		}
		if other, dup := seen[s]; dup {
			t.Errorf("safeName(%q) = safeName(%q) = %q", id, other, s)
		}
		seen[s] = id
	}
	if s := safeName("ok-id_1.2"); s != "ok-id_1.2" {
		t.Errorf("a plain id changed: %q", s)
	}
}

// TestTaskStartsInside checks both ways to start a task inside its group
// (CgroupFD on v2, a gated start and AddProc anywhere): the task's first
// action sees it inside in every controller, and no thread of the test
// process is ever there.
func TestTaskStartsInside(t *testing.T) {
	parallel(t)
	m := hostManager(t)
	for _, gated := range []bool{false, true} {
		g, err := m.New("born/inside", Limits{MemoryBytes: 64 << 20, CPUCores: 1, Pids: 16})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		if want := m.relParent + "/born%2Finside-"; !strings.HasPrefix(g.Path(), want) {
			t.Errorf("Path = %q, want prefix %q", g.Path(), want)
		}
		var out syncBuffer
		cmd := exec.Command("/bin/cat", "/proc/self/cgroup")
		cmd.Stdout, cmd.Stderr = &out, &out
		p, err := start(g, cmd, gated)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.wait(t); err != nil {
			t.Fatalf("%v: %s", err, out.String())
		}
		if got, want := inside(m, g, out.String()); got < want {
			t.Errorf("gated %v: the task saw itself in %d of our %d controllers:\n%s", gated, got, want, out.String())
		}
		for _, l := range threadsIn(m, g.Path()) {
			t.Errorf("a thread of the test process is in the task's group: %s", l)
		}
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		m.flush()
		assertGone(t, m, g)
	}
}

func TestAddProc(t *testing.T) {
	parallel(t)
	m := hostManager(t)
	g, err := m.New("addproc", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	// Never the executor: Kill would freeze it. 0 would mean the writer.
	for _, pid := range []int{os.Getpid(), 0, -1} {
		if err := g.AddProc(pid); err == nil {
			t.Errorf("AddProc(%d) accepted it", pid)
		}
	}
	for _, l := range threadsIn(m, g.Path()) {
		t.Errorf("a thread of the test process is in the task's group: %s", l)
	}
	// The task waits on stdin until it was added, so what it prints is
	// from inside the group.
	cmd := exec.Command("/bin/sh", "-c", "read _; cat /proc/self/cgroup")
	cmd.WaitDelay = waitDelay
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := track(g, cmd)
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = p.waitUpTo(waitLimit) })
	if err := g.AddProc(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	_, _ = in.Write([]byte("\n"))
	if err := p.wait(t); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), ":"+g.Path()+"\n") {
		t.Errorf("the task is not in %s:\n%s", g.Path(), out.String())
	}
}

func TestMemoryHogIsOOMKilled(t *testing.T) {
	parallel(t)
	m := hostManager(t)
	const limit = 32 << 20
	g, err := m.New("hog", Limits{MemoryBytes: limit})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var out syncBuffer
	cmd := spawnHelper(t, g, "hog", &out)
	err = cmd.wait(t)
	if err == nil {
		t.Fatalf("the memory hog finished inside a 32 MiB limit: %s", out.String())
	}
	u, err := g.Usage()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("usage %+v", u)
	if u.OOMKills == 0 {
		t.Errorf("OOMKills = 0 after the hog died (%v)", err)
	}
	if u.MemoryPeak != 0 && (u.MemoryPeak < limit/2 || u.MemoryPeak > limit+1<<20) {
		t.Errorf("MemoryPeak = %d, want about the %d limit", u.MemoryPeak, limit)
	}
	if u.MemoryPeak == 0 && (m.mode == V1 || exists(filepath.Join(g.dirs[m.memIdx], "memory.peak"))) {
		t.Errorf("MemoryPeak = 0, yet the kernel keeps a peak")
	}
	if m.mode == V2 {
		if v, _ := os.ReadFile(filepath.Join(g.dirs[0], "memory.max")); strings.TrimSpace(string(v)) != "33554432" {
			t.Errorf("memory.max = %q", v)
		}
	}
}

func TestPidsLimitStopsForkLoop(t *testing.T) {
	parallel(t)
	m := hostManager(t)
	const max = 8
	g, err := m.New("forks", Limits{Pids: max})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var out syncBuffer
	cmd := spawn(t, g, "i=0; while [ $i -lt 40 ]; do sleep 1000 & i=$((i+1)); done; echo all forked; wait", &out)
	waitFor(t, "a fork to fail", func() bool { return strings.Contains(strings.ToLower(out.String()), "fork") })
	// The group is at its limit; the executor still forks.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := exec.CommandContext(ctx, "/bin/true").Run(); err != nil {
		t.Fatalf("the test could not fork while the task's group was full: %v", err)
	}
	pids, err := g.pids()
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) > max || strings.Contains(out.String(), "all forked") {
		t.Errorf("%d processes in the group (limit %d); output %q", len(pids), max, out.String())
	}
	pidsDir := g.dirs[m.pidsIdx]
	if v, _ := os.ReadFile(filepath.Join(pidsDir, "pids.max")); strings.TrimSpace(string(v)) != "8" {
		t.Errorf("pids.max = %q", v)
	}
	if n, ok, err := readKey(filepath.Join(pidsDir, "pids.events"), "max"); err != nil || !ok || n == 0 {
		t.Errorf("pids.events max = %d, %v, %v; want forks refused", n, ok, err)
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.wait(t)
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.WaitEmpty(ctx); err != nil {
		t.Fatalf("%v; %s", err, groupState(g))
	}
}

func TestCPUQuotaHoldsBusyLoop(t *testing.T) {
	parallel(t)
	m := hostManager(t)
	g, err := m.New("busy", Limits{CPUCores: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	start := time.Now()
	spawn(t, g, "while :; do :; done", nil)
	time.Sleep(time.Second)
	u, err := g.Usage()
	wall := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	rate := u.CPU.Seconds() / wall.Seconds()
	t.Logf("%v of CPU in %v of wall: %.2f cores", u.CPU, wall, rate)
	if rate < 0.1 || rate > 0.35 {
		t.Errorf("a busy loop limited to 0.2 cores used %.2f cores", rate)
	}
	cpuDir := g.dirs[m.cpuIdx]
	if m.mode == V2 {
		if v, _ := os.ReadFile(filepath.Join(cpuDir, "cpu.max")); strings.TrimSpace(string(v)) != "20000 100000" {
			t.Errorf("cpu.max = %q", v)
		}
	}
	n, ok, err := readKey(filepath.Join(cpuDir, "cpu.stat"), "nr_throttled")
	t.Logf("cpu.stat nr_throttled %d", n)
	if err != nil || !ok || n == 0 {
		t.Errorf("cpu.stat nr_throttled = %d, %v, %v; want the loop throttled", n, ok, err)
	}
}

func TestKillReachesSetsidDoubleFork(t *testing.T) {
	parallel(t)
	m := hostManager(t)
	g, err := m.New("setsid", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	cmd, pids := startTree(t, g)
	if got, _ := g.pids(); !samePids(got, pids) {
		t.Fatalf("the group holds %v; the helper made %v", got, pids)
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.WaitEmpty(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cmd.wait(t); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("the task ended with %v, want killed", err)
	}
	for _, pid := range pids {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			// Reparented orphans are reaped by whoever is init here; a zombie
			// is dead.
			if f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])); len(f) > 0 && f[0] != "Z" {
				t.Errorf("pid %d survived the kill: %s", pid, b)
			}
		}
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	m.flush()
	assertGone(t, m, g)
}

func TestCloseKillsWhatIsLeft(t *testing.T) {
	parallel(t)
	m := hostManager(t)
	g, err := m.New("left", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	cmd := spawn(t, g, "sleep 1000 & sleep 1000", nil)
	// Two sleeps, and the shell unless it exec'd the last one.
	waitFor(t, "the sleeps", func() bool { p, _ := g.pids(); return len(p) >= 2 })
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.wait(t)
	m.flush()
	assertGone(t, m, g)
	if _, ok := g.CgroupFD(); ok {
		t.Error("CgroupFD after Close")
	}
}

func TestManyGroupsLeaveNothing(t *testing.T) {
	parallel(t)
	m := hostManager(t)
	var inNew, inClose time.Duration
	for i := range 200 {
		start := time.Now()
		g, err := m.New(fmt.Sprintf("task-%d", i%3), Limits{MemoryBytes: 64 << 20, CPUCores: 0.5, Pids: 64})
		if err != nil {
			t.Fatal(err)
		}
		mid := time.Now()
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		inNew, inClose = inNew+mid.Sub(start), inClose+time.Since(mid)
	}
	t.Logf("%v: 200 New+Close with all three limits: %v each on the caller's path (New %v, Close %v)",
		m.Mode(), (inNew+inClose)/200, inNew/200, inClose/200)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoParent(t, m)
}

func TestCleanupStaleKillsPreviousRun(t *testing.T) {
	parallel(t)
	prev := hostManager(t)
	g, err := prev.New("stale", Limits{MemoryBytes: 128 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cmd, pids := startTree(t, g)
	if got, _ := g.pids(); !samePids(got, pids) {
		t.Fatalf("the group holds %v; the helper made %v", got, pids)
	}

	// The executor restarts: a new Manager over the same parent, which has
	// spares and a group of its own that must survive.
	m, err := newManager(Options{Name: testName(t), Logger: testLogger(t)}, detect())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	mine, err := m.New("mine", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	n, err := m.CleanupStale()
	if err != nil {
		t.Fatal(err)
	}
	if n < 1 {
		t.Errorf("CleanupStale removed %d groups", n)
	}
	_ = cmd.wait(t)
	assertGone(t, prev, g)
	for _, pid := range pids {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])); len(f) > 0 && f[0] != "Z" {
				t.Errorf("pid %d of the stale group survived: %s", pid, b)
			}
		}
	}
	for _, d := range mine.dirs {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("CleanupStale removed the new run's own group: %v", err)
		}
	}
	// The dead run's group is closed only now; it must not mind.
	_ = g.Close()
}

// assertNoParent checks that no directory of m's parent group is left in
// any hierarchy, nor anywhere under /sys/fs/cgroup by that name.
func assertNoParent(t *testing.T, m *Manager) {
	t.Helper()
	for _, h := range m.hier {
		if _, err := os.Stat(h.parent); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the parent group %s is still there (stat: %v)", h.parent, err)
		}
	}
	for _, pat := range []string{v2Root + "/" + m.name, v2Root + "/*/" + m.name} {
		left, _ := filepath.Glob(pat)
		for _, d := range left {
			t.Errorf("%s is still there", d)
		}
	}
}

func TestCloseRemovesParent(t *testing.T) {
	parallel(t)
	m := hostManager(t)
	lim := Limits{MemoryBytes: 64 << 20, CPUCores: 0.5, Pids: 16}
	ran, err := m.New("ran", lim)
	if err != nil {
		t.Fatal(err)
	}
	if err := spawn(t, ran, "true", nil).wait(t); err != nil {
		t.Fatal(err)
	}
	if err := ran.Close(); err != nil {
		t.Fatal(err)
	}
	open, err := m.New("open", lim)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// A group still open keeps the parent, and takes it along when closed.
	for _, h := range m.hier {
		if _, err := os.Stat(h.parent); err != nil {
			t.Errorf("the parent went while a group was open: %v", err)
		}
	}
	if err := open.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoParent(t, m)

	// The next start finds no parent, makes it, and CleanupStale finds
	// nothing; a parent removed under a running Manager is made again.
	next, err := newManager(Options{Name: m.name, Logger: testLogger(t)}, detect())
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	if n, err := next.CleanupStale(); n != 0 || err != nil {
		t.Errorf("CleanupStale = %d, %v; want 0, nil", n, err)
	}
	time.Sleep(20 * time.Millisecond) // v1: let the spares be made
	if err := next.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoParent(t, next)
	if n, err := next.CleanupStale(); n != 0 || err != nil {
		t.Errorf("CleanupStale without a parent = %d, %v; want 0, nil", n, err)
	}

	hs := detect()
	hs.noPool = true
	again, err := newManager(Options{Name: m.name, Logger: testLogger(t)}, hs)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	for _, h := range again.hier {
		if err := os.Remove(h.parent); err != nil {
			t.Fatal(err)
		}
	}
	g, err := again.New("after", lim)
	if err != nil {
		t.Fatalf("New with the parent gone: %v", err)
	}
	if err := spawn(t, g, "true", nil).wait(t); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoParent(t, again)
}

func benchmarkNewClose(b *testing.B, hs hostSetup) {
	m := newTestManager(b, hs)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		g, err := m.New("bench", Limits{MemoryBytes: 64 << 20, CPUCores: 0.5, Pids: 64})
		if err != nil {
			b.Fatal(err)
		}
		if err := g.Close(); err != nil {
			b.Fatal(err)
		}
		if i%spareCount == spareCount-1 {
			// Let the background catch up, as between real tasks; without
			// this the spares run out and New makes groups itself.
			b.StopTimer()
			time.Sleep(2 * time.Millisecond)
			b.StartTimer()
		}
	}
}

// BenchmarkNewClose is New (limits set) + Close of an empty group, as the
// caller sees it: spares and background removal on.
func BenchmarkNewClose(b *testing.B) { benchmarkNewClose(b, detect()) }

// BenchmarkNewCloseNoPool makes and removes every group on the caller's path.
func BenchmarkNewCloseNoPool(b *testing.B) {
	hs := detect()
	hs.noPool = true
	benchmarkNewClose(b, hs)
}

// TestConcurrentStarts starts tasks from four goroutines at once, half of
// them gated and added with AddProc (the v1 path, on v2 too), half by the
// default path (CgroupFD on v2), and checks that each task starts inside
// its group and that no thread of the test process is ever in a task's
// group, sampled all along.
func TestConcurrentStarts(t *testing.T) {
	parallel(t)
	m := hostManager(t)
	stop := make(chan struct{})
	sampled := make(chan []string)
	go func() {
		var seen []string
		for {
			seen = append(seen, threadsIn(m, m.relParent+"/")...)
			select {
			case <-stop:
				sampled <- seen
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 25 {
				g, err := m.New(fmt.Sprintf("w%d-%d", w, i), Limits{Pids: 16})
				if err != nil {
					t.Error(err)
					return
				}
				var out syncBuffer
				cmd := exec.Command("/bin/cat", "/proc/self/cgroup")
				cmd.Stdout, cmd.Stderr = &out, &out
				p, err := start(g, cmd, w%2 == 0)
				if err != nil {
					t.Error(err)
					_ = g.Close()
					return
				}
				err, timedOut := p.waitUpTo(waitLimit)
				switch {
				case timedOut:
					_ = g.Kill()
					t.Errorf("pid %d not reaped after %v; %s", cmd.Process.Pid, waitLimit, groupState(g))
				case err != nil:
					t.Errorf("%v: %s", err, out.String())
				default:
					if got, want := inside(m, g, out.String()); got < want {
						t.Errorf("the task saw itself in %d of our %d controllers:\n%s", got, want, out.String())
					}
				}
				if err := g.Close(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	for _, l := range <-sampled {
		t.Errorf("a thread of the test process was in a task's group: %s", l)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoParent(t, m)
}

// TestNewCloseCost logs what a New+Close costs and of what it is made, for
// comparing hosts (and the VM, whose emulation slows every syscall): the
// pieces are timed one by one on bare groups, beside a getppid as the unit.
func TestNewCloseCost(t *testing.T) {
	m := hostManager(t)
	const n = 50
	avg := func(f func(i int)) time.Duration {
		start := time.Now()
		for i := range n {
			f(i)
		}
		return time.Since(start) / n
	}
	lim := Limits{MemoryBytes: 64 << 20, CPUCores: 0.5, Pids: 64}
	syscallCost := avg(func(int) { syscall.Getppid() })
	newClose := avg(func(int) {
		g, err := m.New("cost", lim)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
	})
	m.flush()
	bare := func(i int) string { return fmt.Sprintf("~cost-%d", i) }
	mkdir := avg(func(i int) {
		if err := m.mkdirAll(bare(i)); err != nil {
			t.Fatal(err)
		}
	})
	g := &Group{m: m, name: bare(0), fd: -1}
	for _, h := range m.hier {
		g.dirs = append(g.dirs, filepath.Join(h.parent, g.name))
	}
	limits := avg(func(int) {
		if err := g.setLimits(lim); err != nil {
			t.Fatal(err)
		}
	})
	populated := avg(func(int) {
		if _, err := g.populated(); err != nil {
			t.Fatal(err)
		}
	})
	rmdir := avg(func(i int) { m.removeNow(bare(i)) })
	t.Logf("%v: New+Close %v on the caller's path; one getppid %v; mkdir in every hierarchy %v, the three limits %v, populated check %v, rmdir %v",
		m.Mode(), newClose, syscallCost, mkdir, limits, populated, rmdir)
}

// TestKillThawsGroupsBelow: on v1 a process frozen in a group a task made
// below its own keeps a SIGKILL pending until thawed; Kill must thaw it.
func TestKillThawsGroupsBelow(t *testing.T) {
	parallel(t)
	m := hostManager(t)
	if m.mode != V1 || m.frz < 0 {
		t.Skip("v1 freezer only: a v2 SIGKILL reaches a frozen process")
	}
	g, err := m.New("nested", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	p := spawnHelper(t, g, "sleep", nil)
	sub := filepath.Join(g.dirs[m.frz], "inner")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(filepath.Join(sub, "cgroup.procs"), fmt.Sprint(p.cmd.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(filepath.Join(sub, "freezer.state"), "FROZEN"); err != nil {
		t.Fatal(err)
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.WaitEmpty(ctx); err != nil {
		t.Fatalf("%v; %s", err, groupState(g))
	}
	_ = p.wait(t)
}
