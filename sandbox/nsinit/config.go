// Package nsinit is the per-task setup step of the Linux sandbox: the few
// things that must happen inside a task's new namespaces, after the clone
// and before its first instruction, and that Go's SysProcAttr cannot do —
// building the task's filesystem view (bind mounts, its own /proc, a private
// /tmp, a minimal /dev, pivot_root), rlimits, the capability bounding set,
// no_new_privs, joining the shared empty network namespace, and dropping to
// the task's user. Then it execs the task, so the task itself is PID 1 of
// its pid namespace and nothing of ours stays in between.
//
// It runs as its own small binary, task-job-init, because a Go program's
// start-up cost grows with what it links: the full task-job binary takes
// about 3 ms to start, this one about 1 ms (see the README's benchmarks).
// The executor passes a Config on fd 3 and reads the outcome on fd 4: EOF
// means the task was exec'd (fd 4 is close-on-exec), anything else is an
// encoded error.
//
// Before anything else the helper writes Hello on fd 4. A program started
// by mistake in its place (a task-job re-executed without dispatching to
// Main would run as the executor again) never says it, so the executor
// cannot mistake it for a successful setup.
//
// This package must stay small in what it imports: every package it pulls
// in is paid for at every task start.
package nsinit

import (
	"encoding/binary"
	"errors"
	"math"
)

// Fds of the helper process, as the executor arranges them.
const (
	ConfigFd = 3 // read end of the pipe carrying the encoded Config
	StatusFd = 4 // write end of the pipe for a setup or exec error
	NetnsFd  = 5 // the host's network namespace, for Config.Netns NetnsJoin
)

// Config.Netns values.
const (
	// NetnsHost: the helper was started in the host's network namespace
	// (a task with the network): nothing to do.
	NetnsHost = iota
	// NetnsOwn: the helper was born in a new network namespace (a task
	// without network): it brings that namespace's loopback up.
	NetnsOwn
	// NetnsJoin: a pre-started helper, born in a namespace of its own, for
	// a task with the network: it joins the host's, open on fd NetnsFd.
	NetnsJoin
)

// EnvPooled, set to "1" in the helper's environment, makes it a
// pre-started helper that receives its task on ConfigFd (see Main).
const EnvPooled = "TASK_JOB_INIT_POOLED"

// Hello is the helper's first byte on StatusFd.
const Hello = 0x7e

// Root modes.
const (
	// RootSystem shows the task read-only system directories, CmdDir, its
	// TaskDir, a private /tmp, a minimal /dev and its own /proc.
	RootSystem = 0
	// RootChroot shows the task CmdDir as / and its TaskDir, nothing else.
	RootChroot = 1
)

// Config is what one task needs set up. Paths are host paths.
type Config struct {
	Path string   // the program, as the task will see it
	Args []string // argv
	Env  []string
	Dir  string // working directory, as the task will see it

	RootMode int
	// RootDir is an empty directory on the host where the task's root is
	// built; it is only mounted over inside the task's mount namespace.
	RootDir string
	// CmdDir (cmd_dir) is bound at the same path (as / in chroot mode),
	// read-only unless CmdDirWritable, and nosuid,nodev either way.
	CmdDir         string
	CmdDirWritable bool
	// TaskDir is the task's own writable directory on the host (its HOME,
	// TMPDIR and TASK_WORKDIR), bound nosuid,nodev at TaskDirAt, a path as
	// the task sees it (TaskDir itself, or under / in chroot mode, where
	// the mount point must already exist in CmdDir). Empty: none.
	TaskDir, TaskDirAt string
	// ReadOnly are host paths bound read-only at the same path; a symlink
	// (such as /bin -> usr/bin on merged-/usr systems) is recreated as the
	// same symlink. Missing paths are skipped.
	ReadOnly []string
	// Etc, when set, is a host directory bound read-only as /etc: the
	// executor's copy of the few /etc files tasks may see, made once
	// rather than bound file by file for every task.
	Etc string
	// TmpBytes is the size of the private /tmp (and /dev/shm).
	TmpBytes int64
	// WorkBytes, when positive, makes the task's own directory a tmpfs of
	// that size at TaskDirAt instead of a bind of TaskDir: a cap on what a
	// task can write there (its pages count against the memory limit).
	WorkBytes int64
	Hostname  string

	// Netns says what the helper does about its network namespace:
	// NetnsHost, NetnsOwn or NetnsJoin.
	Netns int

	UID, GID uint32
	// KeepCaps is the capability bounding set kept for a task running as
	// root (bit n = capability n); everything else is dropped. Ignored for
	// other users, who get no capabilities at all.
	KeepCaps uint64

	// Rlimits, each applied as both soft and hard limit; negative = leave.
	FileBytes int64 // RLIMIT_FSIZE
	OpenFiles int64 // RLIMIT_NOFILE
	CoreBytes int64 // RLIMIT_CORE
}

