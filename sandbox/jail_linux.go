package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/taskjob/task-job/bytesize"
	"github.com/taskjob/task-job/sandbox/cgroup"
	"github.com/taskjob/task-job/sandbox/nsinit"
)

// jailFlags are the namespaces every sandboxed task gets. The network one
// is added for every task without network (a namespace of its own, with
// only a loopback): tasks must not reach each other's loopback listeners
// or abstract unix sockets. Creating one costs milliseconds and, at the
// tail, far more, so pre-started helpers are born in one (pool_linux.go)
// and a task that has the network moves its helper back to the host's.
const jailFlags = unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS

// rootCaps is the capability bounding set of a task that runs as root: the
// set container runtimes give by default, without the ones that reach the
// host (raw network, device nodes) and without CAP_SETFCAP: file
// capabilities set on a file the host can see (a writable cmd_dir) would
// give whoever runs it there privileges, as a setuid bit would.
var rootCaps = capSet(unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID,
	unix.CAP_KILL, unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_SETPCAP, unix.CAP_NET_BIND_SERVICE,
	unix.CAP_SYS_CHROOT, unix.CAP_AUDIT_WRITE)

func capSet(caps ...int) uint64 {
	var s uint64
	for _, c := range caps {
		s |= 1 << uint(c)
	}
	return s
}

// Defaults of the Linux sandbox, used where Options leave a field zero.
const (
	DefaultUser        = "nobody"
	DefaultMemoryBytes = 512 << 20
	DefaultCPUCores    = 1.0
	DefaultPids        = 256
	DefaultTmpBytes    = 64 << 20
	DefaultWorkBytes   = 1 << 30
	DefaultRootDir     = "/run/task-job/root"
)

// jailer is the Linux sandbox of a Runner.
type jailer struct {
	log       hclog.Logger
	initPath  string
	initArgv0 string
	cg        *cgroup.Manager // nil: no cgroups on this host (Describe says why)
	hostNetns *os.File        // handed to pre-started helpers of tasks with the network
	rootDir   string
	readOnly  []string
	tmpBytes  int64
	workBytes int64
	defaults  Limits
	chroot    bool
	rlimits   Rlimits

	users sync.Map // user name -> *credential

	closeOnce sync.Once
	closeErr  error

	etcDir  string   // the copy of /etc files tasks see, bound as their /etc
	etcLock *os.File // held while etcDir is in use

	pool *pool // pre-started helpers; nil: each task starts its own
}

type credential struct{ uid, gid uint32 }

// newJailer prepares the sandbox: the helper, the cgroup parent, the empty
// network namespace, the root mount point. It returns why the sandbox is
// unavailable when it is.
func newJailer(opts Options, log hclog.Logger) (*jailer, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the sandbox needs root (namespaces, cgroups, switching users)")
	}
	j := &jailer{
		log:       log,
		rootDir:   opts.RootDir,
		readOnly:  opts.ReadOnly,
		tmpBytes:  opts.TmpBytes,
		workBytes: opts.WorkBytes,
		defaults:  opts.Defaults,
		chroot:    opts.Chroot,
		rlimits:   opts.Rlimits,
	}
	if j.rootDir == "" {
		j.rootDir = DefaultRootDir
	}
	if j.readOnly == nil {
		j.readOnly = DefaultReadOnly
	}
	if j.tmpBytes <= 0 {
		j.tmpBytes = DefaultTmpBytes
	}
	if j.workBytes == 0 {
		j.workBytes = DefaultWorkBytes
	}
	if j.defaults.User == "" {
		j.defaults.User = DefaultUser
	}
	if j.defaults.MemoryBytes == 0 {
		j.defaults.MemoryBytes = DefaultMemoryBytes
	}
	if j.defaults.CPUCores == 0 {
		j.defaults.CPUCores = DefaultCPUCores
	}
	if j.defaults.Pids == 0 {
		j.defaults.Pids = DefaultPids
	}
	if j.rlimits.FileBytes == 0 {
		j.rlimits.FileBytes = DefaultRlimits.FileBytes
	}
	if j.rlimits.OpenFiles == 0 {
		j.rlimits.OpenFiles = DefaultRlimits.OpenFiles
	}
	var err error
	if j.initPath, j.initArgv0, err = findInit(opts.InitPath); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(j.rootDir, 0o700); err != nil {
		return nil, fmt.Errorf("create the sandbox root mount point: %w", err)
	}
	if j.etcDir, j.etcLock, j.readOnly, err = prepareEtc(filepath.Dir(j.rootDir), j.readOnly); err != nil {
		return nil, fmt.Errorf("prepare the tasks' /etc: %w", err)
	}
	if j.hostNetns, err = os.Open("/proc/thread-self/ns/net"); err != nil {
		return nil, fmt.Errorf("open the host's network namespace: %w", err)
	}
	j.cg, err = cgroup.NewManager(cgroup.Options{Name: opts.CgroupName, Logger: opts.Logger})
	if err != nil {
		j.close()
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	if j.cg.Mode() == cgroup.Unavailable {
		log.Warn("tasks get no memory, CPU or pids limits", "reason", j.cg.Describe())
	} else if n, err := j.cg.CleanupStale(); err != nil {
		log.Warn("could not remove the cgroups of a previous run", "error", err)
	} else if n > 0 {
		log.Warn("removed the cgroups left by a previous run, and what ran in them", "groups", n)
	}
	return j, nil
}

