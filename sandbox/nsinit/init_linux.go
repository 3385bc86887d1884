package nsinit

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// stepError is a failure of one setup step.
type stepError struct {
	step string
	err  error
}

func fail(step string, err error) error { return &stepError{step, err} }

// Main runs the setup described by the Config on ConfigFd and execs the
// task. It never returns: on failure it reports on StatusFd and exits 127.
//
// Started with EnvPooled=1 it is a pre-started helper: ConfigFd is then a
// unix stream socket, the one channel both ways. It says Hello there and
// waits; the executor, when it takes the helper for a task, sends the
// Config (a 4-byte big-endian length, then the encoded Config) with the
// task's stdin, stdout and stderr attached (SCM_RIGHTS) to its first byte.
// Failures are reported on the same socket, and the exec closes it. EOF
// before any Config means the executor let the helper go: it exits 0.
func Main() {
	// Capabilities, no_new_privs, the parent-death signal and the network
	// namespace are per thread: everything happens on this thread, the one
	// that finally calls execve.
	runtime.LockOSThread()
	pooled := os.Getenv(EnvPooled) == "1"
	statusFd := StatusFd
	if pooled {
		statusFd = ConfigFd
	}
	status := os.NewFile(uintptr(statusFd), "status")
	if _, err := status.Write([]byte{Hello}); err != nil {
		os.Exit(127)
	}
	var raw []byte
	var err error
	if pooled {
		raw, err = receive(ConfigFd)
	} else {
		raw, err = io.ReadAll(os.NewFile(ConfigFd, "config"))
		unix.Close(ConfigFd)
	}
	if err == nil {
		err = run(raw)
	}
	st := Status{Step: "setup", Msg: err.Error()}
	if se, ok := err.(*stepError); ok {
		st.Step, st.Msg = se.step, se.err.Error()
	}
	var errno syscall.Errno
	if asErrno(err, &errno) {
		st.Errno = uintptr(errno)
	}
	_, _ = status.Write(st.Encode())
	os.Exit(127)
}

// MaxConfig bounds an encoded Config a pre-started helper accepts.
const MaxConfig = 16 << 20

// receive reads a pre-started helper's Config and installs the task's
// stdio that came with it as fds 0, 1 and 2.
func receive(fd int) ([]byte, error) {
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(3*4))
	var n, oobn int
	var err error
	for {
		n, oobn, _, _, err = unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, fail("receive the task", err)
	}
	if n == 0 {
		os.Exit(0) // let go unused
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, fail("receive the task's stdio", err)
	}
	var fds []int
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			return nil, fail("receive the task's stdio", err)
		}
		fds = append(fds, got...)
	}
	if len(fds) != 3 {
		return nil, fail("receive the task's stdio", errors.New("want 3 fds, got "+itoa(int64(len(fds)))))
	}
	for i, f := range fds {
		if err := unix.Dup3(f, i, 0); err != nil {
			return nil, fail("install the task's stdio", err)
		}
		unix.Close(f)
	}
	if n < 4 {
		return nil, fail("receive the task", errShort)
	}
	size := int(binary.BigEndian.Uint32(buf))
	if size > MaxConfig {
		return nil, fail("receive the task", errors.New("config too large"))
	}
	raw := append([]byte(nil), buf[4:n]...)
	for len(raw) < size {
		m, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fail("receive the task", err)
		}
		if m == 0 {
			return nil, fail("receive the task", errShort)
		}
		raw = append(raw, buf[:m]...)
	}
	if len(raw) != size {
		return nil, fail("receive the task", errors.New("trailing bytes after the config"))
	}
	return raw, nil
}

