package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// An OOM kill ends the whole task: a task whose process the kernel killed
// for memory is not left running in a state nobody planned for (a script
// that goes on after its `tail` died, and exits 0). On v2 the kernel does
// it: memory.oom.group makes the OOM killer take every process of the group
// together. v1 has no such switch, so the group registers an eventfd for
// its memory.oom_control and kills the whole group when the event fires
// and oom_kill shows a kill. The v1 kill follows the kernel's by the time
// the watcher is scheduled: a main process that exits in that gap keeps
// its exit status (Usage still counts the OOM kill, and the executor says so).

// oomGroup arranges for an OOM kill to end the whole group. It is called
// once the group's limits are set.
func (g *Group) oomGroup() error {
	mem := g.dir(g.m.memIdx)
	if mem == "" {
		return nil // no memory controller: no OOM kills of ours to handle
	}
	if g.m.mode == V2 {
		err := writeFile(filepath.Join(mem, "memory.oom.group"), "1")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cgroup: make an OOM kill end all of %s: %w", g.Path(), err)
		}
		return nil
	}
	return g.watchOOM(mem)
}

// watchOOM (v1) starts the goroutine that kills the group on its first OOM
// kill. The eventfd is non-blocking, so the runtime's poller waits on it
// and no thread is held; Close ends the watch by closing it.
func (g *Group) watchOOM(mem string) error {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("cgroup: eventfd for the OOM events of %s: %w", g.Path(), err)
	}
	ctl, err := unix.Open(filepath.Join(mem, "memory.oom_control"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(efd)
		return fmt.Errorf("cgroup: open memory.oom_control of %s: %w", g.Path(), err)
	}
	err = writeFile(filepath.Join(mem, "cgroup.event_control"), strconv.Itoa(efd)+" "+strconv.Itoa(ctl))
	unix.Close(ctl) // the kernel holds its own reference once registered
	if err != nil {
		unix.Close(efd)
		return fmt.Errorf("cgroup: watch the OOM events of %s: %w", g.Path(), err)
	}
	f := os.NewFile(uintptr(efd), "oom-events")
	g.oomEvents = f
	go func() {
		var buf [8]byte
		for {
			if _, err := f.Read(buf[:]); err != nil {
				return // closed by Close
			}
			// The event also fires when the group is removed: kill only for
			// a kill the kernel counted.
			// The kernel signals when the group goes under OOM, which can be
			// a moment before it counts the kill: look again briefly.
			g.mu.Lock()
			mem := g.dir(g.m.memIdx) // Rename may have moved it
			g.mu.Unlock()
			if !oomKilled(mem) {
				continue
			}
			g.mu.Lock()
			if !g.closed {
				_ = g.kill()
			}
			g.mu.Unlock()
			return
		}
	}()
	return nil
}

// stopOOMWatch ends the v1 watch; g.mu is held.
func (g *Group) stopOOMWatch() {
	if g.oomEvents != nil {
		g.oomEvents.Close()
		g.oomEvents = nil
	}
}

// oomKilled reports whether the group's oom_kill counter is non-zero,
// looking for up to 200 ms.
func oomKilled(mem string) bool {
	for i := 0; i < 20; i++ {
		n, _, err := readKey(filepath.Join(mem, "memory.oom_control"), "oom_kill")
		if err != nil {
			return false
		}
		if n > 0 {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}
