// Package sandbox launches one task process and owns its whole process tree:
// its output, its exit, signals to it, stopping it (SIGTERM, a grace period,
// then SIGKILL) and its resource usage.
//
// The contract follows Nomad's executors: Start, Wait, Signal, Stop(grace).
// What is enforced depends on the host, and Runner.Describe says so in one
// line for the start-up log:
//
//   - Linux with Options.Isolate and root: every task gets its own cgroup
//     (memory, CPU and pids limits; killed as a whole), its own pid, mount,
//     ipc, uts and network namespaces, a filesystem view of read-only
//     system directories, cmd_dir, a private /tmp, a minimal /dev and its
//     own /proc (or cmd_dir alone, in chroot mode), an unprivileged user,
//     no_new_privs and rlimits. The per-task setup runs in a small helper,
//     task-job-init (package sandbox/nsinit), which then execs the task:
//     the task is PID 1 of its namespace, and when it exits the kernel
//     kills everything left in it, setsid daemons and double forks
//     included.
//   - Other Unix (and Linux without isolation): a process group per task,
//     signalled as a group, SIGKILLed as a group once the main process has
//     exited. A process that calls setsid escapes the group; Wait stops
//     waiting for its output after a short bound.
//   - Windows: a job object that kills every process in it when closed.
package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/taskjob/task-job/internal/privdir"
)

// drainTimeout bounds how long Wait keeps reading output after the task's
// main process has exited and the rest of its tree was killed. Output is
// still open then only when a process escaped the kill (setsid without a pid
// namespace); its pipes are closed rather than letting it delay the result.
const drainTimeout = 2 * time.Second

// InitName is the sandbox helper's file name, and the argv[0] under which a
// re-executed task-job runs nsinit.Main.
const InitName = "task-job-init"

// Options configures a Runner.
type Options struct {
	// Isolate asks for the Linux sandbox (see the package comment). It
	// requires root; when unavailable New degrades to a process group and
	// Describe says so, unless Require is set. Ignored on other operating
	// systems.
	Isolate bool
	// Require makes New fail when Isolate was asked for and cannot be had,
	// instead of degrading.
	Require bool

	// InitPath is the task-job-init helper. Empty means the file of that
	// name next to the running executable, or else the executable itself
	// re-executed (which works when its main calls nsinit.Main for that
	// name, and costs about 2 ms more per task).
	InitPath string
	// PoolSize is how many sandbox helpers wait pre-started, each in fresh
	// namespaces and a cgroup of its own, for the next tasks (Linux
	// sandbox only): a task that finds one skips the helper's start.
	// Every helper serves one task. 0 means DefaultPoolSize (4); negative
	// turns the pool off.
	PoolSize int
	// CgroupName is the parent cgroup of the tasks' groups ("task-job").
	CgroupName string
	// RootDir is an empty host directory the task's root is built on
	// (inside its own mount namespace only). Default /run/task-job/root.
	RootDir string
	// ReadOnly are the host paths a task sees read-only. Default
	// DefaultReadOnly.
	ReadOnly []string
	// TmpBytes sizes the private /tmp and /dev/shm (default 64 MiB; their
	// pages count against the task's memory limit).
	TmpBytes int64
	// WorkBytes caps each task's own work directory (HOME, TMPDIR): a
	// tmpfs of this size, its pages counted against the memory limit
	// (default 1 GiB; negative: a plain directory on work_dir's disk, no
	// cap). The process-group fallback cannot cap it.
	WorkBytes int64
	// Defaults apply to a task whose Spec leaves a field zero.
	Defaults Limits
	// Chroot shows every task only its working tree (Spec.Confine) as /.
	Chroot bool
	// Rlimits for every task; zero fields take DefaultRlimits' values.
	Rlimits Rlimits
	// WorkDir (work_dir) holds one private directory per running task,
	// made 0700 for the task's user and removed when the task ends: its
	// HOME, TMPDIR and TASK_WORKDIR, the one place it may write by default
	// (cmd_dir is read-only in the sandbox). It is created without
	// following symlinks and refused if another user could change it; it
	// must not lie inside cmd_dir. Default DefaultWorkDir().
	WorkDir string

	// Logger receives debug records and warnings (output that had to be cut
	// off, writers that failed). It may be nil.
	Logger hclog.Logger
}

