package cgroup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Group is one task's cgroup: a directory in each hierarchy the Manager
// uses. Its methods are safe for concurrent use.
type Group struct {
	m    *Manager
	name string
	dirs []string // one per Manager hierarchy
	fd   int      // v2: O_PATH fd of the group's directory; -1 otherwise

	oomEvents *os.File // v1: the eventfd of the OOM watch (oom_linux.go)

	// mu serializes Kill and Close, and guards fd and closed.
	mu       sync.Mutex
	closed   bool
	closeErr error
}

// Path is the group as /proc/<pid>/cgroup shows it, e.g.
// "/task-job/build-42-7", for the start-up log and the audit trail.
func (g *Group) Path() string { return g.m.relParent + "/" + g.name }

func (g *Group) dir(idx int) string {
	if idx < 0 {
		return ""
	}
	return g.dirs[idx]
}

func (g *Group) setLimits(l Limits) error {
	type write struct{ dir, file, value, what string }
	var ws []write
	mem, cpu, pids := g.dir(g.m.memIdx), g.dir(g.m.cpuIdx), g.dir(g.m.pidsIdx)
	if g.m.mode == V1 {
		if l.MemoryBytes > 0 {
			v := strconv.FormatInt(l.MemoryBytes, 10)
			// memsw after the memory limit: the kernel keeps memsw >= memory.
			ws = append(ws, write{mem, "memory.limit_in_bytes", v, "memory limit"})
			if g.m.memsw {
				ws = append(ws, write{mem, "memory.memsw.limit_in_bytes", v, "memory+swap limit"})
			}
		}
		if l.CPUCores > 0 {
			// cpu.cfs_period_us is not written: a new group's period is
			// already the kernel's default, periodUS, and the write would
			// cost another ~12µs.
			ws = append(ws, write{cpu, "cpu.cfs_quota_us", strconv.FormatInt(quotaUS(l.CPUCores), 10), "CPU limit"})
		}
	} else {
		if l.MemoryBytes > 0 {
			ws = append(ws, write{mem, "memory.max", strconv.FormatInt(l.MemoryBytes, 10), "memory limit"})
			if g.m.swapMax {
				ws = append(ws, write{mem, "memory.swap.max", "0", "swap limit"})
			}
		}
		if l.CPUCores > 0 {
			ws = append(ws, write{cpu, "cpu.max", fmt.Sprintf("%d %d", quotaUS(l.CPUCores), periodUS), "CPU limit"})
		}
	}
	if l.Pids > 0 {
		ws = append(ws, write{pids, "pids.max", strconv.FormatInt(l.Pids, 10), "pids limit"})
	}
	for i := 0; i < len(ws); i++ {
		w := ws[i]
		err := writeFile(filepath.Join(w.dir, w.file), w.value)
		if errors.Is(err, unix.EINVAL) && w.file == "memory.limit_in_bytes" && i+1 < len(ws) && ws[i+1].file == "memory.memsw.limit_in_bytes" {
			// Raising the limits of a group that had some: the kernel
			// keeps memsw >= memory, so memsw goes first.
			if err = writeFile(filepath.Join(ws[i+1].dir, ws[i+1].file), ws[i+1].value); err == nil {
				err = writeFile(filepath.Join(w.dir, w.file), w.value)
			}
			i++
		}
		if err != nil {
			return fmt.Errorf("cgroup: set the %s of %s: %w", w.what, g.Path(), err)
		}
	}
	return nil
}

// SetLimits replaces the group's limits (a group made ahead of its task
// with other limits). Zero fields are left as they are.
func (g *Group) SetLimits(l Limits) error {
	if err := checkLimits(l); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.setLimits(l)
}