// chrootTaskDir is where a task sees its own directory in chroot mode: a
// mount point the sandbox makes in cmd_dir, since cmd_dir is all there is.
const chrootTaskDir = "/.task-work"

// taskDirAt is where a task sees its own directory dir.
func (j *jailer) taskDirAt(dir string) string {
	if j.chroot {
		return chrootTaskDir
	}
	return dir
}

// chrootMountPoint makes sure cmd_dir holds the mount point of the tasks'
// own directories in chroot mode: a real directory of root's, so that no
// one else can turn it into a symlink to somewhere else in cmd_dir.
func chrootMountPoint(cmdDir string) error {
	mp := filepath.Join(cmdDir, chrootTaskDir)
	fi, err := os.Lstat(mp)
	if errors.Is(err, os.ErrNotExist) {
		if err = os.Mkdir(mp, 0o755); err == nil || errors.Is(err, os.ErrExist) {
			fi, err = os.Lstat(mp)
		}
	}
	if err != nil {
		return fmt.Errorf("sandbox: the mount point %s for the task's own directory in chroot mode: %w", mp, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !fi.IsDir() || !ok || st.Uid != 0 {
		return fmt.Errorf("sandbox: %s must be a directory owned by root (the mount point of the task's own directory in chroot mode); remove it and the sandbox makes it", mp)
	}
	return nil
}

// cgroups reports whether tasks get cgroup limits.
func (j *jailer) cgroups() bool { return j.cg != nil && j.cg.Mode() != cgroup.Unavailable }

// close removes the spare cgroups, waits for groups being removed and
// releases the handle on the host's network namespace.
func (j *jailer) close() error {
	j.closeOnce.Do(func() { j.closeErr = j.release() })
	return j.closeErr
}

func (j *jailer) release() error {
	j.pool.close()
	var errs []error
	if j.cg != nil {
		errs = append(errs, j.cg.Close())
	}
	if j.hostNetns != nil {
		errs = append(errs, j.hostNetns.Close())
	}
	if j.etcDir != "" {
		errs = append(errs, os.RemoveAll(j.etcDir), os.Remove(j.etcLock.Name()), j.etcLock.Close())
	}
	return errors.Join(errs...)
}

// describe is the start-up line for a working sandbox.
func (j *jailer) describe() string {
	var b strings.Builder
	b.WriteString("sandbox: on. ")
	if !j.cgroups() {
		b.WriteString("NOT ENFORCED: memory, CPU and pids limits (")
		if j.cg != nil {
			b.WriteString(j.cg.Describe())
		}
		b.WriteString("). ")
	} else {
		fmt.Fprintf(&b, "%s; default limits memory %s, cpu %g, pids %d. ", j.cg.Describe(),
			bytesize.Format(j.defaults.MemoryBytes), j.defaults.CPUCores, j.defaults.Pids)
	}
	b.WriteString("Namespaces pid, mount, ipc, uts, net (loopback only unless allowed); ")
	if j.chroot {
		b.WriteString("the task sees only cmd_dir and its own work dir; ")
	} else {
		b.WriteString("the task sees read-only system dirs, cmd_dir, its own work dir, a private /tmp, a minimal /dev and its own /proc; ")
	}
	b.WriteString("cmd_dir READ-ONLY (writable only for rules with cmd_dir_writable = true); " +
		"HOME=TMPDIR=TASK_WORKDIR a private capped dir per task, removed after it; every writable mount nosuid,nodev; " +
		"no session or terminal shared with the executor; ")
	if abi := nsinit.LandlockABI(); abi > 0 {
		fmt.Fprintf(&b, "Landlock on (ABI %d: writes only beneath the task's own dirs); ", abi)
	} else {
		b.WriteString("Landlock OFF (the kernel has none; the mount namespace alone keeps writes in the task's dirs); ")
	}
	seccomp := "a seccomp filter (no user namespaces, keyrings, bpf, mounts, modules, io_uring, vsock, TIOCSTI, setuid/setgid modes)"
	if !nsinit.SeccompFilter {
		seccomp = "NO seccomp filter on " + runtime.GOARCH
	}
	fmt.Fprintf(&b, "user %s by default, no_new_privs, %s, rlimits fsize %s nofile %d core 0; setup by %s",
		j.defaults.User, seccomp, bytesize.Format(j.rlimits.FileBytes), j.rlimits.OpenFiles, j.initPath)
	if j.initArgv0 != InitName {
		b.WriteString(" (re-executing itself: install " + InitName + " next to it to save ~2 ms per task)")
	}
	return b.String()
}

// prepareEtc copies the /etc entries among readOnly into a fresh
// directory under parent, returning it and the rest of readOnly. One bind
// of this copy per task replaces a bind per /etc file: mounts are most of
// the sandbox's start-up cost. The copy is made at start-up, so a task sees
// /etc as it was then.
func prepareEtc(parent string, readOnly []string) (dir string, lock *os.File, rest []string, err error) {
	var etc []string
	for _, p := range readOnly {
		if p == "/etc" || strings.HasPrefix(p, "/etc/") {
			etc = append(etc, p)
		} else {
			rest = append(rest, p)
		}
	}
	if len(etc) == 0 {
		return "", nil, rest, nil
	}
	removeStaleEtc(parent)
	if dir, err = os.MkdirTemp(parent, "etc-"); err != nil {
		return "", nil, nil, err
	}
	// The lock says the copy is in use: held while this executor lives,
	// released by the kernel however it ends, so the next executor to
	// start removes copies whose owner is gone.
	if lock, err = os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o600); err == nil {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	for _, p := range etc {
		if err != nil {
			break
		}
		err = copyTree(p, filepath.Join(dir, strings.TrimPrefix(p, "/etc")), 0)
	}
	if err != nil {
		os.RemoveAll(dir)
		if lock != nil {
			os.Remove(lock.Name())
			lock.Close()
		}
		return "", nil, nil, err
	}
	return dir, lock, rest, nil
}

// removeStaleEtc removes the /etc copies of executors that are gone: their
// lock is free.
func removeStaleEtc(parent string) {
	locks, _ := filepath.Glob(filepath.Join(parent, "etc-*.lock"))
	for _, name := range locks {
		f, err := os.OpenFile(name, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(strings.TrimSuffix(name, ".lock"))
			os.Remove(name)
		}
		f.Close()
	}
}

// copyTree copies a small tree of regular files, directories and symlinks;
// anything else, anything missing and anything large is left out.
func copyTree(src, dst string, depth int) error {
	fi, err := os.Lstat(src)
	if err != nil || depth > 8 {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	case fi.IsDir():
		if err := os.MkdirAll(dst, fi.Mode().Perm()|0o500); err != nil {
			return err
		}
		ents, err := os.ReadDir(src)
		if err != nil {
			return nil
		}
		for _, e := range ents {
			if err := copyTree(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()), depth+1); err != nil {
				return err
			}
		}
		return nil
	case fi.Mode().IsRegular() && fi.Size() <= 4<<20 && fi.Mode().Perm()&0o004 != 0:
		// Only world-readable files: what the host keeps private stays so.
		b, err := os.ReadFile(src)
		if err != nil {
			return nil
		}
		return os.WriteFile(dst, b, fi.Mode().Perm())
	}
	return nil
}

// findInit locates the helper. The executable re-executed as the helper is
// the fallback: it always exists, but it starts slower.
func findInit(path string) (file, argv0 string, err error) {
	if path == "" {
		self, err := os.Executable()
		if err == nil {
			candidate := filepath.Join(filepath.Dir(self), InitName)
			if _, err := os.Stat(candidate); err == nil {
				path = candidate
			}
		}
	}
	if path == "" {
		return "/proc/self/exe", InitName, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", "", fmt.Errorf("the sandbox helper: %w", err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	// It runs as root in every task: only root may have written it.
	if st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 || !fi.Mode().IsRegular() {
		return "", "", fmt.Errorf("the sandbox helper %s must be a regular file owned by root and writable by no one else (it is %v, uid %d)", path, fi.Mode(), st.Uid)
	}
	return path, InitName, nil
}

// effective fills the zero fields of l from the defaults.
func (j *jailer) effective(l Limits) Limits {
	if l.MemoryBytes == 0 {
		l.MemoryBytes = j.defaults.MemoryBytes
	}
	if l.CPUCores == 0 {
		l.CPUCores = j.defaults.CPUCores
	}
	if l.Pids == 0 {
		l.Pids = j.defaults.Pids
	}
	if l.User == "" {
		l.User = j.defaults.User
	}
	return l
}

// lookup resolves a user name or numeric uid to ids, once per name.
func (j *jailer) lookup(name string) (credential, error) {
	if c, ok := j.users.Load(name); ok {
		return c.(credential), nil
	}
	var u *user.User
	var err error
	if _, numErr := strconv.ParseUint(name, 10, 32); numErr == nil {
		u, err = user.LookupId(name)
		if err != nil {
			// A uid with no passwd entry is a valid choice: its own group.
			id, _ := strconv.ParseUint(name, 10, 32)
			c := credential{uint32(id), uint32(id)}
			j.users.Store(name, c)
			return c, nil
		}
	} else if u, err = user.Lookup(name); err != nil {
		return credential{}, fmt.Errorf("sandbox: user %q: %w", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return credential{}, fmt.Errorf("sandbox: user %q has a non-numeric uid or gid", name)
	}
	c := credential{uint32(uid), uint32(gid)}
	j.users.Store(name, c)
	return c, nil
}

// lookupGroup resolves a group name or numeric gid.
func lookupGroup(name string) (uint32, error) {
	if id, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(id), nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("sandbox: group %q: %w", name, err)
	}
	id, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("sandbox: group %q has a non-numeric gid", name)
	}
	return uint32(id), nil
}

// jailSys is the sandbox part of a task's handle.
type jailSys struct {
	group *cgroup.Group
	// mntns holds the task's mount namespace from its start until release,
	// so that tearing its mounts down is not part of the task's exit.
	mntns *os.File
}

// launchPlan is what a task's start is decided to be before anything is
// done: the helper's setup, the limits in force and cmd_dir.
type launchPlan struct {
	cfg     nsinit.Config
	lim     Limits
	cred    credential
	confine string // cmd_dir
}

// plan checks spec against the jail's settings and turns it into the
// helper's setup. It changes nothing on the host (it only reads the user
// and group databases), so every refusal and rewrite is table-tested
// without root.
func (j *jailer) plan(spec Spec) (launchPlan, error) {
	lim := j.effective(spec.Limits)
	cred, err := j.lookup(lim.User)
	if err != nil {
		return launchPlan{}, err
	}
	if lim.Group != "" {
		if cred.gid, err = lookupGroup(lim.Group); err != nil {
			return launchPlan{}, err
		}
	}
	confine := spec.Confine
	if confine == "" {
		confine = spec.Dir
	}
	dir := spec.Dir
	if dir == "" {
		dir = confine
	}
	switch {
	case confine == "" || !filepath.IsAbs(confine):
		return launchPlan{}, fmt.Errorf("sandbox: the task's directory %q must be an absolute path (cmd_dir)", confine)
	case filepath.Clean(confine) == "/":
		return launchPlan{}, errors.New("sandbox: cmd_dir / would show the task the whole host; choose a directory of its own")
	case !within(dir, confine):
		return launchPlan{}, fmt.Errorf("sandbox: the working directory %s is outside cmd_dir %s", dir, confine)
	case spec.taskDir != "" && within(spec.taskDir, confine):
		return launchPlan{}, fmt.Errorf("sandbox: work_dir %s lies inside cmd_dir %s, where tasks would see each other's directories; move work_dir out of it", filepath.Dir(spec.taskDir), confine)
	}
	cfg := nsinit.Config{
		Path: spec.Path, Args: spec.Args, Env: spec.Env, Dir: dir,
		RootDir: j.rootDir, CmdDir: filepath.Clean(confine), CmdDirWritable: lim.CmdDirWritable,
		TaskDir: spec.taskDir, TaskDirAt: j.taskDirAt(spec.taskDir),
		ReadOnly: j.readOnly, Etc: j.etcDir,
		TmpBytes: j.tmpBytes, WorkBytes: max(j.workBytes, 0), Hostname: "task-job",
		Netns: map[bool]int{true: nsinit.NetnsHost, false: nsinit.NetnsOwn}[lim.Network],
		UID:   cred.uid, GID: cred.gid, KeepCaps: rootCaps,
		FileBytes: j.rlimits.FileBytes, OpenFiles: j.rlimits.OpenFiles, CoreBytes: 0,
	}
	if j.chroot {
		// The task sees cmd_dir as /: paths inside it lose that prefix. A
		// host path outside it would name whatever lies at the same place
		// inside cmd_dir, a file nobody checked: refused (the jail's
		// chroot mode resolves interpreters inside cmd_dir instead).
		switch {
		case filepath.IsAbs(spec.Path) && !within(spec.Path, confine):
			return launchPlan{}, fmt.Errorf("sandbox: in chroot mode the task sees only cmd_dir %s, so %s would run an unchecked file inside it; name a program inside cmd_dir (the jail's chroot mode does so for interpreters)", confine, spec.Path)
		case lim.CmdDirWritable:
			return launchPlan{}, errors.New("sandbox: cmd_dir_writable is refused in chroot mode: cmd_dir holds the tasks' interpreters and libraries there, so a task that wrote it could plant code for the next one")
		}
		cfg.RootMode = nsinit.RootChroot
		cfg.Path = "/" + strings.TrimPrefix(rel(confine, spec.Path), "/")
		cfg.Dir = "/" + rel(confine, dir)
	}
	return launchPlan{cfg: cfg, lim: lim, cred: cred, confine: confine}, nil
}

// start launches spec through the helper in new namespaces and its cgroup.
func (j *jailer) start(p *Process, spec Spec, stdio [3]*os.File) (err error) {
	pl, err := j.plan(spec)
	if err != nil {
		return err
	}
	cfg, lim := pl.cfg, pl.lim
	if spec.taskDir != "" {
		// The task's user owns its directory, and only it.
		if err := os.Chown(spec.taskDir, int(pl.cred.uid), int(pl.cred.gid)); err != nil {
			return fmt.Errorf("sandbox: hand the task its work directory: %w", err)
		}
		if j.chroot {
			if err := chrootMountPoint(pl.confine); err != nil {
				return err
			}
		}
	}

	if h := j.pool.take(); h != nil {
		if err := j.startPooled(h, p, spec, cfg, lim, stdio); !errors.Is(err, errPoolHelper) {
			return err
		}
	}

	var group *cgroup.Group
	if j.cgroups() {
		group, err = j.cg.New(spec.Name, cgroup.Limits{MemoryBytes: lim.MemoryBytes, CPUCores: lim.CPUCores, Pids: lim.Pids})
		if err != nil {
			return fmt.Errorf("sandbox: create the task's cgroup: %w", err)
		}
		defer func() {
			if err != nil {
				_ = group.Close()
			}
		}()
	} else {
		lim.MemoryBytes, lim.CPUCores, lim.Pids = 0, 0, 0
	}

	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer cfgW.Close()
	stR, stW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		return fmt.Errorf("sandbox: %w", err)
	}
	defer stR.Close()

	// Setsid: the task leads a session (and process group) of its own, with
	// no controlling terminal, so it cannot reach the terminal the executor
	// was started from.
	attr := &syscall.SysProcAttr{Cloneflags: jailFlags, Setsid: true, Pdeathsig: syscall.SIGKILL}
	if cfg.Netns == nsinit.NetnsOwn {
		attr.Cloneflags |= unix.CLONE_NEWNET
	}
	if group != nil {
		if fd, ok := group.CgroupFD(); ok {
			// Born inside its cgroup: not one instruction runs outside.
			attr.UseCgroupFD, attr.CgroupFD = true, fd
		}
	}
	closeOnExec()
	proc, err := os.StartProcess(j.initPath, []string{j.initArgv0}, &os.ProcAttr{
		Dir:   "/",
		Env:   helperEnv,
		Files: []*os.File{stdio[0], stdio[1], stdio[2], cfgR, stW},
		Sys:   attr,
	})
	cfgR.Close()
	stW.Close()
	if err != nil {
		return fmt.Errorf("sandbox: start the sandbox helper %s: %w", j.initPath, err)
	}
	// The pid is our child's until it is reaped: /proc names it safely.
	mntns, _ := os.Open("/proc/" + strconv.Itoa(proc.Pid) + "/ns/mnt")
	abort := func(err error) error {
		_ = proc.Kill()
		_, _ = proc.Wait()
		if mntns != nil {
			mntns.Close()
		}
		return err
	}
	if group != nil && !attr.UseCgroupFD {
		// cgroup v1: the helper waits for its config before doing
		// anything, so joining now still precedes the task's first
		// instruction.
		if err := group.AddProc(proc.Pid); err != nil {
			return abort(fmt.Errorf("sandbox: put the task into its cgroup: %w", err))
		}
	}
	if _, err := cfgW.Write(cfg.Encode()); err != nil {
		return abort(fmt.Errorf("sandbox: send the task's setup to the helper: %w", err))
	}
	cfgW.Close()
	status, _ := io.ReadAll(stR)
	if len(status) == 0 || status[0] != nsinit.Hello {
		_ = abort(nil)
		return fmt.Errorf("sandbox: %s did not run the sandbox setup (a task-job binary re-executed as %s must call nsinit.Main first thing in main)", j.initPath, InitName)
	}
	if status = status[1:]; len(status) > 0 {
		_ = abort(nil)
		st, derr := nsinit.DecodeStatus(status)
		switch {
		case derr != nil:
			return fmt.Errorf("sandbox: the helper failed with an unreadable status: %w", derr)
		case st.Step == "exec" && st.Errno != 0:
			return startError(spec.Path, syscall.Errno(st.Errno))
		}
		return fmt.Errorf("sandbox: setting up the task failed: %s: %s", st.Step, st.Msg)
	}
	p.pid, p.sys.proc = proc.Pid, proc
	p.sys.jail = &jailSys{group: group, mntns: mntns}
	p.limits = lim
	if group != nil {
		p.cgroup = group.Path()
	}
	return nil
}

