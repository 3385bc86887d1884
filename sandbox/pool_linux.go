package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/taskjob/task-job/sandbox/cgroup"
	"github.com/taskjob/task-job/sandbox/nsinit"
)

// The pool of pre-started helpers takes the helper's start off the task's
// path: its clone into fresh pid, mount, ipc and uts namespaces, its Go
// runtime start, and on cgroup v1 the move into a cgroup of its own (on v2
// it is born there), all done in the background before any task asks. A
// task takes one helper, sends it its Config and stdio over the helper's
// socket, and the helper builds the task's root and execs it, as a freshly
// started one would. Every helper serves one task only: its namespaces and
// its group are new and nobody else's, so no task sees another's state.
// A helper that is not taken dies with the executor (parent-death signal)
// or at Close (its socket closes).

// poolName names the groups of waiting helpers; a task renames its group
// after itself (cgroup v1; v2 cannot rename, the name stays). It carries
// the executor's pid, so a restarted executor never makes a group of the
// same name as one its previous run left: what the previous run left is
// told apart from what this run made, by people and by tests.
var poolName = "pool" + strconv.Itoa(os.Getpid())

// ready is one pre-started helper.
type ready struct {
	proc  *os.Process
	sock  *os.File // our end of the helper's socket
	group *cgroup.Group
	lim   cgroup.Limits // the group's limits
	mntns *os.File
}

// discard ends a helper that will not be used.
func (h *ready) discard() {
	h.sock.Close() // the helper exits at EOF; the kill makes sure
	_ = h.proc.Kill()
	_, _ = h.proc.Wait()
	if h.mntns != nil {
		h.mntns.Close()
	}
	if h.group != nil {
		_ = h.group.Close()
	}
}

// pool keeps up to size helpers ready, refilled by one goroutine.
type pool struct {
	j     *jailer
	ready chan *ready
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func newPool(j *jailer, size int) *pool {
	p := &pool{j: j, ready: make(chan *ready, size), stop: make(chan struct{}), done: make(chan struct{})}
	go p.fill()
	return p
}

func (p *pool) fill() {
	defer close(p.done)
	failures := 0
	for {
		h, err := p.j.prestart()
		if err != nil {
			// A helper that cannot be made now is made at take time,
			// where its error reaches the task; stop trying after a few.
			p.j.log.Warn("could not pre-start a sandbox helper", "error", err)
			if failures++; failures >= 3 {
				p.j.log.Warn("the pool of pre-started sandbox helpers is off; each task starts its own")
				return
			}
			continue
		}
		failures = 0
		select {
		case p.ready <- h:
		case <-p.stop:
			h.discard()
			return
		}
	}
}

// take returns a ready helper, or nil when none is waiting.
func (p *pool) take() *ready {
	if p == nil {
		return nil
	}
	select {
	case h := <-p.ready:
		return h
	default:
		return nil
	}
}

// close stops the refill and ends the waiting helpers.
func (p *pool) close() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		close(p.stop)
		<-p.done
		for {
			select {
			case h := <-p.ready:
				h.discard()
			default:
				return
			}
		}
	})
}

// poolLimits are the limits a waiting helper's group gets: the defaults,
// which most tasks run with.
func (j *jailer) poolLimits() cgroup.Limits {
	return cgroup.Limits{MemoryBytes: j.defaults.MemoryBytes, CPUCores: j.defaults.CPUCores, Pids: j.defaults.Pids}
}

// prestart starts one helper in new namespaces and a group of its own, and
// waits for its Hello.
func (j *jailer) prestart() (h *ready, err error) {
	h = &ready{}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	h.sock = os.NewFile(uintptr(fds[0]), "helper")
	theirs := os.NewFile(uintptr(fds[1]), "helper-end")
	defer theirs.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		h.sock.Close()
		return nil, err
	}
	defer null.Close()
	if j.cgroups() {
		h.lim = j.poolLimits()
		if h.group, err = j.cg.New(poolName, h.lim); err != nil {
			h.sock.Close()
			return nil, fmt.Errorf("create a cgroup: %w", err)
		}
	}
	fail := func(err error) (*ready, error) {
		if h.proc != nil {
			h.discard()
		} else {
			h.sock.Close()
			if h.group != nil {
				_ = h.group.Close()
			}
		}
		return nil, err
	}
	// Born in a network namespace of its own, whatever its task will be:
	// making one is the slow part of a start, and this is off the path.
	attr := &syscall.SysProcAttr{Cloneflags: jailFlags | unix.CLONE_NEWNET, Setsid: true, Pdeathsig: syscall.SIGKILL}
	if h.group != nil {
		if fd, ok := h.group.CgroupFD(); ok {
			attr.UseCgroupFD, attr.CgroupFD = true, fd
		}
	}
	closeOnExec()
	h.proc, err = os.StartProcess(j.initPath, []string{j.initArgv0}, &os.ProcAttr{
		Dir:   "/",
		Env:   append([]string{nsinit.EnvPooled + "=1"}, helperEnv...),
		Files: []*os.File{null, null, null, theirs, nil, j.hostNetns},
		Sys:   attr,
	})
	if err != nil {
		h.proc = nil
		return fail(fmt.Errorf("start %s: %w", j.initPath, err))
	}
	theirs.Close()
	h.mntns, _ = os.Open("/proc/" + strconv.Itoa(h.proc.Pid) + "/ns/mnt")
	if h.group != nil && !attr.UseCgroupFD {
		if err := h.group.AddProc(h.proc.Pid); err != nil {
			return fail(err)
		}
	}
	var hello [1]byte
	if _, err := io.ReadFull(h.sock, hello[:]); err != nil || hello[0] != nsinit.Hello {
		return fail(fmt.Errorf("%s did not run the sandbox setup (a task-job binary re-executed as %s must call nsinit.Main first thing in main)", j.initPath, InitName))
	}
	return h, nil
}

