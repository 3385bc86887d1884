package sandbox

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// procSys is the Windows handle of a task: its process and the job object
// that holds it and every process it starts.
//
// The process is assigned to the job right after it starts, not created
// inside it (os.StartProcess cannot start it suspended), so a child it
// spawns in its first instant would be outside the job. Only exit codes and
// CPU time are reported; MaxRSS stays 0.
type procSys struct {
	proc *os.Process
	job  windows.Handle

	mu     sync.Mutex
	exited bool // the job is terminated and closed
	killed bool // we terminated the job before the task exited
}

const describeJob = "sandbox: job object per task (all its processes die with it); " +
	"not enforced: namespaces, resource limits, credentials; a child started in the task's first instant may escape"

func (r *Runner) setup(opts Options) error {
	r.describe = describeJob
	return nil
}

func (r *Runner) start(p *Process, spec Spec, stdio [3]*os.File) error {
	job, err := windows.CreateJobObject(nil, nil)
	if err != nil {
		return fmt.Errorf("sandbox: create a job object: %w", err)
	}
	info := windows.JOBOBJECT_EXTENDED_LIMIT_INFORMATION{
		BasicLimitInformation: windows.JOBOBJECT_BASIC_LIMIT_INFORMATION{
			LimitFlags: windows.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
		},
	}
	if _, err := windows.SetInformationJobObject(job, windows.JobObjectExtendedLimitInformation,
		uintptr(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info))); err != nil {
		windows.CloseHandle(job)
		return fmt.Errorf("sandbox: set kill-on-close on the job object: %w", err)
	}
	proc, err := os.StartProcess(spec.Path, spec.Args, &os.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: stdio[:],
		// A process group of its own lets Stop send CTRL_BREAK to the task
		// alone.
		Sys: &syscall.SysProcAttr{CreationFlags: windows.CREATE_NEW_PROCESS_GROUP},
	})
	if err != nil {
		windows.CloseHandle(job)
		return fmt.Errorf("sandbox: cannot start the task: %w", err)
	}
	if err := assign(job, proc.Pid); err != nil {
		_ = proc.Kill()
		_, _ = proc.Wait()
		windows.CloseHandle(job)
		return err
	}
	p.pid, p.sys.proc, p.sys.job = proc.Pid, proc, job
	return nil
}

func assign(job windows.Handle, pid int) error {
	h, err := windows.OpenProcess(windows.PROCESS_SET_QUOTA|windows.PROCESS_TERMINATE, false, uint32(pid))
	if err != nil {
		return fmt.Errorf("sandbox: open the task process %d: %w", pid, err)
	}
	defer windows.CloseHandle(h)
	if err := windows.AssignProcessToJobObject(job, h); err != nil {
		return fmt.Errorf("sandbox: put the task into its job object: %w", err)
	}
	return nil
}

// waitExit waits for the task's process, then terminates and closes the job
// so nothing left of the task can hold its output open.
func (p *Process) waitExit() (Result, error) {
	state, err := p.sys.proc.Wait()
	p.sys.mu.Lock()
	p.sys.exited = true
	killed := p.sys.killed
	_ = windows.TerminateJobObject(p.sys.job, 1)
	windows.CloseHandle(p.sys.job)
	p.sys.mu.Unlock()
	if err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("sandbox: wait for task pid %d: %w", p.pid, err)
	}
	res := Result{ExitCode: state.ExitCode(), CPU: state.UserTime() + state.SystemTime()}
	if killed {
		res.ExitCode, res.Signal = -1, "SIGKILL"
	}
	return res, nil
}

// terminate sends CTRL_BREAK, the closest Windows has to SIGTERM. Only
// console programs sharing our console see it.
func (p *Process) terminate() { _ = p.signal(os.Interrupt) }

func (p *Process) kill() { _ = p.signal(os.Kill) }

// release has nothing left to free: the job was closed before the result.
func (p *Process) release() {}

// signal supports os.Kill (terminate the job) and os.Interrupt (CTRL_BREAK).
func (p *Process) signal(sig os.Signal) error {
	p.sys.mu.Lock()
	defer p.sys.mu.Unlock()
	if p.sys.exited {
		return fmt.Errorf("sandbox: signal %v to task pid %d: %w", sig, p.pid, os.ErrProcessDone)
	}
	switch sig {
	case os.Kill:
		p.sys.killed = true
		if err := windows.TerminateJobObject(p.sys.job, 1); err != nil {
			return fmt.Errorf("sandbox: terminate the task's job object: %w", err)
		}
		return nil
	case os.Interrupt:
		if err := windows.GenerateConsoleCtrlEvent(windows.CTRL_BREAK_EVENT, uint32(p.pid)); err != nil {
			return fmt.Errorf("sandbox: send CTRL_BREAK to task pid %d: %w", p.pid, err)
		}
		return nil
	}
	return errors.New("sandbox: only os.Kill and os.Interrupt can be sent to a task on Windows")
}

// jailer is the Linux sandbox; it does not exist here.
type jailer struct{}

func (j *jailer) close() error  { return nil }
func (j *jailer) cgroups() bool { return false }

// taskDirAt: outside the Linux sandbox a task sees host paths.
func (j *jailer) taskDirAt(dir string) string { return dir }