// Rename gives the group the name New would have given it for id, keeping
// its processes, limits and counters: a group made ahead of its task takes
// the task's name. cgroup v2 refuses to rename groups: the group then keeps
// its name, and Rename says so with an error.
func (g *Group) Rename(id string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return fmt.Errorf("cgroup: rename %s: closed", g.Path())
	}
	if g.m.mode != V1 {
		return fmt.Errorf("cgroup: rename %s: cgroup %s groups cannot be renamed", g.Path(), g.m.mode)
	}
	base := safeName(id)
	var err error
	for range 8 {
		name := base + "-" + strconv.FormatUint(g.m.seq.Add(1), 10)
		if err = g.m.renameAll(g.name, name); err == nil {
			g.name = name
			for i, h := range g.m.hier {
				g.dirs[i] = filepath.Join(h.parent, name)
			}
			return nil
		}
		if !errors.Is(err, unix.EEXIST) {
			break
		}
	}
	return err
}

// CgroupFD returns, on v2, an O_PATH fd of the group's directory for
// syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}: the task is then
// born inside the group. The fd stays open until Close. ok is false on v1.
func (g *Group) CgroupFD() (fd int, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fd < 0 || g.closed {
		return -1, false
	}
	return g.fd, true
}

// AddProc moves a running process (all its threads) into the group in every
// hierarchy. Only what the process does from then on is confined: children
// it forked before stay where they were. So start the task's process
// blocked before its first instruction of the task, call AddProc with its
// pid, and only then let it go on (see "Starting a task inside its group"
// in the package documentation). On v2 prefer CgroupFD, which has the
// process born inside.
//
// The executor's own pid is refused, and so is 0 (which the kernel takes
// as "the writer"): a group holding the executor could not be frozen
// without freezing the executor.
func (g *Group) AddProc(pid int) error {
	if pid <= 0 || pid == os.Getpid() {
		return fmt.Errorf("cgroup: add pid %d to %s: refused, not a task's process", pid, g.Path())
	}
	for _, d := range g.dirs {
		if err := writeFile(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("cgroup: add pid %d to %s: %w", pid, g.Path(), err)
		}
	}
	return nil
}

// Kill SIGKILLs every process in the group, and only those. v2 writes
// cgroup.kill; elsewhere the group is frozen, every pid it lists is
// signalled while none of them can exit (so no pid can have been reused by
// then) or fork, and it is thawed so the signals are delivered. The group
// is then listed again: a pid not signalled yet (a fork the freeze did not
// stop, a process added meanwhile) starts another round. Kill does not
// wait for the signalled processes to go: use WaitEmpty.
func (g *Group) Kill() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.kill()
}

func (g *Group) kill() error {
	if g.m.mode == V2 && g.m.cgKill {
		if err := writeFile(filepath.Join(g.dirs[0], "cgroup.kill"), "1"); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("cgroup: kill %s: %w", g.Path(), err)
		}
		return nil
	}
	self := os.Getpid()
	signalled := map[int]bool{}
	for round := 0; round < 100; round++ {
		if round > 0 {
			time.Sleep(time.Millisecond)
		}
		_ = g.freeze()
		pids, err := g.pids()
		if err != nil {
			g.thaw()
			return fmt.Errorf("cgroup: kill %s: %w", g.Path(), err)
		}
		for _, pid := range pids {
			if pid == self {
				// AddProc refuses the executor, so something else moved it
				// here; never SIGKILL ourselves.
				g.thaw()
				return fmt.Errorf("cgroup: kill %s: refused, the executor itself is in the group", g.Path())
			}
			if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
				g.thaw()
				return fmt.Errorf("cgroup: kill pid %d of %s: %w", pid, g.Path(), err)
			}
			signalled[pid] = true
		}
		g.thaw()
		if len(pids) == 0 {
			return nil
		}
		// Signalled processes may still be listed while they exit; only a
		// pid not signalled yet means the listing missed one.
		left, err := g.pids()
		if err != nil {
			return fmt.Errorf("cgroup: kill %s: %w", g.Path(), err)
		}
		if !slices.ContainsFunc(left, func(pid int) bool { return !signalled[pid] }) {
			return nil
		}
	}
	return fmt.Errorf("cgroup: kill %s: processes keep appearing after 100 rounds of SIGKILL", g.Path())
}