func asErrno(err error, target *syscall.Errno) bool {
	for err != nil {
		if e, ok := err.(syscall.Errno); ok {
			*target = e
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func run(raw []byte) error {
	c, err := Decode(raw)
	if err != nil {
		return fail("read config", err)
	}

	switch c.Netns {
	case NetnsOwn:
		if err := LoopbackUp(); err != nil {
			return fail("bring up the task's loopback", err)
		}
	case NetnsJoin:
		if err := unix.Setns(NetnsFd, unix.CLONE_NEWNET); err != nil {
			return fail("join the host's network namespace", err)
		}
	}
	unix.Close(NetnsFd)
	if c.Hostname != "" {
		if err := unix.Sethostname([]byte(c.Hostname)); err != nil {
			return fail("set the hostname", err)
		}
	}
	if err := buildRoot(c); err != nil {
		return err
	}
	if err := landlock(c); err != nil {
		return err
	}
	if err := setRlimits(c); err != nil {
		return err
	}
	if err := dropPrivileges(c); err != nil {
		return err
	}
	if err := unix.Chdir(c.Dir); err != nil {
		return fail("enter the working directory "+c.Dir, err)
	}
	// Fds above 2 close at exec, StatusFd among them: its EOF tells the
	// executor the exec succeeded.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		for fd := 3; fd < 1024; fd++ {
			unix.CloseOnExec(fd)
		}
	}
	if err := installSeccomp(); err != nil {
		return err
	}
	err = unix.Exec(c.Path, c.Args, c.Env)
	return fail("exec", err)
}

// mount wraps mount(2) with a step name for the error.
func mount(src, dst, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(src, dst, fstype, flags, data); err != nil {
		return fail("mount "+dst, err)
	}
	return nil
}

const (
	noSuidDev = unix.MS_NOSUID | unix.MS_NODEV
	roBind    = unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY
)

// buildRoot gives the task its own filesystem view and pivots into it. The
// old root is detached afterwards, so no host path stays reachable, not
// even through /proc/self/root or /proc/1/cwd.
func buildRoot(c *Config) error {
	// Nothing done here may propagate back to the host.
	if err := mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	root := c.RootDir
	cmdFlags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | noSuidDev)
	if !c.CmdDirWritable {
		cmdFlags |= unix.MS_RDONLY
	}
	if c.RootMode == RootChroot {
		if err := mount(c.CmdDir, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		if err := mount("", root, "", cmdFlags, ""); err != nil {
			return err
		}
		if err := bindTaskDir(root, c, false); err != nil {
			return err
		}
		return pivot(root, false)
	}

	if err := mount("tmpfs", root, "tmpfs", noSuidDev, "mode=755,size=1m"); err != nil {
		return err
	}
	for _, p := range c.ReadOnly {
		if err := bindReadOnly(root, p); err != nil {
			return err
		}
	}
	if c.Etc != "" {
		etc := filepath.Join(root, "etc")
		if err := os.MkdirAll(etc, 0o755); err != nil {
			return fail("create the mount point /etc", err)
		}
		if err := mount(c.Etc, etc, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		if err := mount("", etc, "", roBind|noSuidDev, ""); err != nil {
			return err
		}
	}
	size := "size=" + itoa(c.TmpBytes)
	if c.CmdDir != "/tmp" {
		if err := tmpfs(root, "/tmp", "mode=1777,"+size); err != nil {
			return err
		}
	}
	// cmd_dir. Bound after the read-only ones and /tmp so that a cmd_dir
	// inside one of them (/usr/local/jobs, /tmp/jobs) is still there, with
	// its own flags.
	work := filepath.Join(root, c.CmdDir)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return fail("create the mount point "+c.CmdDir, err)
	}
	if err := mount(c.CmdDir, work, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	if err := mount("", work, "", cmdFlags, ""); err != nil {
		return err
	}
	if err := bindTaskDir(root, c, true); err != nil {
		return err
	}
	if err := buildDev(root, size); err != nil {
		return err
	}
	if err := buildProc(root, c.UID == 0); err != nil {
		return err
	}
	return pivot(root, true)
}

// bindTaskDir binds the task's own directory, writable, nosuid and nodev,
// or, with WorkBytes, mounts a tmpfs of that size there, owned by the
// task's user, so that what a task writes is capped (the directory is
// removed at the task's end either way). Bound last, so that it is
// writable wherever it lies. In chroot mode the mount point must exist
// (the executor made it); otherwise it is made in the root's tmpfs when
// missing.
func bindTaskDir(root string, c *Config, mkdir bool) error {
	if c.TaskDir == "" {
		return nil
	}
	dst := filepath.Join(root, c.TaskDirAt)
	if mkdir {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return fail("create the mount point "+c.TaskDirAt, err)
		}
	}
	if c.WorkBytes > 0 {
		return mount("tmpfs", dst, "tmpfs", noSuidDev,
			"mode=700,uid="+itoa(int64(c.UID))+",gid="+itoa(int64(c.GID))+",size="+itoa(c.WorkBytes))
	}
	if err := mount(c.TaskDir, dst, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	return mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|noSuidDev, "")
}

func tmpfs(root, path, data string) error {
	dst := filepath.Join(root, path)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fail("create the mount point "+path, err)
	}
	return mount("tmpfs", dst, "tmpfs", noSuidDev, data)
}

