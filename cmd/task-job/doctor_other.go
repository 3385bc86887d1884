//go:build !linux

package main

import (
	"runtime"

	"github.com/taskjob/task-job/config"
)

// checkHost: the sandbox exists on Linux only. Elsewhere a task runs in a
// process group, which "isolation": "on" refuses.
func (d *doctor) checkHost() {
	switch d.cfg.Isolation {
	case config.IsolationOn:
		d.fail("isolation", "run the executor on Linux as root for the sandbox, or set \"isolation\": \"auto\"",
			"isolation is \"on\" but the sandbox exists on Linux only, not on %s: the executor would refuse to start", runtime.GOOS)
	case config.IsolationOff:
		d.warn("isolation", "set \"isolation\": \"auto\" or \"on\"",
			"UNSAFE: isolation is off: tasks run as the executor's user and can outlive a kill")
	default:
		d.warn("isolation", "run the executor on Linux as root for the sandbox",
			"no sandbox on %s: each task runs in a process group, as the executor's user, without limits", runtime.GOOS)
	}
}

// auditWriter: the one-writer lock is checked on Linux only.
func auditWriter(string) string { return "" }