// freeze stops every process of the group and reports whether the kernel
// confirmed it within a short bound (a process in uninterruptible sleep can
// keep a group FREEZING). Kill goes on either way: its listing after the
// thaw catches what an unconfirmed freeze let fork.
func (g *Group) freeze() bool {
	var file, value, key string
	switch {
	case g.m.mode == V1 && g.m.frz >= 0:
		file, value = filepath.Join(g.dirs[g.m.frz], "freezer.state"), "FROZEN"
	case g.m.mode == V2:
		file, value, key = filepath.Join(g.dirs[0], "cgroup.freeze"), "1", "frozen"
	default:
		return false
	}
	if writeFile(file, value) != nil {
		return false
	}
	deadline := time.Now().Add(200 * time.Millisecond)
	for delay := 50 * time.Microsecond; ; delay = min(2*delay, 5*time.Millisecond) {
		if key == "" {
			b, err := readFile(file)
			if err == nil && strings.TrimSpace(string(b)) == "FROZEN" {
				return true
			}
		} else if v, ok, err := readKey(filepath.Join(g.dirs[0], "cgroup.events"), key); err == nil && ok && v == 1 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(delay)
	}
}

// thaw thaws the group. On v1 it thaws the groups below it too: a task
// running as root may have made and frozen one, and a v1 process frozen
// there would keep a SIGKILL pending forever (v2 delivers a SIGKILL to a
// frozen process).
func (g *Group) thaw() {
	switch {
	case g.m.mode == V1 && g.m.frz >= 0:
		thawTree(g.dirs[g.m.frz])
	case g.m.mode == V2:
		_ = writeFile(filepath.Join(g.dirs[0], "cgroup.freeze"), "0")
	}
}

func thawTree(dir string) {
	_ = writeFile(filepath.Join(dir, "freezer.state"), "THAWED")
	subs, _ := subdirs(dir)
	for _, s := range subs {
		thawTree(s)
	}
}

// pids lists every process in the group and in groups below it, in every
// hierarchy (a group half made by a crashed run may lack some).
func (g *Group) pids() ([]int, error) {
	var all []int
	for _, d := range g.dirs {
		p, err := treePids(d)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, pid := range p {
			if !slices.Contains(all, pid) {
				all = append(all, pid)
			}
		}
	}
	return all, nil
}

// populated reports whether any process is left in the group. On v1 it
// reads one hierarchy, the freezer's (else pids'): every process we place
// is in all of them, and one cgroup.procs read costs ~15µs.
// destroy, for groups a crashed run may have half made, reads them all.
func (g *Group) populated() (bool, error) {
	if g.m.mode == V2 {
		v, _, err := readKey(filepath.Join(g.dirs[0], "cgroup.events"), "populated")
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return v != 0, err
	}
	track := g.m.frz
	if track < 0 {
		track = g.m.pidsIdx
	}
	p, err := treePids(g.dirs[track])
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return len(p) > 0, err
}

// WaitEmpty returns once no process is left in the group (v2: cgroup.events
// says populated 0; v1: cgroup.procs lists nothing), or with ctx's error.
// It polls, starting at 100µs and backing off to 10ms: v1 has no event
// for it, and a killed group empties within a few milliseconds.
func (g *Group) WaitEmpty(ctx context.Context) error {
	delay := 100 * time.Microsecond
	var timer *time.Timer
	for {
		pop, err := g.populated()
		if err != nil {
			return fmt.Errorf("cgroup: wait for %s to empty: %w", g.Path(), err)
		}
		if !pop {
			return nil
		}
		if timer == nil {
			timer = time.NewTimer(delay)
			defer timer.Stop()
		} else {
			timer.Reset(delay)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cgroup: processes are still in %s: %w", g.Path(), ctx.Err())
		case <-timer.C:
		}
		delay = min(2*delay, 10*time.Millisecond)
	}
}

