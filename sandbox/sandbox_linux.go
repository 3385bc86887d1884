package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// maxRSSUnit converts rusage ru_maxrss, in kilobytes on Linux, to bytes.
const maxRSSUnit = 1024

const describeGroup = "sandbox: OFF, process group per task; not enforced: %s. " +
	"Processes that call setsid can outlive a kill; no cgroup limits, no mount or network namespaces, no seccomp filter, " +
	"tasks run as the executor's user and can WRITE cmd_dir and everything that user can"

func (r *Runner) setup(opts Options) error {
	if !opts.Isolate {
		r.describe = fmt.Sprintf(describeGroup, "isolation is off in the config")
		return nil
	}
	j, err := newJailer(opts, r.log)
	if err == nil {
		if err = j.probe(); err != nil {
			j.close()
		}
	}
	if err != nil {
		if opts.Require {
			return fmt.Errorf("sandbox: isolation is required but unavailable: %w", err)
		}
		r.describe = fmt.Sprintf(describeGroup, "the sandbox is unavailable ("+err.Error()+")")
		r.log.Warn("the sandbox is unavailable; tasks run in a process group only", "reason", err)
		return nil
	}
	r.isolated, r.jail = true, j
	if opts.PoolSize >= 0 {
		size := opts.PoolSize
		if size == 0 {
			size = DefaultPoolSize
		}
		j.pool = newPool(j, size)
	}
	r.describe = j.describe()
	return nil
}

// probe runs one trivial task through the whole sandbox, so that a helper
// that cannot run or a mount that the host refuses shows at start-up, not
// at the first task.
func (j *jailer) probe() error {
	prog := "/bin/true"
	if _, err := os.Stat(prog); err != nil {
		prog = "/usr/bin/true"
	}
	dir, err := os.MkdirTemp("", "task-job-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o711); err != nil { // the task's user must enter it
		return err
	}
	chroot := j.chroot
	j.chroot = false // the probe needs /usr; chroot mode is the same steps minus mounts
	defer func() { j.chroot = chroot }()
	r := &Runner{log: hclog.NewNullLogger(), isolated: true, jail: j, releaseSlots: make(chan struct{}, 1)}
	p, err := r.Start(Spec{Path: prog, Args: []string{prog}, Dir: dir, Name: "probe"})
	if err != nil {
		return err
	}
	res, err := p.Wait()
	<-p.Released()
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("a trial run of %s in the sandbox exited %d (signal %q)", prog, res.ExitCode, res.Signal)
	}
	return nil
}

// groupAttr makes the task lead its own session, and so its own process
// group, with no controlling terminal (no /dev/tty, no typing into the
// executor's terminal through it), and makes the kernel SIGKILL it if the
// executor thread that started it dies.
func groupAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
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