// bindReadOnly makes host path p visible read-only at the same place.
func bindReadOnly(root, p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil // not on this host
	}
	dst := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fail("create the mount point "+p, err)
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return fail("read the symlink "+p, err)
		}
		if err := os.Symlink(target, dst); err != nil && !os.IsExist(err) {
			return fail("recreate the symlink "+p, err)
		}
		return nil
	case fi.IsDir():
		if err := os.Mkdir(dst, 0o755); err != nil && !os.IsExist(err) {
			return fail("create the mount point "+p, err)
		}
	default:
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return fail("create the mount point "+p, err)
		}
		f.Close()
	}
	if err := mount(p, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	return mount("", dst, "", roBind|noSuidDev, "")
}

// devices are the only device nodes a task gets, with their numbers. No
// tty: /dev/tty is the opener's controlling terminal, and a task has none
// (it leads a session of its own), so the node could only fail; without
// it nothing in the task's view reaches a terminal of the host.
var devices = []struct {
	name         string
	major, minor uint32
}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}}

// buildDev makes a minimal /dev. The nodes are made with mknod in a tmpfs
// that is then remounted read-only: cheaper than a bind mount per device,
// and the task can add none (it has no CAP_MKNOD, and the tmpfs is
// read-only).
func buildDev(root, size string) error {
	dev := filepath.Join(root, "dev")
	if err := os.MkdirAll(dev, 0o755); err != nil {
		return fail("create the mount point /dev", err)
	}
	if err := mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=755,size=64k"); err != nil {
		return err
	}
	old := unix.Umask(0)
	defer unix.Umask(old)
	for _, d := range devices {
		if err := unix.Mknod(filepath.Join(dev, d.name), unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return fail("create /dev/"+d.name, err)
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return fail("create /dev/"+name, err)
		}
	}
	if err := tmpfs(root, "/dev/shm", "mode=1777,"+size); err != nil {
		return err
	}
	return mount("", dev, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, "mode=755,size=64k")
}

// procMasked are /proc files that tell about or act on the whole host;
// /dev/null is bound over them (as container runtimes do). Only the
// world-readable ones matter to a task that is not root.
var (
	procMasked        = []string{"kcore", "keys", "timer_list", "sched_debug", "sysrq-trigger", "kmsg"}
	procMaskedNonRoot = []string{"timer_list", "sched_debug"}
)

// procReadOnly are /proc directories a root task could otherwise use to
// reconfigure the host (their files are root's to write).
var procReadOnly = []string{"sys", "irq", "bus", "fs"}

