// Package proto is what the vmtest harness and its in-VM init agree on: the
// config the harness puts in the image, the results the init writes back and
// the marker lines it prints on the serial console.
package proto

import "time"

// Paths inside the VM.
const (
	ConfigPath = "/vmtest/config.json"
	OutDir     = "/vmtest/out" // the host's results directory, over 9p
	ResultFile = "results.json"
	MountTag   = "vmtest"
)

// Marker starts every line the init prints for the harness to parse; the
// init always prints it at the start of a line.
const Marker = "@@vmtest "

// Config tells the init what to run.
type Config struct {
	Modules []string // kernel modules to load in this order (paths in the image)
	Env     []string // environment of every test binary
	Args    []string // flags passed to every test binary
	Tests   []Test
	// Delegate runs each test binary in a cgroup of its own below the root,
	// the way systemd starts a service with Delegate=yes, instead of in the
	// root cgroup.
	Delegate bool
}

// Test is one package's test binary.
type Test struct {
	Pkg string // import path, for reports
	Bin string // path of the test binary in the image
	Dir string // working directory (holds a copy of the package's testdata)
	Log string // file name of its output in OutDir
}

// Result is one package's outcome as the init saw it.
type Result struct {
	Pkg      string
	Exit     int // -1: killed by a signal or not started
	Error    string
	Duration time.Duration
}

// Report is the whole run as the init saw it.
type Report struct {
	Env     string // what the environment check printed
	EnvOK   bool
	Results []Result
}