// DefaultPoolSize is how many sandbox helpers wait pre-started when
// Options.PoolSize is 0.
const DefaultPoolSize = 4

// Limits are a task's resources and identity in the Linux sandbox. Zero
// fields take the Runner's defaults.
type Limits struct {
	MemoryBytes int64
	CPUCores    float64
	Pids        int64
	// User is a user name or numeric uid; the task runs with that user's
	// primary group and no supplementary groups. Default "nobody".
	User string
	// Group, a group name or numeric gid, replaces the user's primary group.
	Group string
	// Network gives the task the host's network; otherwise it has only a
	// loopback interface of its own.
	Network bool
	// CmdDirWritable lets the task write cmd_dir (a policy rule's
	// cmd_dir_writable); otherwise the sandbox shows it read-only. Either
	// way it is mounted nosuid,nodev, and no task can make a setuid or
	// setgid file or a device there (see the README's Sandbox section).
	CmdDirWritable bool
}

// Rlimits are set on every sandboxed task, soft and hard alike.
type Rlimits struct {
	FileBytes int64 // largest file it may write
	OpenFiles int64
}

// DefaultRlimits are used for Options.Rlimits fields left zero. Core dumps
// are always off: they would write the task's memory into cmd_dir.
var DefaultRlimits = Rlimits{FileBytes: 1 << 30, OpenFiles: 1024}

// DefaultReadOnly are the host paths a sandboxed task sees read-only: what
// scripts need to run, and from /etc only files that say nothing secret.
var DefaultReadOnly = []string{
	"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr",
	"/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
	"/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/resolv.conf",
	"/etc/localtime", "/etc/ssl/certs", "/etc/ca-certificates", "/etc/os-release",
	"/etc/debian_version", "/etc/profile", "/etc/bash.bashrc", "/etc/mime.types",
}

// Runner starts tasks. It is safe for concurrent use; Close releases what
// New set up.
type Runner struct {
	isolated bool
	describe string
	log      hclog.Logger
	jail     *jailer // the Linux sandbox, when isolated
	workDir  string  // parent of the tasks' own directories; "" = none (the start-up probe)

	// releasing counts tasks whose result is out but whose host resources
	// (cgroup, namespaces, work directory) are still being released;
	// releaseSlots bounds how many may be, so a burst of short tasks
	// cannot pile up groups and namespaces faster than they go.
	releasing    sync.WaitGroup
	releaseSlots chan struct{}
}

// maxReleasing bounds the tasks being released at once; Start waits for a
// slot beyond that.
const maxReleasing = 16

// Close waits until every ended task's resources are released, then
// releases the Runner's own (the shared empty network namespace, spare
// cgroups). Tasks still running are not affected.
func (r *Runner) Close() error {
	r.releasing.Wait()
	if r.jail != nil {
		return r.jail.close()
	}
	return nil
}

// New returns a Runner for this host. With Options.Isolate on Linux it checks
// once per process that a pid namespace can be created and that the sandbox
// init answers; if namespaces are refused it falls back to process groups
// (see Describe). It returns an error only when the program is set up wrongly,
// for example when main does not call MaybeRunInit.
func New(opts Options) (*Runner, error) {
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	r := &Runner{log: log.Named("sandbox"), workDir: opts.WorkDir, releaseSlots: make(chan struct{}, maxReleasing)}
	if r.workDir == "" {
		if r.workDir = DefaultWorkDir(); r.workDir == "" {
			return nil, errors.New("sandbox: no directory for the tasks' work directories could be chosen; set work_dir")
		}
	}
	if err := privdir.Make(r.workDir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: the tasks' work directory (work_dir) cannot be used safely: %w", err)
	}
	if err := r.setup(opts); err != nil {
		return nil, err
	}
	r.describe += "; each task's own work dir (HOME, TMPDIR, TASK_WORKDIR) under " + r.workDir
	return r, nil
}

// DefaultWorkDir is Options.WorkDir's default: /var/lib/task-job/work for
// root, the user's state directory ($XDG_STATE_HOME, else ~/.local/state)
// otherwise, never a shared temporary directory. "" when none is found.
func DefaultWorkDir() string {
	if os.Geteuid() == 0 && runtime.GOOS != "windows" {
		return "/var/lib/task-job/work"
	}
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "task-job", "work")
	}
	if d, err := os.UserCacheDir(); err == nil && runtime.GOOS == "windows" {
		return filepath.Join(d, "task-job", "work")
	}
	if home, err := os.UserHomeDir(); err == nil && filepath.IsAbs(home) {
		return filepath.Join(home, ".local", "state", "task-job", "work")
	}
	return ""
}

