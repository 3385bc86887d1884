package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxRSSUnit converts rusage ru_maxrss, in kilobytes on Linux, to bytes.
const maxRSSUnit = 1024

// isolationFlags are the namespaces every isolated task gets. The task's
// own process is PID 1 of its pid namespace: when it exits, the kernel
// kills every process left in the namespace, setsid daemons and double forks
// included. The task is cloned straight into the namespaces, with no init
// process in between: that costs about what a plain fork/exec costs, where
// re-executing a Go init per task cost ~2-5 ms of CPU (see the README's
// benchmarks). A namespace's PID 1 receives from outside only the signals it
// has a handler for (and SIGKILL), so SIGTERM reaches a script that traps it
// and every other process of its group; SIGKILL after the grace ends them all.
const isolationFlags = unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS

const (
	describeIsolated = "sandbox: pid+ipc+uts namespaces per task (the task is PID 1: nothing of it outlives it), " +
		"parent-death signal, fds above 2 closed; not enforced: cgroups, mount and network namespaces, credentials (next milestone)"
	describeGroup = "sandbox: process group per task, parent-death signal; " +
		"not enforced: pid namespace (%s) so processes that call setsid can outlive a kill, " +
		"cgroups, mount and network namespaces, credentials"
)

// probe caches whether this process can create isolated tasks: creating
// namespaces does not become possible or impossible while we run.
var probe = sync.OnceValue(probeIsolation)

func (r *Runner) setup(opts Options) error {
	if !opts.Isolate {
		r.describe = fmt.Sprintf(describeGroup, "isolation off")
		return nil
	}
	if unavailable := probe(); unavailable != "" {
		r.describe = fmt.Sprintf(describeGroup, "unavailable: "+unavailable)
		r.log.Warn("pid namespaces unavailable; tasks run in a process group only", "reason", unavailable)
		return nil
	}
	r.isolated = true
	r.describe = describeIsolated
	return nil
}

// probeIsolation starts one trivial process in fresh namespaces and returns
// why that is refused, or "" when it works.
func probeIsolation() (unavailable string) {
	prog := "/bin/true"
	if _, err := os.Stat(prog); err != nil {
		prog = "/usr/bin/true"
	}
	proc, err := os.StartProcess(prog, []string{prog}, &os.ProcAttr{Sys: isolatedAttr()})
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && os.Geteuid() != 0 {
			return fmt.Sprintf("creating a pid namespace was refused (%v); run task-job as root", errno)
		}
		return fmt.Sprintf("creating a pid namespace failed: %v", err)
	}
	_, _ = proc.Wait()
	return ""
}

// groupAttr makes the task lead its own process group, and makes the kernel
// SIGKILL it if the executor thread that started it dies.
func groupAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// isolatedAttr is groupAttr in new namespaces. The parent-death signal of a
// namespace's PID 1 takes the whole namespace with it, so no process of a
// task survives an executor killed with SIGKILL.
func isolatedAttr() *syscall.SysProcAttr {
	a := groupAttr()
	a.Cloneflags = isolationFlags
	return a
}

// waitNoReap blocks until pid has exited but leaves it a zombie, so that its
// pid and process group id stay reserved until it is reaped.
func waitNoReap(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// closeOnExec marks every fd above 2 of this process close-on-exec, so a task
// inherits only its stdio. Go opens its own files close-on-exec, but an fd
// inherited from whoever started the executor, or made by a library with
// dup(2), would otherwise leak into every task. One close_range call
// (Linux 5.11+); older kernels get the same by walking /proc/self/fd.
func closeOnExec() {
	if unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
}
