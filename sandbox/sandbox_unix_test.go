//go:build unix

package sandbox_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/taskjob/task-job/sandbox"
	"github.com/taskjob/task-job/sandbox/nsinit"
	"github.com/taskjob/task-job/test/observe"
)

// helpers are alternative mains for this test binary, chosen by the
// SANDBOX_TEST_HELPER environment variable: tests re-run the binary to get a
// process they can SIGKILL.
var helpers = map[string]func(){}

// workDir stands in for cmd_dir: writable by the unprivileged user the
// sandbox runs tasks as.
var workDir string

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == sandbox.InitName {
		// The sandbox re-executes this binary as its setup helper when
		// TASK_JOB_INIT names none, as task-job itself does.
		nsinit.Main()
	}
	if h := os.Getenv("SANDBOX_TEST_HELPER"); h != "" {
		helpers[h]()
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "sandbox-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_ = os.Chmod(dir, 0o777)
	workDir = dir
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// taskDir returns a fresh directory that the sandbox's unprivileged user
// can enter and write.
func taskDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp(workDir, "task-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// runnerOptions are the options every test runner starts from. Each test
// process has a parent cgroup of its own: a runner removes what other
// runners of its name left behind, and test packages run in parallel.
func runnerOptions(isolate bool, log hclog.Logger) sandbox.Options {
	return sandbox.Options{Isolate: isolate, Logger: log, InitPath: os.Getenv("TASK_JOB_INIT"), CgroupName: testCgroup()}
}

func testCgroup() string {
	if name := os.Getenv("SANDBOX_TEST_CGROUP"); name != "" {
		return name
	}
	return "task-job-test-" + strconv.Itoa(os.Getpid())
}

// forEachMode runs fn once with a plain process-group runner and once with
// an isolated one.
func forEachMode(t *testing.T, fn func(t *testing.T, r *sandbox.Runner)) {
	t.Helper()
	for _, isolate := range []bool{false, true} {
		name := "group"
		if isolate {
			name = "isolated"
		}
		t.Run(name, func(t *testing.T) { fn(t, newRunner(t, isolate)) })
	}
}

// newRunner returns a runner; an isolated one must really be isolated
// wherever that is possible (Linux, root), and always in CI.
func newRunner(t testing.TB, isolate bool) *sandbox.Runner {
	t.Helper()
	var log hclog.Logger // benchmarks stay quiet
	if t, ok := t.(*testing.T); ok {
		log = testLogger(t)
	}
	return newRunnerWith(t, runnerOptions(isolate, log))
}

// newRunnerWith is newRunner with options of the test's choosing.
func newRunnerWith(t testing.TB, opts sandbox.Options) *sandbox.Runner {
	t.Helper()
	isolate := opts.Isolate
	r, err := sandbox.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	if isolate && !r.Isolated() {
		switch {
		case runtime.GOOS != "linux":
			t.Skipf("pid namespaces exist only on Linux; CI runs these tests as root on Linux")
		case os.Getenv("CI") == "" && os.Geteuid() != 0:
			t.Skipf("isolation needs root (CI runs as root): %s", r.Describe())
		}
		t.Fatalf("isolation unavailable: %s", r.Describe())
	}
	return r
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: t.Output(), Level: hclog.Debug})
}

// syncBuffer collects output a test reads while the task still writes.
type syncBuffer = observe.Buffer

// serialWriter fails the test if Write is ever called concurrently, which
// the sandbox promises not to do.
type serialWriter struct {
	t        testing.TB
	inFlight atomic.Int32
	buf      bytes.Buffer
}

func (w *serialWriter) Write(p []byte) (int, error) {
	if w.inFlight.Add(1) != 1 {
		w.t.Errorf("concurrent Write calls on one writer")
	}
	defer w.inFlight.Add(-1)
	return w.buf.Write(p)
}

// shell is a Spec running script with /bin/sh and a minimal environment.
func shell(script string, stdout, stderr io.Writer) sandbox.Spec {
	return sandbox.Spec{
		Path:   "/bin/sh",
		Args:   []string{"sh", "-c", script},
		Dir:    workDir,
		Env:    []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin"},
		Stdout: stdout,
		Stderr: stderr,
	}
}

