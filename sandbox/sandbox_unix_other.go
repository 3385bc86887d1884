//go:build unix && !linux

package sandbox

import (
	"errors"
	"os"
	"runtime"
	"syscall"

	"github.com/hashicorp/go-hclog"
)

// maxRSSUnit converts rusage ru_maxrss to bytes: Darwin reports bytes, the
// BSDs kilobytes.
var maxRSSUnit int64 = 1024

func init() {
	if runtime.GOOS == "darwin" || runtime.GOOS == "ios" {
		maxRSSUnit = 1
	}
}

const describeGroup = "sandbox: process group per task; not enforced: pid namespace (none on " + runtime.GOOS +
	") so processes that call setsid can outlive a kill, parent-death signal, fds above 2 closed, resource limits, credentials"

func (r *Runner) setup(opts Options) error {
	r.describe = describeGroup
	return nil
}

// groupAttr makes the task lead its own session, and so its own process
// group, with no controlling terminal. There is no parent-death signal
// outside Linux.
func groupAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }

var errNoWaitNoReap = errors.New("sandbox: waiting without reaping is not implemented on " + runtime.GOOS)

// waitNoReap is not available here: the group is killed right after the top
// process is reaped instead, a window in which its process group id could in
// theory be reused.
func waitNoReap(pid int) error { return errNoWaitNoReap }

// closeOnExec is a no-op here: fds above 2 are not swept (Describe says so).
func closeOnExec() {}

// isolatedAttr is never used here (New never isolates on this OS).
func isolatedAttr() *syscall.SysProcAttr { return groupAttr() }

// jailer is the Linux sandbox; it does not exist here.
type jailer struct{}

func (j *jailer) close() error  { return nil }
func (j *jailer) cgroups() bool { return false }

// taskDirAt: outside the Linux sandbox a task sees host paths.
func (j *jailer) taskDirAt(dir string) string { return dir }
func (j *jailer) start(p *Process, spec Spec, stdio [3]*os.File) error {
	return errors.New("sandbox: the Linux sandbox does not exist on " + runtime.GOOS)
}

type jailSys struct{}

func (s *jailSys) settle(*Result, hclog.Logger) {}
func (s *jailSys) release(hclog.Logger)         {}
func (s *jailSys) kill()                        {}