// EnvTaskWorkDir names the task's own writable directory in its
// environment; HOME and TMPDIR point there too.
const EnvTaskWorkDir = "TASK_WORKDIR"

// newTaskDir makes the task's own directory under the work directory.
func (r *Runner) newTaskDir(name string) (string, error) {
	if r.workDir == "" {
		return "", nil
	}
	dir, err := os.MkdirTemp(r.workDir, safeName(name)+"-")
	if err != nil {
		return "", fmt.Errorf("sandbox: create the task's work directory in %s: %w", r.workDir, err)
	}
	return dir, nil
}

// taskDirAt is where the task sees its own directory dir.
func (r *Runner) taskDirAt(dir string) string {
	if r.jail != nil {
		return r.jail.taskDirAt(dir)
	}
	return dir
}

// removeTaskDir removes what the task left in its directory. Nothing of
// the task runs any more; RemoveAll does not follow symlinks.
func (r *Runner) removeTaskDir(dir string) {
	if dir == "" {
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		r.log.Warn("could not remove the task's work directory", "dir", dir, "error", err)
	}
}

// safeName keeps a task name fit for a file name: at most 64 of
// [A-Za-z0-9._-].
func safeName(name string) string {
	b := []byte(name)
	if len(b) > 64 {
		b = b[:64]
	}
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] == '.' {
		b = append([]byte("task"), b...)
	}
	return string(b)
}

// withTaskDir returns env with HOME, TMPDIR and TASK_WORKDIR set to dir,
// replacing any given.
func withTaskDir(env []string, dir string) []string {
	out := make([]string, 0, len(env)+3)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k != "HOME" && k != "TMPDIR" && k != EnvTaskWorkDir {
			out = append(out, kv)
		}
	}
	return append(out, "HOME="+dir, "TMPDIR="+dir, EnvTaskWorkDir+"="+dir)
}

// Describe returns one human line for the start-up log saying what is
// enforced and what is not on this host.
func (r *Runner) Describe() string { return r.describe }

// Isolation names, for every task's result, what confines tasks here:
// "sandbox", "sandbox-without-cgroups" (no memory, CPU or pids limits on
// this host), or "process-group".
func (r *Runner) Isolation() string {
	switch {
	case r.jail == nil || !r.isolated:
		return "process-group"
	case !r.jail.cgroups():
		return "sandbox-without-cgroups"
	}
	return "sandbox"
}

// Isolated reports whether tasks run in the Linux sandbox.
func (r *Runner) Isolated() bool { return r.isolated }

// Spec describes one process to start. It is executed directly, never
// through a shell.
type Spec struct {
	// Path is the program to execute. A relative path is taken relative to
	// Dir; there is no $PATH search.
	Path string
	// Args is the full argv; Args[0] is argv[0]. When empty, argv is [Path].
	Args []string
	// Dir is the working directory; it must exist. Empty means the
	// executor's own.
	Dir string
	// Env is the complete environment, used as-is: nothing is inherited
	// from the executor.
	Env []string
	// Stdout and Stderr receive the task's output. The sandbox creates the
	// pipes and copies into these writers; all writes to one writer come
	// from one goroutine, so a line splitter needs no lock. When both are
	// the same comparable value, one pipe feeds it. A nil writer discards
	// that stream (the task writes to /dev/null).
	Stdout, Stderr io.Writer

	// The fields below matter only in the Linux sandbox.

	// Name identifies the task in its cgroup's name (the task id).
	Name string
	// Confine is the directory tree the task may write (cmd_dir), seen at
	// the same path; Dir must lie inside it. Default Dir. It may not be /.
	Confine string
	Limits  Limits

	taskDir string // the task's own directory on the host, set by Start
}