// settle runs once the task's PID 1 has been reaped, before its result is
// out. The kernel ends a pid namespace with its PID 1: by the time PID 1's
// exit is reported, every other process of the namespace was SIGKILLed and
// is gone (reaped), setsid daemons and double forks included, so nothing of
// the task can act any more. One read of the cgroup confirms it; should the
// group still hold a process, it is killed and waited for here, before the
// result. Then the group's usage is read. Removing the group comes after
// the result (release).
func (s *jailSys) settle(res *Result, log hclog.Logger) {
	g := s.group
	if g == nil {
		return
	}
	now, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	if g.WaitEmpty(now) != nil {
		log.Warn("a process of the task was left in its cgroup after its pid namespace ended; killing it before the result", "cgroup", g.Path())
		_ = g.Kill()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.WaitEmpty(ctx); err != nil {
			log.Warn("the task's cgroup did not empty after a kill", "cgroup", g.Path(), "error", err)
		}
	}
	if u, err := g.Usage(); err == nil {
		if u.CPU > 0 {
			res.CPU = u.CPU
		}
		if u.MemoryPeak > 0 {
			res.MaxRSS = u.MemoryPeak
		}
		res.OOMKilled = u.OOMKills > 0
	}
}

// release frees what the task held on the host, after its result is out:
// its mount namespace (the kernel unmounts the task's whole filesystem
// view when the last reference goes, which would otherwise happen in the
// task's exit, before its result) and its cgroup.
func (s *jailSys) release(log hclog.Logger) {
	if s.mntns != nil {
		s.mntns.Close()
	}
	if g := s.group; g != nil {
		if err := g.Close(); err != nil {
			log.Warn("could not remove the task's cgroup", "cgroup", g.Path(), "error", err)
		}
	}
}

// kill is the cgroup-wide kill that follows the group SIGKILL, for any
// process that left the task's process group and pid namespace view.
func (s *jailSys) kill() {
	if s.group != nil {
		_ = s.group.Kill()
	}
}

// within reports whether path is dir or lies beneath it.
func within(path, dir string) bool {
	r, err := filepath.Rel(dir, path)
	return err == nil && r != ".." && !strings.HasPrefix(r, "../") && !filepath.IsAbs(r)
}

func rel(base, path string) string {
	if !filepath.IsAbs(path) {
		return path
	}
	r, err := filepath.Rel(base, path)
	if err != nil || r == "." {
		return ""
	}
	return r
}

// helperEnv keeps the helper's Go runtime small: one P and no collector
// means fewer threads to start, and fewer for the kernel to end when the
// helper execs the task. It lives a millisecond and allocates little.
var helperEnv = []string{"GOMAXPROCS=1", "GOGC=off"}
