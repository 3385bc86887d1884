package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// How the executor marks the sandbox init when it re-executes itself.
// initFlag is there so that a program that forgot to call MaybeRunInit
// fails fast on an unknown flag instead of running a second copy of itself.
const (
	initEnv   = "TASKJOB_SANDBOX_INIT"
	initArgv0 = "task-job-sandbox-init"
	initFlag  = "-task-job-sandbox-init"
)

// The init's file descriptors besides stdio.
const (
	initSpecFD   = 3 // the executor writes one initSpec, then closes it
	initReportFD = 4 // the init writes a startReport, then an exitReport
)

// taskHostname is the host name a task sees in its own uts namespace.
const taskHostname = "task"

// initSpec is what the executor asks the init to run.
type initSpec struct {
	// Probe asks the init only to check that it is PID 1 of a new pid
	// namespace and can set the host name, answer, and exit.
	Probe bool     `json:"probe,omitempty"`
	Path  string   `json:"path,omitempty"`
	Args  []string `json:"args,omitempty"`
	Dir   string   `json:"dir,omitempty"`
	Env   []string `json:"env,omitempty"`
}

// startReport is the init's first report: the task's pid in the namespace,
// or why it could not be started. Errno carries an exec failure so the
// executor can rebuild an error that errors.Is understands.
type startReport struct {
	Pid   int    `json:"pid,omitempty"`
	Errno int    `json:"errno,omitempty"`
	Error string `json:"error,omitempty"`
}

// exitReport is how the task's main process ended and what the task used.
type exitReport struct {
	ExitCode int   `json:"exit_code"`
	Signal   int   `json:"signal,omitempty"`
	CPUNanos int64 `json:"cpu_ns"`
	MaxRSSKB int64 `json:"max_rss_kb"`
}

func maybeRunInit() {
	if os.Getenv(initEnv) != "1" || len(os.Args) != 2 || os.Args[1] != initFlag {
		return
	}
	os.Exit(runInit())
}

// runInit is PID 1 of a task's pid namespace. It starts the task, forwards
// the executor's signals to every process in the namespace (PID 1 only gets
// signals it handles, so a bare task as PID 1 would ignore SIGTERM), reaps
// every orphan, and when the task's main process exits, reports its result
// and exits; the kernel then kills whatever is left in the namespace.
//
// It runs once per task, so it does no more than that: no logging, no
// configuration, nothing at package init time.
func runInit() int {
	report := os.NewFile(initReportFD, "sandbox-report")
	enc := json.NewEncoder(report)
	fail := func(err error) int {
		_ = enc.Encode(startReport{Error: err.Error()})
		return 125
	}

	// The task inherits only fds 0-2; everything else, the spec and report
	// pipes included, is closed when it execs.
	if err := closeOnExecFrom(initSpecFD); err != nil {
		return fail(err)
	}
	var spec initSpec
	specFile := os.NewFile(initSpecFD, "sandbox-spec")
	err := json.NewDecoder(specFile).Decode(&spec)
	specFile.Close()
	if err != nil {
		return fail(fmt.Errorf("read the task spec: %w", err))
	}
	if pid := os.Getpid(); pid != 1 {
		return fail(fmt.Errorf("the init runs as pid %d, not as PID 1 of a new pid namespace", pid))
	}
	if err := unix.Sethostname([]byte(taskHostname)); err != nil {
		return fail(fmt.Errorf("set the task's host name: %w", err))
	}
	if spec.Probe {
		_ = enc.Encode(startReport{Pid: 1})
		return 0
	}

	// Handlers go in before the task exists, so no signal meant for it is
	// dropped.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwardedSignals...)

	pid, err := syscall.ForkExec(spec.Path, spec.Args, &syscall.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			_ = enc.Encode(startReport{Errno: int(errno)})
			return 127
		}
		return fail(fmt.Errorf("start the task: %w", err))
	}
	if err := enc.Encode(startReport{Pid: pid}); err != nil {
		return 125 // the executor is gone; exiting takes the task with us
	}

	go func() {
		for sig := range sigs {
			_ = unix.Kill(-1, sig.(syscall.Signal)) // everyone in the namespace but us
		}
	}()

	ws := reapUntil(pid)
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_CHILDREN, &ru)
	rep := exitReport{
		ExitCode: ws.ExitStatus(),
		CPUNanos: ru.Utime.Nano() + ru.Stime.Nano(),
		MaxRSSKB: ru.Maxrss,
	}
	if ws.Signaled() {
		rep.ExitCode, rep.Signal = -1, int(ws.Signal())
	}
	_ = enc.Encode(rep)
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return rep.ExitCode
}

// reapUntil reaps every process that ends up as our child until main exits,
// and returns main's wait status.
func reapUntil(main int) unix.WaitStatus {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		switch {
		case errors.Is(err, unix.EINTR):
		case err != nil:
			// ECHILD: main is gone without us seeing it, which should not
			// happen; report it as killed rather than hang.
			return unix.WaitStatus(unix.SIGKILL)
		case pid == main:
			return ws
		}
	}
}

// closeOnExecFrom marks every open fd >= from close-on-exec.
func closeOnExecFrom(from int) error {
	err := unix.CloseRange(uint(from), math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	// Kernels before 5.11: walk the fd table.
	ents, rerr := os.ReadDir("/proc/self/fd")
	if rerr != nil {
		return fmt.Errorf("mark fds close-on-exec: %w (close_range: %v)", rerr, err)
	}
	for _, e := range ents {
		fd, aerr := strconv.Atoi(e.Name())
		if aerr != nil || fd < from {
			continue
		}
		_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC) // EBADF: the ReadDir fd itself
	}
	return nil
}