// Usage reads the group's CPU time, peak memory and OOM kills.
func (g *Group) Usage() (Usage, error) {
	var u Usage
	mem := g.dir(g.m.memIdx)
	if g.m.mode == V1 {
		ns, err := readInt(filepath.Join(g.dir(g.m.acctIdx), "cpuacct.usage"))
		if err != nil {
			return u, fmt.Errorf("cgroup: CPU time of %s: %w", g.Path(), err)
		}
		u.CPU = time.Duration(ns)
		if u.MemoryPeak, err = readInt(filepath.Join(mem, "memory.max_usage_in_bytes")); err != nil {
			return u, fmt.Errorf("cgroup: peak memory of %s: %w", g.Path(), err)
		}
		if u.OOMKills, _, err = readKey(filepath.Join(mem, "memory.oom_control"), "oom_kill"); err != nil {
			return u, fmt.Errorf("cgroup: OOM kills of %s: %w", g.Path(), err)
		}
		return u, nil
	}
	usec, _, err := readKey(filepath.Join(g.dirs[0], "cpu.stat"), "usage_usec")
	if err != nil {
		return u, fmt.Errorf("cgroup: CPU time of %s: %w", g.Path(), err)
	}
	u.CPU = time.Duration(usec) * time.Microsecond
	// memory.peak is Linux 5.19+; the memory files are absent without the
	// memory controller. Either way report 0 and let the caller use rusage.
	if peak, err := readInt(filepath.Join(mem, "memory.peak")); err == nil {
		u.MemoryPeak = peak
	} else if !errors.Is(err, os.ErrNotExist) {
		return u, fmt.Errorf("cgroup: peak memory of %s: %w", g.Path(), err)
	}
	// "oom_kill" counts processes killed; "oom" counts times the limit was
	// hit, killed or not.
	if u.OOMKills, _, err = readKey(filepath.Join(mem, "memory.events"), "oom_kill"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return u, fmt.Errorf("cgroup: OOM kills of %s: %w", g.Path(), err)
	}
	return u, nil
}

// Close kills what is left in the group, waits (up to 5 s) until it is
// empty and removes its directories in the background (Manager.Close waits
// for that). Calling it again returns the first call's result.
func (g *Group) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return g.closeErr
	}
	g.closed = true
	g.closeErr = g.close()
	return g.closeErr
}

func (g *Group) close() error {
	g.stopOOMWatch()
	if g.fd >= 0 {
		_ = unix.Close(g.fd)
		g.fd = -1
	}
	if err := g.empty(false); err != nil {
		g.m.disown(g.name)
		return err
	}
	g.m.removeLater(g.name)
	return nil
}

// empty kills whatever is in the group and waits until it is gone. all
// checks every hierarchy, for a group a crashed run may have half made.
func (g *Group) empty(all bool) error {
	pop, err := g.populated()
	if all && err == nil && !pop && g.m.mode == V1 {
		var p []int
		p, err = g.pids()
		pop = len(p) > 0
	}
	if err != nil {
		return fmt.Errorf("cgroup: close %s: %w", g.Path(), err)
	}
	if !pop {
		return nil
	}
	if err := g.kill(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeWait)
	defer cancel()
	if err := g.WaitEmpty(ctx); err != nil {
		return fmt.Errorf("%w; the group is left in place", err)
	}
	return nil
}

// destroy empties and removes a group at once (CleanupStale).
func (g *Group) destroy() error {
	if err := g.empty(true); err != nil {
		return err
	}
	var errs []error
	for _, d := range g.dirs {
		if err := removeTree(d); err != nil {
			errs = append(errs, fmt.Errorf("cgroup: %w", err))
		}
	}
	return errors.Join(errs...)
}