func start(t testing.TB, r *sandbox.Runner, spec sandbox.Spec) *sandbox.Process {
	t.Helper()
	p, err := r.Start(spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		p.Stop(0)
		p.Wait()
	})
	return p
}

// waitLimit is how long a test waits for a task that should end; a broken
// sandbox then fails the test instead of hanging it.
const waitLimit = 20 * time.Second

func wait(t testing.TB, p *sandbox.Process) sandbox.Result {
	t.Helper()
	type result struct {
		res sandbox.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := p.Wait()
		done <- result{res, err}
	}()
	limit := time.NewTimer(waitLimit)
	defer limit.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Wait: %v", r.err)
		}
		return r.res
	case <-limit.C:
		p.Stop(0)
		<-done
		t.Fatalf("the task did not end within %v", waitLimit)
		return sandbox.Result{}
	}
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v still waiting for %s", within, what)
		}
		<-tick.C
	}
}

var markers atomic.Int32

// newMarker returns a sleep duration no other process uses, so that a test
// can find its sleeps from the host even inside a pid namespace, where their
// pids differ.
func newMarker() string {
	return fmt.Sprintf("9%d%04d", os.Getpid(), markers.Add(1))
}

func TestDescribe(t *testing.T) {
	forEachMode(t, func(t *testing.T, r *sandbox.Runner) {
		d := r.Describe()
		wants := []string{"sandbox: OFF", "process group", "not enforced"}
		if r.Isolated() {
			wants = []string{"sandbox: on", "cgroup", "memory", "pids", "pid, mount, ipc, uts, net", "user nobody", "no_new_privs"}
		}
		for _, want := range wants {
			if !strings.Contains(d, want) {
				t.Errorf("Describe() = %q, want it to say %q", d, want)
			}
		}
	})
}

func TestExitCode(t *testing.T) {
	// An isolated task is PID 1 of its namespace: as in a container without
	// an init, signals it sends itself without a handler are dropped by the
	// kernel, so the script carries on and exits 0.
	tests := []struct {
		name     string
		script   string
		code     int
		signal   string
		isolated int // exit code when isolated
	}{
		{"zero", "exit 0", 0, "", 0},
		{"three", "exit 3", 3, "", 3},
		{"killed", "kill -KILL $$", -1, "SIGKILL", 0},
		{"terminated", "kill -TERM $$", -1, "SIGTERM", 0},
	}
	forEachMode(t, func(t *testing.T, r *sandbox.Runner) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if r.Isolated() {
					tt.code, tt.signal = tt.isolated, ""
				}
				before := time.Now()
				res := wait(t, start(t, r, shell(tt.script, nil, nil)))
				if res.ExitCode != tt.code || res.Signal != tt.signal {
					t.Errorf("exit %d signal %q, want %d %q", res.ExitCode, res.Signal, tt.code, tt.signal)
				}
				if res.Started.Before(before) || res.Ended.Before(res.Started) || time.Since(res.Ended) < 0 {
					t.Errorf("Started %v Ended %v, want before <= Started <= Ended <= now", res.Started, res.Ended)
				}
			})
		}
	})
}

func TestUsage(t *testing.T) {
	forEachMode(t, func(t *testing.T, r *sandbox.Runner) {
		// Burn some CPU in a child that is reaped: it must be counted.
		script := `sh -c 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done'`
		res := wait(t, start(t, r, shell(script, nil, nil)))
		if res.CPU < 10*time.Millisecond {
			t.Errorf("CPU = %v, want the child's loop counted (>= 10ms)", res.CPU)
		}
		// rusage counts a process's resident pages; a cgroup counts only
		// the pages charged to it, not shared libraries already cached.
		low := int64(1 << 20)
		if res.Cgroup != "" {
			low = 64 << 10
		}
		if res.MaxRSS < low || res.MaxRSS > 1<<32 {
			t.Errorf("MaxRSS = %d, want a shell's size in bytes (%d to 4 GiB)", res.MaxRSS, low)
		}
	})
}

