//go:build unix

package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// procSys is the Unix handle of a task: its top process, which leads the
// task's process group (and with isolation is PID 1 of its namespaces).
type procSys struct {
	proc *os.Process

	// mu guards exited. Signals are sent under mu and only while the top
	// process is not yet reaped, so its pid and process group id cannot
	// have been reused by an unrelated process.
	mu     sync.Mutex
	exited bool

	jail *jailSys // the Linux sandbox's part, nil outside it
}

// start launches spec as the top process of a new process group, in new
// namespaces when isolated.
func (r *Runner) start(p *Process, spec Spec, stdio [3]*os.File) error {
	if r.jail != nil {
		return r.jail.start(p, spec, stdio)
	}
	attr := groupAttr()
	closeOnExec()
	proc, err := os.StartProcess(spec.Path, spec.Args, &os.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: stdio[:],
		Sys:   attr,
	})
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return startError(spec.Path, pe.Err)
		}
		return fmt.Errorf("sandbox: start %s: %w", spec.Path, err)
	}
	p.pid, p.sys.proc = proc.Pid, proc
	return nil
}

// waitExit waits for the top process to exit, SIGKILLs what is left of its
// process group (so background children cannot hold the output open), reaps
// it and returns its result.
func (p *Process) waitExit() (Result, error) {
	// Where the OS can wait without reaping, the group is killed while the
	// top process is a zombie: its pgid then still names this task.
	zombie := waitNoReap(p.pid) == nil
	if zombie {
		p.markExited()
	}
	state, err := p.sys.proc.Wait()
	if !zombie {
		p.markExited()
	}
	if err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("sandbox: wait for task pid %d: %w", p.pid, err)
	}
	res := resultOf(state.Sys().(syscall.WaitStatus), state.SysUsage().(*syscall.Rusage))
	res.Limits, res.Cgroup = p.limits, p.cgroup
	if p.sys.jail != nil {
		p.sys.jail.settle(&res, p.log)
	}
	return res, nil
}

// release frees what the task held on the host once its result is out.
func (p *Process) release() {
	if p.sys.jail != nil {
		p.sys.jail.release(p.log)
	}
}

// markExited stops further signals and kills whatever is left of the
// task's process group.
func (p *Process) markExited() {
	p.sys.mu.Lock()
	defer p.sys.mu.Unlock()
	p.sys.exited = true
	_ = unix.Kill(-p.pid, unix.SIGKILL) // ESRCH: nothing left, as hoped
}

func (p *Process) terminate() { _ = p.signal(unix.SIGTERM) }

func (p *Process) kill() {
	_ = p.signal(unix.SIGKILL)
	if p.sys.jail != nil {
		p.sys.jail.kill()
	}
}

// signal sends sig to the task's process group. With isolation the top
// process is its namespace's PID 1: it gets the signal only if it handles
// it (SIGKILL always), and SIGKILL to it ends the whole namespace.
func (p *Process) signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("sandbox: signal %v is not a Unix signal", sig)
	}
	p.sys.mu.Lock()
	defer p.sys.mu.Unlock()
	if p.sys.exited {
		return fmt.Errorf("sandbox: signal %v to task pid %d: %w", sig, p.pid, os.ErrProcessDone)
	}
	if err := unix.Kill(-p.pid, s); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("sandbox: signal %v to task pid %d: %w", sig, p.pid, err)
	}
	return nil
}

// resultOf turns a wait status and rusage into a Result.
func resultOf(ws syscall.WaitStatus, ru *syscall.Rusage) Result {
	res := Result{ExitCode: ws.ExitStatus()}
	if ws.Signaled() {
		res.ExitCode, res.Signal = -1, unix.SignalName(ws.Signal())
	}
	if ru != nil {
		res.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		res.MaxRSS = int64(ru.Maxrss) * maxRSSUnit
	}
	return res
}

// startError explains an exec failure and what to do about it. The returned
// error wraps a *fs.PathError holding errno, so errors.Is works.
func startError(path string, errno error) error {
	hint := ""
	switch {
	case errors.Is(errno, fs.ErrNotExist):
		hint = "; check that the program, and the interpreter named on its #! line, exist"
	case errors.Is(errno, fs.ErrPermission):
		hint = "; the file must be executable (mode +x) and not on a noexec mount"
	case errors.Is(errno, syscall.ENOEXEC):
		hint = "; it is neither a program for this machine nor a script starting with #!"
	}
	return fmt.Errorf("sandbox: cannot start the task: %w%s", &fs.PathError{Op: "exec", Path: path, Err: errno}, hint)
}