// afterSpecSent, when set by a test, runs between the send of the task's
// setup and the read of the helper's status.
var afterSpecSent func(sock *os.File)

// errPoolHelper marks a failure of the taken helper itself, before the
// task's setup began: the task starts with a fresh helper instead.
var errPoolHelper = errors.New("pre-started helper unusable")

// startPooled hands the task to a pre-started helper.
func (j *jailer) startPooled(h *ready, p *Process, spec Spec, cfg nsinit.Config, lim Limits, stdio [3]*os.File) error {
	unusable := func(err error) error {
		h.discard()
		j.log.Debug("a pre-started helper could not be used; starting a fresh one", "error", err)
		return errPoolHelper
	}
	if h.group != nil {
		want := cgroup.Limits{MemoryBytes: lim.MemoryBytes, CPUCores: lim.CPUCores, Pids: lim.Pids}
		if want != h.lim {
			if err := h.group.SetLimits(want); err != nil {
				return unusable(err)
			}
		}
		// On v1 the group takes the task's name; v2 cannot rename, and the
		// group keeps its pool name.
		_ = h.group.Rename(spec.Name)
	} else {
		lim.MemoryBytes, lim.CPUCores, lim.Pids = 0, 0, 0
	}
	if cfg.Netns == nsinit.NetnsHost {
		cfg.Netns = nsinit.NetnsJoin // back to the host's, through fd NetnsFd
	}
	raw := cfg.Encode()
	msg := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(raw)), uint32(len(raw)))
	msg = append(msg, raw...)
	rights := unix.UnixRights(int(stdio[0].Fd()), int(stdio[1].Fd()), int(stdio[2].Fd()))
	sc, err := h.sock.SyscallConn()
	if err != nil {
		return unusable(err)
	}
	var n int
	var serr error
	if err := sc.Write(func(fd uintptr) bool {
		n, serr = unix.SendmsgN(int(fd), msg, rights, nil, 0)
		return serr != unix.EAGAIN
	}); err != nil {
		return unusable(err)
	}
	if serr != nil {
		return unusable(serr)
	}
	if afterSpecSent != nil {
		afterSpecSent(h.sock)
	}
	// Once the whole message is out, the helper may already have exec'd the
	// task and closed its end: nothing more may be written (even an empty
	// write then fails with EPIPE), and no failure from here on may start
	// the task again with a fresh helper. A message cut short leaves the
	// helper waiting for the rest, never running anything: discarding it
	// (kill and wait) before a fresh start is safe.
	if n < len(msg) {
		if _, err := h.sock.Write(msg[n:]); err != nil {
			return unusable(err)
		}
	}
	status, _ := io.ReadAll(h.sock)
	h.sock.Close()
	if len(status) > 0 {
		_ = h.proc.Kill()
		_, _ = h.proc.Wait()
		if h.mntns != nil {
			h.mntns.Close()
		}
		if h.group != nil {
			_ = h.group.Close()
		}
		st, derr := nsinit.DecodeStatus(status)
		switch {
		case derr != nil:
			return fmt.Errorf("sandbox: the helper failed with an unreadable status: %w", derr)
		case st.Step == "exec" && st.Errno != 0:
			return startError(spec.Path, syscall.Errno(st.Errno))
		}
		return fmt.Errorf("sandbox: setting up the task failed: %s: %s", st.Step, st.Msg)
	}
	p.pid, p.sys.proc = h.proc.Pid, h.proc
	p.sys.jail = &jailSys{group: h.group, mntns: h.mntns}
	p.limits = lim
	if h.group != nil {
		p.cgroup = h.group.Path()
	}
	return nil
}