// Result is how a task ended and what it used.
type Result struct {
	// ExitCode is the main process's exit status, -1 when a signal killed it.
	ExitCode int
	// Signal names the signal that killed the main process ("SIGKILL",
	// "SIGTERM", ...), or is empty when it exited.
	Signal string
	// CPU is user plus system CPU time of the task's processes as rusage
	// reports it: the main process and the descendants that were reaped
	// (with isolation, the orphans the task's PID 1 reaped too).
	CPU time.Duration
	// MaxRSS is the peak resident set size in bytes of the largest process
	// of the tree, as rusage reports it (0 where the OS does not say).
	MaxRSS int64
	// Started is when the task was started; Ended is when its main process
	// was seen to exit.
	Started, Ended time.Time

	// In the Linux sandbox with cgroups, CPU covers every process of the
	// task and MaxRSS is the group's peak memory; OOMKilled says the
	// kernel killed a process of the task for exceeding its memory limit.
	OOMKilled bool
	// Limits are what was enforced (zero where nothing was).
	Limits Limits
	// Cgroup is the task's cgroup, "" without one.
	Cgroup string
}

// Process is one started task. Its methods are safe for concurrent use.
type Process struct {
	pid     int
	started time.Time
	limits  Limits // enforced, for the Result
	cgroup  string
	log     hclog.Logger
	sys     procSys // the per-OS handle, see the sandbox_*.go files

	termOnce sync.Once
	done     chan struct{} // closed when result and err are final
	released chan struct{} // closed when the task's host resources are released
	result   Result
	err      error
}

// Start launches the task. Exec failures such as a missing file or a file
// without its exec bit are returned here (with errors.Is working for
// fs.ErrNotExist and fs.ErrPermission); anything that goes wrong later is
// reported by Wait.
//
// On Linux the parent-death signal of the started process is tied to the
// calling OS thread: do not call Start from a goroutine that locked its
// thread (runtime.LockOSThread) and then exits without unlocking, or the task
// is killed when that thread ends.
func (r *Runner) Start(spec Spec) (*Process, error) {
	if spec.Path == "" {
		return nil, errors.New("sandbox: the task has no program path; set Spec.Path")
	}
	if len(spec.Args) == 0 {
		spec.Args = []string{spec.Path}
	}
	if spec.Dir != "" {
		fi, err := os.Stat(spec.Dir)
		if err != nil {
			return nil, fmt.Errorf("sandbox: working directory: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("sandbox: working directory %s is not a directory", spec.Dir)
		}
	}

	taskDir, err := r.newTaskDir(spec.Name)
	if err != nil {
		return nil, err
	}
	if taskDir != "" {
		spec.taskDir = taskDir
		spec.Env = withTaskDir(spec.Env, r.taskDirAt(taskDir))
	}
	out, err := newStdio(spec.Stdout, spec.Stderr, r.log)
	if err != nil {
		r.removeTaskDir(taskDir)
		return nil, err
	}
	r.releaseSlots <- struct{}{}
	r.releasing.Add(1)
	p := &Process{log: r.log, done: make(chan struct{}), released: make(chan struct{}), started: time.Now()}
	err = r.start(p, spec, out.child)
	out.closeChild()
	if err != nil {
		out.drain(drainTimeout)
		r.removeTaskDir(taskDir)
		r.released(p)
		return nil, err
	}
	r.log.Debug("task started", "path", spec.Path, "pid", p.pid, "isolated", r.isolated)

	go func() {
		// The result is final once the main process is reaped and nothing
		// of the task can run any more (see waitExit), and its output is
		// drained. Releasing what it held on the host (its cgroup, its
		// namespaces, its work directory) comes after, off the result's
		// path.
		res, err := p.waitExit()
		res.Started, res.Ended = p.started, time.Now()
		if out.drain(drainTimeout) {
			p.log.Warn("task output still open after its main process exited; closed it (a process escaped the task's process group)",
				"pid", p.pid, "after", drainTimeout)
		}
		p.result, p.err = res, err
		close(p.done)
		p.release()
		r.removeTaskDir(taskDir)
		r.released(p)
	}()
	return p, nil
}

func (r *Runner) released(p *Process) {
	close(p.released)
	<-r.releaseSlots
	r.releasing.Done()
}

// Released is closed once everything the task held on the host is released:
// its cgroup removed (or queued for removal), its namespaces dropped, its
// work directory deleted. That happens after Wait returns; Runner.Close
// waits for it.
func (p *Process) Released() <-chan struct{} { return p.released }

// Limits returns what is enforced on the task: the effective limits in the
// Linux sandbox (zero where the host cannot enforce one), zero otherwise.
func (p *Process) Limits() Limits { return p.limits }

// Cgroup returns the task's cgroup, "" without one.
func (p *Process) Cgroup() string { return p.cgroup }

// Pid returns the host pid of the task's top process (with isolation, PID 1
// of its namespaces).
func (p *Process) Pid() int { return p.pid }

// Wait blocks until the task's main process has exited, every other process
// of the task is gone (or, without a pid namespace, its process group was
// SIGKILLed) and its output has been drained, but never more than about
// two seconds after the main process exited because some escaped process
// holds the output open (the pipes are then closed). It may be called any
// number of times and returns the same values each time. In the Linux
// sandbox no process of the task exists any more when it returns; its
// cgroup and namespaces are released after (see Released).
func (p *Process) Wait() (Result, error) {
	<-p.done
	return p.result, p.err
}

// Stop asks the whole task to end: the polite signal (SIGTERM) to every
// process of the task now, then after grace SIGKILL to all of them. It
// returns at once; use Wait for the result. It is safe to call concurrently
// and more than once: the polite signal is sent once, and the earliest
// deadline of all calls wins, so a later Stop(0) cuts a long grace short.
func (p *Process) Stop(grace time.Duration) {
	p.termOnce.Do(p.terminate)
	go func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
			p.kill()
		}
	}()
}

