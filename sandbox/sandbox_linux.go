package sandbox

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxRSSUnit converts rusage ru_maxrss, in kilobytes on Linux, to bytes.
const maxRSSUnit = 1024

// initAnswerTimeout bounds how long Start waits for the init to say the task
// runs. A healthy init answers in milliseconds; silence means the binary does
// not call MaybeRunInit, or the host is badly overloaded.
const initAnswerTimeout = 10 * time.Second

// isolationFlags are the namespaces every isolated task gets.
const isolationFlags = unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS

const (
	describeIsolated = "sandbox: pid+ipc+uts namespaces per task with an init as PID 1, parent-death signal, fds above 2 closed; " +
		"not enforced: cgroups, mount and network namespaces, credentials (next milestone)"
	describeGroup = "sandbox: process group per task, parent-death signal; " +
		"not enforced: pid namespace (%s) so processes that call setsid can outlive a kill, fds above 2 closed, " +
		"cgroups, mount and network namespaces, credentials"
)

// probe caches whether this process can create isolated tasks: creating
// namespaces does not become possible or impossible while we run.
var probe = sync.OnceValues(probeIsolation)

func (r *Runner) setup(opts Options) error {
	if !opts.Isolate {
		r.describe = fmt.Sprintf(describeGroup, "isolation off")
		return nil
	}
	unavailable, err := probe()
	if err != nil {
		return err
	}
	if unavailable != "" {
		r.describe = fmt.Sprintf(describeGroup, "unavailable: "+unavailable)
		r.log.Warn("pid namespaces unavailable; tasks run in a process group only", "reason", unavailable)
		return nil
	}
	r.isolated = true
	r.describe = describeIsolated
	return nil
}

// probeIsolation starts one init in probe mode. It returns why isolation is
// unavailable (empty when it works), or an error when the init was started
// but did not behave, which is a bug in how the program is put together.
func probeIsolation() (unavailable string, err error) {
	out, err := newStdio(nil, nil, nil)
	if err != nil {
		return "", err
	}
	defer out.drain(0)
	defer out.closeChild()
	conn, proc, err := launchInit(initSpec{Probe: true}, out.child)
	if err != nil {
		// The kernel refuses the namespaces: no privilege, a seccomp
		// filter, or a namespace limit reached.
		var errno syscall.Errno
		if errors.As(err, &errno) && (errno == unix.EPERM || errno == unix.EINVAL || errno == unix.ENOSPC || errno == unix.EUSERS) {
			hint := ""
			if os.Geteuid() != 0 {
				hint = "; run task-job as root"
			}
			return fmt.Sprintf("creating a pid namespace was refused: %v%s", errno, hint), nil
		}
		return "", err
	}
	defer conn.close()
	_, err = conn.started()
	if err != nil {
		_ = proc.Kill()
	}
	_, _ = proc.Wait()
	return "", err
}

// groupAttr makes the task lead its own process group, and makes the kernel
// SIGKILL it if the executor thread that started it dies.
func groupAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
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

// startIsolated starts the init in fresh namespaces, hands it spec and waits
// until it says the task runs (or why it could not start it).
func (r *Runner) startIsolated(p *Process, spec Spec, stdio [3]*os.File) error {
	if spec.Dir == "" { // the init runs in /; keep the plain meaning of ""
		wd, err := os.Getwd()
		if err != nil {
			return fmt.Errorf("sandbox: no working directory given and ours is unknown: %w", err)
		}
		spec.Dir = wd
	}
	conn, proc, err := launchInit(initSpec{Path: spec.Path, Args: spec.Args, Dir: spec.Dir, Env: spec.Env}, stdio)
	if err != nil {
		return err
	}
	if _, err := conn.started(); err != nil {
		_ = proc.Kill()
		_, _ = proc.Wait()
		conn.close()
		return err
	}
	p.pid, p.sys.proc, p.sys.init = proc.Pid, proc, conn
	return nil
}