func TestOutput(t *testing.T) {
	var want strings.Builder
	for i := 1; i <= 100000; i++ {
		want.WriteString(strconv.Itoa(i) + "\n")
	}
	forEachMode(t, func(t *testing.T, r *sandbox.Runner) {
		t.Run("complete and ordered", func(t *testing.T) {
			stdout, stderr := &serialWriter{t: t}, &serialWriter{t: t}
			res := wait(t, start(t, r, shell("seq 1 100000; seq 1 100000 >&2", stdout, stderr)))
			if res.ExitCode != 0 {
				t.Fatalf("exit %d", res.ExitCode)
			}
			for name, got := range map[string]string{"stdout": stdout.buf.String(), "stderr": stderr.buf.String()} {
				if got != want.String() {
					t.Errorf("%s: got %d bytes, want %d bytes of seq 1 100000", name, len(got), want.Len())
				}
			}
		})
		t.Run("one writer for both streams", func(t *testing.T) {
			both := &serialWriter{t: t}
			wait(t, start(t, r, shell("echo a; echo b >&2; echo c", both, both)))
			if got := both.buf.String(); got != "a\nb\nc\n" {
				t.Errorf("got %q, want the streams interleaved in order", got)
			}
		})
		t.Run("nil writers discard", func(t *testing.T) {
			if res := wait(t, start(t, r, shell("seq 1 100000; echo x >&2", nil, nil))); res.ExitCode != 0 {
				t.Errorf("exit %d, want 0", res.ExitCode)
			}
		})
	})
}

func TestStartErrors(t *testing.T) {
	dir := taskDir(t)
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noExecBit := write("no-exec-bit.sh", "#!/bin/sh\necho hi\n", 0o644)
	notProgram := write("not-a-program", "this is text\n", 0o755)
	tests := []struct {
		name string
		spec sandbox.Spec
		is   error  // errors.Is target, if any
		text string // the message must mention this
	}{
		{"missing file", sandbox.Spec{Path: filepath.Join(dir, "nope"), Dir: dir}, fs.ErrNotExist, "nope"},
		{"no exec bit", sandbox.Spec{Path: noExecBit, Dir: dir}, fs.ErrPermission, "executable"},
		{"not a program", sandbox.Spec{Path: notProgram, Dir: dir}, syscall.ENOEXEC, "#!"},
		{"directory", sandbox.Spec{Path: dir, Dir: dir}, fs.ErrPermission, dir},
		{"missing dir", sandbox.Spec{Path: "/bin/true", Dir: filepath.Join(dir, "gone")}, fs.ErrNotExist, "working directory"},
		{"no path", sandbox.Spec{Dir: dir}, nil, "Spec.Path"},
	}
	forEachMode(t, func(t *testing.T, r *sandbox.Runner) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				p, err := r.Start(tt.spec)
				if err == nil {
					res, werr := p.Wait()
					t.Fatalf("Start succeeded (result %+v, %v), want an error", res, werr)
				}
				if tt.is != nil && !errors.Is(err, tt.is) {
					t.Errorf("error %q is not %v", err, tt.is)
				}
				if !strings.HasPrefix(err.Error(), "sandbox: ") || !strings.Contains(err.Error(), tt.text) {
					t.Errorf("error %q, want a sandbox: message mentioning %q", err, tt.text)
				}
			})
		}
	})
}

func TestStopEscalatesAfterGrace(t *testing.T) {
	forEachMode(t, func(t *testing.T, r *sandbox.Runner) {
		var out syncBuffer
		p := start(t, r, shell(`trap "" TERM; echo ready; sleep 1000`, &out, nil))
		eventually(t, 10*time.Second, "the task to ignore TERM", func() bool { return out.String() == "ready\n" })
		const grace = 300 * time.Millisecond
		begin := time.Now()
		p.Stop(grace)
		res := wait(t, p)
		if took := time.Since(begin); took < grace || took > grace+5*time.Second {
			t.Errorf("Wait returned %v after Stop(%v), want the grace period then a kill", took, grace)
		}
		if res.Signal != "SIGKILL" || res.ExitCode != -1 {
			t.Errorf("exit %d signal %q, want -1 SIGKILL", res.ExitCode, res.Signal)
		}
	})
}

