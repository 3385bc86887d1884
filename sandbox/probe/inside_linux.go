package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

var namespaces = []string{"pid", "mnt", "net", "ipc", "uts", "user", "cgroup", "time"}

// inside prints one "check<TAB>finding" line per check. Findings name
// errnos (EPERM, ENOSYS, ...) or say "allowed"; paths of cmd_dir and the
// task's work dir are written <cmd_dir> and <work_dir>, so the table is the
// same on every host.
func inside(w io.Writer) {
	say := func(k, v string) { fmt.Fprintf(w, "%s\t%s\n", k, v) }
	cmdDir, workDir := os.Getenv("PROBE_CMD_DIR"), os.Getenv("TASK_WORKDIR")
	placeholder := func(p string) string {
		switch {
		case workDir != "" && strings.HasPrefix(p, workDir):
			return "<work_dir>" + strings.TrimPrefix(p, workDir)
		case cmdDir != "" && strings.HasPrefix(p, cmdDir):
			return "<cmd_dir>" + strings.TrimPrefix(p, cmdDir)
		}
		return p
	}

	// Identity and capabilities.
	status := procStatus()
	say("uid gid groups", fmt.Sprintf("%d %d %s", os.Getuid(), os.Getgid(), groups()))
	say("no_new_privs", status["NoNewPrivs"])
	say("seccomp mode", map[string]string{"0": "none", "1": "strict", "2": "filter"}[status["Seccomp"]])
	say("capabilities, effective", capNames(status["CapEff"]))
	say("capabilities, bounding set", capNames(status["CapBnd"]))
	say("HOME = TMPDIR = TASK_WORKDIR", func() string {
		if os.Getenv("HOME") == workDir && os.Getenv("TMPDIR") == workDir && workDir != "" {
			return placeholder(workDir)
		}
		return fmt.Sprintf("HOME=%s TMPDIR=%s", placeholder(os.Getenv("HOME")), placeholder(os.Getenv("TMPDIR")))
	}())
	wd, _ := os.Getwd()
	say("working directory", placeholder(wd))

	// Namespaces.
	host := map[string]string{}
	for _, kv := range strings.Split(os.Getenv("PROBE_HOST_NS"), ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			host[k] = v
		}
	}
	for _, ns := range namespaces {
		l, err := os.Readlink("/proc/self/ns/" + ns)
		switch {
		case err != nil:
			say("namespace "+ns, errName(err))
		case l == host[ns]:
			say("namespace "+ns, "the executor's")
		default:
			say("namespace "+ns, "own")
		}
	}
	say("pid", strconv.Itoa(os.Getpid()))
	procs, _ := filepath.Glob("/proc/[0-9]*")
	say("processes visible in /proc", strconv.Itoa(len(procs)))
	var uts unix.Utsname
	unix.Uname(&uts)
	say("hostname", unix.ByteSliceToString(uts.Nodename[:]))
	ifaces, _ := net.Interfaces()
	var names []string
	for _, i := range ifaces {
		names = append(names, i.Name)
	}
	say("network interfaces", strings.Join(names, " "))

	// Mounts and what can be written.
	paths := []string{"/", "/usr", "/etc", "/tmp", "/dev", "/dev/shm", "/proc", "/proc/sys", cmdDir, workDir}
	for _, p := range paths {
		say("mount "+placeholder(p), mountFlags(p))
	}
	for _, p := range append(paths, "/var/tmp", "/root", "/home", "/sys") {
		say("write "+placeholder(p), tryWrite(p))
	}
	say("read /etc/shadow", errName(readable("/etc/shadow")))
	say("/sys", exists("/sys"))
	say("/dev entries", devEntries())

	// Setuid and devices.
	f := filepath.Join(workDir, "probe-setid")
	os.WriteFile(f, []byte("x"), 0o755)
	say("chmod u+s", errName(unix.Chmod(f, 0o4755)))
	say("chmod g+s", errName(unix.Chmod(f, 0o2755)))
	fd, err := unix.Open(f+"2", unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o4755)
	if err == nil {
		unix.Close(fd)
	}
	say("create with mode 04755", errName(err))
	say("file capability (setxattr security.capability)", errName(unix.Setxattr(f, "security.capability", []byte{1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0)))
	say("mknod char device", errName(unix.Mknod(f+"3", unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3)))))

	// Terminal.
	stat, _ := os.ReadFile("/proc/self/stat")
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	say("session leader", strconv.FormatBool(len(fields) > 3 && fields[3] == strconv.Itoa(os.Getpid())))
	say("controlling terminal", map[bool]string{true: "none", false: "yes"}[len(fields) > 4 && fields[4] == "0"])
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err == nil {
		tty.Close()
	}
	say("open /dev/tty", errName(err))
	c := byte('x')
	say("ioctl TIOCSTI (stdin)", errName(raw(unix.SYS_IOCTL, 0, unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))))
	say("ioctl TIOCLINUX (stdin)", errName(raw(unix.SYS_IOCTL, 0, unix.TIOCLINUX, uintptr(unsafe.Pointer(&c)))))

	// System calls.
	for _, s := range syscallProbes() {
		say("syscall "+s.name, errName(s.try()))
	}
	for _, s := range socketProbes {
		fd, err := unix.Socket(s.family, s.typ|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		say("socket "+s.name, errName(err))
	}
	say("clone(CLONE_NEWUSER)", errName(spawn(unix.CLONE_NEWUSER)))
	say("clone(CLONE_NEWNET)", errName(spawn(unix.CLONE_NEWNET)))
	say("fork and exec", errName(spawn(0)))

	// Limits.
	for _, l := range []struct {
		name string
		res  int
	}{{"rlimit nofile", unix.RLIMIT_NOFILE}, {"rlimit fsize", unix.RLIMIT_FSIZE}, {"rlimit core", unix.RLIMIT_CORE}} {
		var rl unix.Rlimit
		unix.Getrlimit(l.res, &rl)
		say(l.name, strconv.FormatUint(rl.Cur, 10))
	}
}