// launchInit re-executes this binary as a sandbox init in new namespaces,
// with stdio as its fds 0-2, the spec pipe as fd 3 and the report pipe as
// fd 4, and writes spec to it.
func launchInit(spec initSpec, stdio [3]*os.File) (*initConn, *os.Process, error) {
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox: pipe for the init: %w", err)
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		specR.Close()
		specW.Close()
		return nil, nil, fmt.Errorf("sandbox: pipe for the init: %w", err)
	}
	// The init's Pdeathsig safety check ("is my parent already gone?")
	// cannot work inside a new pid namespace, where getppid is 0. It is not
	// needed: the parent cannot have died before it writes the spec, and
	// an init that reads no spec exits.
	proc, err := os.StartProcess("/proc/self/exe", []string{initArgv0, initFlag}, &os.ProcAttr{
		Dir:   "/",
		Env:   []string{initEnv + "=1"},
		Files: []*os.File{stdio[0], stdio[1], stdio[2], specR, repW},
		Sys: &syscall.SysProcAttr{
			Cloneflags: isolationFlags,
			Setpgid:    true,
			Pdeathsig:  syscall.SIGKILL,
		},
	})
	specR.Close()
	repW.Close()
	if err != nil {
		specW.Close()
		repR.Close()
		return nil, nil, fmt.Errorf("sandbox: start the sandbox init in new namespaces: %w", err)
	}
	conn := &initConn{r: repR, dec: json.NewDecoder(bufio.NewReader(repR)), path: spec.Path}
	err = json.NewEncoder(specW).Encode(spec)
	specW.Close()
	if err != nil {
		// The init died before reading its spec; its report says why.
		if _, serr := conn.started(); serr != nil {
			err = serr
		}
		_ = proc.Kill()
		_, _ = proc.Wait()
		conn.close()
		return nil, nil, fmt.Errorf("sandbox: hand the task to the sandbox init: %w", err)
	}
	return conn, proc, nil
}

// initConn is the executor's end of the report pipe of one init.
type initConn struct {
	r    *os.File
	dec  *json.Decoder
	path string
}

// started reads the init's first report: the task's pid in the namespace,
// or why the task could not be started.
func (c *initConn) started() (int, error) {
	_ = c.r.SetReadDeadline(time.Now().Add(initAnswerTimeout))
	var rep startReport
	if err := c.dec.Decode(&rep); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, fmt.Errorf("sandbox: the sandbox init did not answer (%w); "+
				"the program must call sandbox.MaybeRunInit first thing in main (and in TestMain)", err)
		}
		return 0, fmt.Errorf("sandbox: read the sandbox init's answer: %w", err)
	}
	switch {
	case rep.Errno != 0:
		return 0, startError(c.path, syscall.Errno(rep.Errno))
	case rep.Error != "":
		return 0, fmt.Errorf("sandbox: the sandbox init failed: %s", rep.Error)
	}
	return rep.Pid, nil
}

// finish completes res, the init's own wait status, with the task's result
// as the init reported it. Without a report (the init was SIGKILLed, as
// Stop does after the grace period) the init's status is the task's: the
// whole namespace died with it.
func (c *initConn) finish(res Result) (Result, error) {
	defer c.close()
	// The init has exited, so its report is complete; the deadline only
	// guards against a pipe some other process still holds.
	_ = c.r.SetReadDeadline(time.Now().Add(time.Second))
	var rep exitReport
	if err := c.dec.Decode(&rep); err != nil {
		if res.Signal == "" {
			return res, fmt.Errorf("sandbox: the sandbox init exited with status %d without reporting the task's result (%v)", res.ExitCode, err)
		}
		return res, nil
	}
	res.ExitCode, res.Signal = rep.ExitCode, ""
	if rep.Signal != 0 {
		res.ExitCode, res.Signal = -1, unix.SignalName(syscall.Signal(rep.Signal))
	}
	res.CPU = time.Duration(rep.CPUNanos)
	res.MaxRSS = rep.MaxRSSKB * maxRSSUnit
	return res, nil
}

func (c *initConn) close() { c.r.Close() }