// TestSignalsReachTheTask shows the task's own handlers run: the group gets
// the signal, and an isolated task (its namespace's PID 1) gets it because
// it handles it.
func TestSignalsReachTheTask(t *testing.T) {
	tests := []struct {
		name   string
		script string
		send   func(p *sandbox.Process) error
		code   int
		out    string
	}{
		{
			name:   "Stop lets a TERM trap clean up",
			script: `trap 'echo cleanup; exit 0' TERM; echo ready; sleep 1000 & wait`,
			send:   func(p *sandbox.Process) error { p.Stop(time.Minute); return nil },
			code:   0,
			out:    "ready\ncleanup\n",
		},
		{
			name:   "Signal USR1",
			script: `trap 'echo usr1; exit 4' USR1; echo ready; sleep 1000 & wait`,
			send:   func(p *sandbox.Process) error { return p.Signal(syscall.SIGUSR1) },
			code:   4,
			out:    "ready\nusr1\n",
		},
	}
	forEachMode(t, func(t *testing.T, r *sandbox.Runner) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var out syncBuffer
				p := start(t, r, shell(tt.script, &out, nil))
				eventually(t, 10*time.Second, "the trap to be set", func() bool { return out.String() == "ready\n" })
				if err := tt.send(p); err != nil {
					t.Fatalf("send: %v", err)
				}
				res := wait(t, p)
				if res.ExitCode != tt.code || out.String() != tt.out {
					t.Errorf("exit %d output %q, want %d %q", res.ExitCode, out.String(), tt.code, tt.out)
				}
			})
		}
	})
}

func TestStopAndSignalAreSafeToRepeat(t *testing.T) {
	forEachMode(t, func(t *testing.T, r *sandbox.Runner) {
		p := start(t, r, shell("sleep 1000", nil, nil))
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() { p.Stop(time.Duration(i) * time.Hour) }) // Stop(0) must win
		}
		wg.Wait()
		res := wait(t, p)
		// It ends at once (no Stop waits its hour). The shell may report
		// the TERM that ended its sleep first, as status 128+15.
		if res.Signal != "SIGTERM" && res.Signal != "SIGKILL" && !(res.Signal == "" && res.ExitCode == 128+int(syscall.SIGTERM)) {
			t.Errorf("signal %q, exit %d; want SIGTERM or SIGKILL, or the shell's 143 for its child's SIGTERM", res.Signal, res.ExitCode)
		}
		p.Stop(0)
		if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("Signal after exit = %v, want os.ErrProcessDone", err)
		}
	})
}

// BenchmarkStartWait shows what the sandbox costs per task over a plain
// exec.Command.
func BenchmarkStartWait(b *testing.B) {
	b.Run("exec.Command", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command("/bin/true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, isolate := range []bool{false, true} {
		name := "group"
		if isolate {
			name = "isolated"
		}
		b.Run(name, func(b *testing.B) {
			r := newRunner(b, isolate)
			spec := sandbox.Spec{Path: "/bin/true", Dir: workDir}
			for b.Loop() {
				p, err := r.Start(spec)
				if err != nil {
					b.Fatal(err)
				}
				if res, err := p.Wait(); err != nil || res.ExitCode != 0 {
					b.Fatalf("exit %d: %v", res.ExitCode, err)
				}
			}
		})
	}
}

func TestWorkingDirectory(t *testing.T) {
	ours, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := filepath.EvalSymlinks(taskDir(t))
	if err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dir, confine, want string
		isolated                 bool // only the sandbox has Confine
	}{
		{"given", dir, "", dir, false},
		{"inside confine", sub, dir, sub, false},
		{"empty means confine", "", dir, dir, true},
	}
	forEachMode(t, func(t *testing.T, r *sandbox.Runner) {
		tests := tests
		if !r.Isolated() {
			tests = append(tests[:2:2], struct {
				name, dir, confine, want string
				isolated                 bool
			}{"empty means ours", "", "", ours, false})
		}
		for _, tt := range tests {
			if tt.isolated && !r.Isolated() {
				continue
			}
			t.Run(tt.name, func(t *testing.T) {
				var out syncBuffer
				spec := shell("pwd -P", &out, nil)
				spec.Dir, spec.Confine = tt.dir, tt.confine
				wait(t, start(t, r, spec))
				if got := strings.TrimSpace(out.String()); got != tt.want {
					t.Errorf("pwd = %q, want %q", got, tt.want)
				}
			})
		}
	})
}