// Signal delivers sig to the task's process group. With isolation the top
// process is PID 1 of its namespace and only gets signals it handles (and
// SIGKILL, which ends the namespace). After the task has exited it returns
// an error wrapping os.ErrProcessDone.
func (p *Process) Signal(sig os.Signal) error { return p.signal(sig) }

// stdio is a task's standard files: the ends handed to the child and the
// goroutines copying the read ends into the caller's writers.
type stdio struct {
	child   [3]*os.File // stdin (/dev/null), stdout, stderr
	readers []*os.File
	copying sync.WaitGroup
}

func newStdio(stdout, stderr io.Writer, log hclog.Logger) (*stdio, error) {
	s := &stdio{}
	fail := func(err error) (*stdio, error) {
		s.closeChild()
		for _, r := range s.readers {
			r.Close()
		}
		return nil, fmt.Errorf("sandbox: set up the task's stdio: %w", err)
	}
	var err error
	if s.child[0], err = os.Open(os.DevNull); err != nil {
		return fail(err)
	}
	for i, w := range []io.Writer{stdout, stderr} {
		switch {
		case w == nil:
			s.child[i+1], err = os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		case i == 1 && sameWriter(stdout, stderr):
			s.child[2] = s.child[1]
		default:
			var r *os.File
			r, s.child[i+1], err = os.Pipe()
			if err == nil {
				s.readers = append(s.readers, r)
				s.copying.Add(1)
				go s.copy(w, r, log)
			}
		}
		if err != nil {
			return fail(err)
		}
	}
	return s, nil
}

// copy moves output from r to w until r ends. When w fails, the rest is read
// and dropped, so the task never blocks on a full pipe.
func (s *stdio) copy(w io.Writer, r *os.File, log hclog.Logger) {
	defer s.copying.Done()
	buf := make([]byte, 32<<10)
	var werr error
	for {
		n, err := r.Read(buf)
		if n > 0 && werr == nil {
			if _, werr = w.Write(buf[:n]); werr != nil {
				log.Warn("task output writer failed; dropping the rest of this stream", "error", werr)
			}
		}
		if err != nil {
			return
		}
	}
}

// closeChild closes the parent's copies of the child's ends, so the read
// ends see EOF once the task's processes are gone.
func (s *stdio) closeChild() {
	for i, f := range s.child {
		if f != nil && (i != 2 || f != s.child[1]) {
			f.Close()
		}
	}
}

// drain waits for the copiers to reach EOF, at most timeout, then closes the
// read ends. It reports whether it had to cut the output off.
func (s *stdio) drain(timeout time.Duration) (cut bool) {
	finished := make(chan struct{})
	go func() {
		s.copying.Wait()
		close(finished)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-finished:
	case <-t.C:
		cut = true
	}
	for _, r := range s.readers {
		r.Close() // unblocks a pending Read
	}
	<-finished
	return cut
}

// sameWriter reports whether a and b are the same writer, as os/exec decides
// it: equal when comparable, different otherwise.
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}