func raw(nr uintptr, a ...uintptr) error {
	var args [6]uintptr
	copy(args[:], a)
	_, _, e := unix.Syscall6(nr, args[0], args[1], args[2], args[3], args[4], args[5])
	if e != 0 {
		return e
	}
	return nil
}

// errName is "allowed" for nil, else the errno's name.
func errName(err error) string {
	if err == nil {
		return "allowed"
	}
	var errno syscall.Errno
	for e := err; e != nil; {
		if en, ok := e.(syscall.Errno); ok {
			errno = en
			break
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	if errno != 0 {
		if n := unix.ErrnoName(errno); n != "" {
			return n
		}
		return "errno " + strconv.Itoa(int(errno))
	}
	return err.Error()
}

func procStatus() map[string]string {
	b, _ := os.ReadFile("/proc/self/status")
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func groups() string {
	gs, _ := os.Getgroups()
	var s []string
	for _, g := range gs {
		s = append(s, strconv.Itoa(g))
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

var capList = []string{"chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
	"setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock",
	"ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot",
	"sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control",
	"setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon",
	"bpf", "checkpoint_restore"}

func capNames(hex string) string {
	v, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		return "?" + hex
	}
	if v == 0 {
		return "none"
	}
	var out []string
	for i, n := range capList {
		if v&(1<<uint(i)) != 0 {
			out = append(out, n)
		}
	}
	return strings.Join(out, " ")
}

// mountFlags are the flags of the mount holding p.
func mountFlags(p string) string {
	if p == "" {
		return "none"
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return errName(err)
	}
	flags := []string{"rw"}
	if st.Flags&unix.ST_RDONLY != 0 {
		flags[0] = "ro"
	}
	for _, f := range []struct {
		bit  int64
		name string
	}{{unix.ST_NOSUID, "nosuid"}, {unix.ST_NODEV, "nodev"}, {unix.ST_NOEXEC, "noexec"}} {
		if st.Flags&f.bit != 0 {
			flags = append(flags, f.name)
		}
	}
	return strings.Join(flags, ",")
}

func tryWrite(dir string) string {
	if dir == "" {
		return "none"
	}
	f, err := os.CreateTemp(dir, ".probe-")
	if err != nil {
		return errName(err)
	}
	f.Close()
	os.Remove(f.Name())
	return "allowed"
}

func readable(p string) error {
	f, err := os.Open(p)
	if err == nil {
		f.Close()
	}
	return err
}

func exists(p string) string {
	if _, err := os.Lstat(p); err != nil {
		return "absent"
	}
	return "present"
}

func devEntries() string {
	ents, err := os.ReadDir("/dev")
	if err != nil {
		return errName(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}

// spawn starts this program again with clone flags, as a task that wants
// new namespaces would.
func spawn(flags uintptr) error {
	cmd := exec.Command("/proc/self/exe", "-noop")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags}
	return cmd.Run()
}

type syscallProbe struct {
	name string
	try  func() error
}

func str(s string) uintptr {
	b, _ := unix.BytePtrFromString(s)
	return uintptr(unsafe.Pointer(b))
}

// syscallProbes call each system call with arguments that would do no harm
// if it were allowed: missing paths, bad fds, read-only operations.
func syscallProbes() []syscallProbe {
	var params [120]byte
	var how [24]byte
	missing := "/nonexistent-probe"
	p := []syscallProbe{
		{"unshare(CLONE_NEWUSER)", func() error { return raw(unix.SYS_UNSHARE, unix.CLONE_NEWUSER) }},
		{"unshare(CLONE_NEWNS)", func() error { return raw(unix.SYS_UNSHARE, unix.CLONE_NEWNS) }},
		{"setns", func() error { return raw(unix.SYS_SETNS, ^uintptr(0), 0) }},
		{"mount", func() error { return raw(unix.SYS_MOUNT, str("none"), str(missing), str("tmpfs"), 0, 0) }},
		{"umount2", func() error { return raw(unix.SYS_UMOUNT2, str(missing), 0) }},
		{"pivot_root", func() error { return raw(unix.SYS_PIVOT_ROOT, str(missing), str(missing)) }},
		{"fsopen", func() error { return raw(unix.SYS_FSOPEN, str("tmpfs"), 0) }},
		{"open_tree", func() error { return raw(unix.SYS_OPEN_TREE, ^uintptr(0), str(missing), 0) }},
		{"chroot", func() error { return raw(unix.SYS_CHROOT, str(missing)) }},
		{"keyctl", func() error {
			return raw(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, uintptr(0xfffffffd), 0) // the session keyring
		}},
		{"add_key", func() error { return raw(unix.SYS_ADD_KEY, str("user"), str("probe"), 0, 0, uintptr(0xfffffffd)) }},
		{"bpf", func() error { return raw(unix.SYS_BPF, ^uintptr(0), 0, 0) }},
		{"perf_event_open", func() error { return raw(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0) }},
		{"userfaultfd", func() error { return closeFd(unix.SYS_USERFAULTFD, unix.O_CLOEXEC) }},
		{"io_uring_setup", func() error { return closeFd(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params))) }},
		{"openat2", func() error {
			return closeFd(unix.SYS_OPENAT2, atFdcwd, str("/"), uintptr(unsafe.Pointer(&how)), uintptr(len(how)))
		}},
		{"clone3", func() error { return raw(unix.SYS_CLONE3, 0, 0) }},
		{"open_by_handle_at", func() error { return raw(unix.SYS_OPEN_BY_HANDLE_AT, ^uintptr(0), 0, 0) }},
		{"name_to_handle_at", func() error { return raw(unix.SYS_NAME_TO_HANDLE_AT, ^uintptr(0), str(missing), 0, 0, 0) }},
		{"kexec_load", func() error { return raw(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0) }},
		{"init_module", func() error { return raw(unix.SYS_INIT_MODULE, 0, 0, str("")) }},
		{"delete_module", func() error { return raw(unix.SYS_DELETE_MODULE, str("probe-none"), 0) }},
		{"reboot", func() error { return raw(unix.SYS_REBOOT, 0, 0, 0, 0) }}, // bad magic: EINVAL if allowed
		{"swapon", func() error { return raw(unix.SYS_SWAPON, str(missing), 0) }},
		{"acct", func() error { return raw(unix.SYS_ACCT, str(missing)) }},
		{"syslog(size)", func() error { return raw(unix.SYS_SYSLOG, 10, 0, 0) }},
		{"quotactl", func() error { return raw(unix.SYS_QUOTACTL, 0, str(missing), 0, 0) }},
		{"fanotify_init", func() error { return closeFd(unix.SYS_FANOTIFY_INIT, 0, 0) }},
		{"sethostname", func() error { return raw(unix.SYS_SETHOSTNAME, str("probe"), 5) }},
		{"settimeofday", func() error { return raw(unix.SYS_SETTIMEOFDAY, 0, 0) }},
		{"personality(PER_LINUX32)", func() error {
			err := raw(unix.SYS_PERSONALITY, 8)
			if err == nil {
				raw(unix.SYS_PERSONALITY, 0)
			}
			return err
		}},
		{"personality(query)", func() error { return raw(unix.SYS_PERSONALITY, 0xffffffff) }},
		{"ptrace(PEEKUSER, pid 1)", func() error { return raw(unix.SYS_PTRACE, unix.PTRACE_PEEKUSR, 1, 0, 0) }},
	}
	return append(p, archProbes()...)
}

func closeFd(nr uintptr, a ...uintptr) error {
	var args [6]uintptr
	copy(args[:], a)
	fd, _, e := unix.Syscall6(nr, args[0], args[1], args[2], args[3], args[4], args[5])
	if e != 0 {
		return e
	}
	unix.Close(int(fd))
	return nil
}

var socketProbes = []struct {
	name   string
	family int
	typ    int
}{
	{"AF_UNIX", unix.AF_UNIX, unix.SOCK_STREAM},
	{"AF_INET", unix.AF_INET, unix.SOCK_STREAM},
	{"AF_INET6", unix.AF_INET6, unix.SOCK_STREAM},
	{"AF_INET raw", unix.AF_INET, unix.SOCK_RAW},
	{"AF_NETLINK", unix.AF_NETLINK, unix.SOCK_RAW},
	{"AF_PACKET", unix.AF_PACKET, unix.SOCK_RAW},
	{"AF_VSOCK", unix.AF_VSOCK, unix.SOCK_STREAM},
	{"AF_ALG", unix.AF_ALG, unix.SOCK_SEQPACKET},
}

// atFdcwd is AT_FDCWD (-100) as a raw system call argument.
var atFdcwd = func() uintptr { v := unix.AT_FDCWD; return uintptr(v) }()