func buildProc(root string, asRoot bool) error {
	proc := filepath.Join(root, "proc")
	if err := os.Mkdir(proc, 0o555); err != nil {
		return fail("create the mount point /proc", err)
	}
	// This proc belongs to the task's pid namespace: it shows only the
	// task's processes.
	if err := mount("proc", proc, "proc", noSuidDev|unix.MS_NOEXEC, ""); err != nil {
		return err
	}
	masked, readOnly := procMaskedNonRoot, []string(nil)
	if asRoot {
		masked, readOnly = procMasked, procReadOnly
	}
	for _, m := range masked {
		p := filepath.Join(proc, m)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := mount("/dev/null", p, "", unix.MS_BIND, ""); err != nil {
			return err
		}
	}
	for _, m := range readOnly {
		p := filepath.Join(proc, m)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		if err := mount("", p, "", roBind|noSuidDev|unix.MS_NOEXEC, ""); err != nil {
			return err
		}
	}
	return nil
}

// pivot makes root the task's / and detaches the host's. A chroot would
// leave the host's root reachable to a root task (chroot again, or through
// an fd); pivot_root plus the detach leaves nothing to reach.
func pivot(root string, readOnly bool) error {
	if err := unix.Chdir(root); err != nil {
		return fail("enter the new root", err)
	}
	// pivot_root(".", ".") stacks the old root under the new one without
	// needing a directory for it (as runc does); the detach then drops it.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fail("pivot_root", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fail("detach the host's root", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fail("enter the new root", err)
	}
	if readOnly {
		if err := mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|noSuidDev, "mode=755,size=1m"); err != nil {
			return err
		}
	}
	return nil
}

func setRlimits(c *Config) error {
	for _, l := range []struct {
		name string
		res  int
		v    int64
	}{
		{"file size", unix.RLIMIT_FSIZE, c.FileBytes},
		{"open files", unix.RLIMIT_NOFILE, c.OpenFiles},
		{"core size", unix.RLIMIT_CORE, c.CoreBytes},
	} {
		if l.v < 0 {
			continue
		}
		lim := unix.Rlimit{Cur: uint64(l.v), Max: uint64(l.v)}
		if err := unix.Setrlimit(l.res, &lim); err != nil {
			return fail("set the "+l.name+" limit", err)
		}
	}
	return nil
}

// dropPrivileges bounds capabilities, drops supplementary groups, switches
// to the task's user and forbids gaining privileges back through set-uid
// files or file capabilities.
func dropPrivileges(c *Config) error {
	keep := c.KeepCaps
	if c.UID != 0 {
		keep = 0
	}
	for capability := 0; capability <= unix.CAP_LAST_CAP; capability++ {
		if keep&(1<<uint(capability)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(capability), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fail("drop capability "+itoa(int64(capability)), err)
		}
	}
	// Credentials are per thread in the kernel. Go's Setuid and friends
	// change every thread of the process, with a signal to each: slow, and
	// needless here, where the only thread that matters is this locked one,
	// which execs the task (the others end at exec and run no code of
	// ours meanwhile).
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		return fail("drop supplementary groups", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(c.GID), uintptr(c.GID), uintptr(c.GID)); e != 0 {
		return fail("set group "+itoa(int64(c.GID)), e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(c.UID), uintptr(c.UID), uintptr(c.UID)); e != 0 {
		return fail("set user "+itoa(int64(c.UID)), e)
	}
	if c.UID == 0 {
		// Root keeps only what the bounding set allows: trim the
		// effective, permitted and inheritable sets to match now, so the
		// rest of setup and the exec see the same.
		if err := trimCaps(keep); err != nil {
			return err
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fail("set no_new_privs", err)
	}
	// Changing credentials cleared the parent-death signal: set it again,
	// so the task still dies with the executor.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fail("set the parent-death signal", err)
	}
	return nil
}

func trimCaps(keep uint64) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fail("read capabilities", err)
	}
	for i := range data {
		mask := uint32(keep >> (32 * uint(i)))
		data[i].Effective &= mask
		data[i].Permitted &= mask
		data[i].Inheritable &= mask
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fail("limit capabilities", err)
	}
	return nil
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

func itoa(v int64) string {
	if v == 0 {
		return "0"
	}
	neg := v < 0
	if neg {
		v = -v
	}
	var b [20]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// LoopbackUp brings up the loopback interface of the calling thread's
// network namespace: a new namespace starts with it down.
func LoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