// Encode serialises c for the config pipe: a hand-rolled length-prefixed
// form, because encoding/json would cost every task start its init time.
func (c *Config) Encode() []byte {
	var e encoder
	e.str(c.Path)
	e.strs(c.Args)
	e.strs(c.Env)
	e.str(c.Dir)
	e.int(int64(c.RootMode))
	e.str(c.RootDir)
	e.str(c.CmdDir)
	e.bool(c.CmdDirWritable)
	e.str(c.TaskDir)
	e.str(c.TaskDirAt)
	e.strs(c.ReadOnly)
	e.str(c.Etc)
	e.int(c.TmpBytes)
	e.int(c.WorkBytes)
	e.str(c.Hostname)
	e.int(int64(c.Netns))
	e.int(int64(c.UID))
	e.int(int64(c.GID))
	e.int(int64(c.KeepCaps))
	e.int(c.FileBytes)
	e.int(c.OpenFiles)
	e.int(c.CoreBytes)
	return e.b
}

// Decode is the inverse of Encode.
func Decode(b []byte) (*Config, error) {
	d := decoder{b: b}
	c := &Config{}
	c.Path = d.str()
	c.Args = d.strs()
	c.Env = d.strs()
	c.Dir = d.str()
	c.RootMode = int(d.int())
	c.RootDir = d.str()
	c.CmdDir = d.str()
	c.CmdDirWritable = d.bool()
	c.TaskDir = d.str()
	c.TaskDirAt = d.str()
	c.ReadOnly = d.strs()
	c.Etc = d.str()
	c.TmpBytes = d.int()
	c.WorkBytes = d.int()
	c.Hostname = d.str()
	c.Netns = int(d.int())
	c.UID = uint32(d.int())
	c.GID = uint32(d.int())
	c.KeepCaps = uint64(d.int())
	c.FileBytes = d.int()
	c.OpenFiles = d.int()
	c.CoreBytes = d.int()
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, errors.New("nsinit: trailing bytes after the config")
	}
	return c, nil
}

type encoder struct{ b []byte }

func (e *encoder) int(v int64) { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) bool(v bool) {
	if v {
		e.int(1)
	} else {
		e.int(0)
	}
}
func (e *encoder) str(s string) { e.int(int64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) strs(ss []string) {
	e.int(int64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}

var errShort = errors.New("nsinit: config cut short or malformed")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) int() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bool() bool { return d.int() != 0 }

func (d *decoder) str() string {
	n := d.int()
	if d.err != nil || n < 0 || n > int64(len(d.b)) {
		d.err = errShort
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) strs() []string {
	n := d.int()
	if d.err != nil || n < 0 || n > int64(len(d.b)) || n > math.MaxInt32 {
		d.err = errShort
		return nil
	}
	ss := make([]string, 0, n)
	for i := int64(0); i < n && d.err == nil; i++ {
		ss = append(ss, d.str())
	}
	return ss
}

// Status is how the helper reports a failure on StatusFd: the step that
// failed, the errno when there is one, and a message.
type Status struct {
	Step  string
	Errno uintptr
	Msg   string
}

// Encode serialises s.
func (s Status) Encode() []byte {
	var e encoder
	e.str(s.Step)
	e.int(int64(s.Errno))
	e.str(s.Msg)
	return e.b
}

// DecodeStatus is the inverse of Status.Encode.
func DecodeStatus(b []byte) (Status, error) {
	d := decoder{b: b}
	s := Status{Step: d.str(), Errno: uintptr(d.int()), Msg: d.str()}
	return s, d.err
}
