//go:build !unix && !windows

package sandbox

import (
	"errors"
	"os"
	"runtime"
)

// errUnsupported is returned where this OS cannot start processes the way
// the sandbox needs.
var errUnsupported = errors.New("sandbox: starting tasks is not supported on " + runtime.GOOS)

type procSys struct{}

func (r *Runner) setup(opts Options) error { return errUnsupported }

func (r *Runner) start(p *Process, spec Spec, stdio [3]*os.File) error { return errUnsupported }

func (p *Process) waitExit() (Result, error) { return Result{ExitCode: -1}, errUnsupported }
func (p *Process) terminate()                {}
func (p *Process) kill()                     {}
func (p *Process) release()                  {}
func (p *Process) signal(os.Signal) error    { return errUnsupported }

// jailer is the Linux sandbox; it does not exist here.
type jailer struct{}

func (j *jailer) close() error  { return nil }
func (j *jailer) cgroups() bool { return false }

// taskDirAt: outside the Linux sandbox a task sees host paths.
func (j *jailer) taskDirAt(dir string) string { return dir }
