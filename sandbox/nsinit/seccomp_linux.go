//go:build linux && (amd64 || arm64)

package nsinit

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The seccomp filter every task gets: the system calls that reach the
// kernel's least-hardened corners, or would undo the sandbox, fail with
// EPERM, as in container runtimes' default profiles. Most would already
// fail for lack of privilege; the point is the ones that would not, such
// as creating a user namespace, which gives an unprivileged process
// CAP_SYS_ADMIN over new namespaces and so most of the kernel to probe.
//
// It is a deny list, not an allow list like Docker's default profile: the
// README's Sandbox section compares the two call by call.

// deniedSyscalls fail with EPERM, whatever their arguments.
var deniedSyscalls = append([]uintptr{
	unix.SYS_UNSHARE, unix.SYS_SETNS, // new or other namespaces
	unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, // the filesystem view
	unix.SYS_FSOPEN, unix.SYS_FSCONFIG, unix.SYS_FSMOUNT, unix.SYS_FSPICK, // the new mount API
	unix.SYS_MOVE_MOUNT, unix.SYS_OPEN_TREE, unix.SYS_MOUNT_SETATTR,
	unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY, // kernel keyrings: not namespaced
	unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
	unix.SYS_OPEN_BY_HANDLE_AT, unix.SYS_NAME_TO_HANDLE_AT, // file handles walk past mounts
	unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD, unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE,
	unix.SYS_DELETE_MODULE, unix.SYS_REBOOT, unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_ACCT,
	unix.SYS_SYSLOG, unix.SYS_QUOTACTL, unix.SYS_QUOTACTL_FD,
	unix.SYS_FANOTIFY_INIT, unix.SYS_LOOKUP_DCOOKIE,
}, archDenied...)

// enosysSyscalls fail with ENOSYS, as on a kernel without them, so that
// programs fall back to what they did before these existed.
var enosysSyscalls = []uintptr{
	// io_uring runs file and socket operations from kernel threads that
	// this filter never sees, and has been the source of many kernel
	// exploits; libraries fall back to epoll and plain calls.
	unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
	// openat2 takes its mode in memory a filter cannot read (see
	// setidModes); callers fall back to openat.
	unix.SYS_OPENAT2,
	// clone3's flags are in memory too; libc falls back to clone, whose
	// flags are checked.
	unix.SYS_CLONE3,
}

// setidModes is S_ISUID|S_ISGID: a mode argument holding either fails, so
// no task can make a set-user-id or set-group-id file, even as root in a
// writable directory that the host sees (see the README on cmd_dir).
const setidModes = unix.S_ISUID | unix.S_ISGID

// argRule refuses (or, with allow, permits only) some argument values of
// one system call. The arguments it reads are all C ints or modes, which
// the kernel truncates to 32 bits, so comparing the low word is exact.
type argRule struct {
	nr    uintptr
	arg   int      // argument index
	mask  uint32   // refuse when arg&mask != 0 (values unset)
	vals  []uint32 // refuse these values, or with allow, all others
	allow bool
	errno unix.Errno
}

// argRules are checked after the plain denials.
var argRules = append([]argRule{
	// Typing into a terminal (TIOCSTI) and the virtual console's
	// selection paste (TIOCLINUX) push input to whoever reads it: a task
	// must never reach a host terminal, and if it did, must not type.
	{nr: unix.SYS_IOCTL, arg: 1, vals: []uint32{unix.TIOCSTI, unix.TIOCLINUX}, errno: unix.EPERM},
	// vsock is not network-namespaced (it reaches the hypervisor), and
	// AF_ALG exposes the kernel's crypto code to unprivileged callers.
	{nr: unix.SYS_SOCKET, arg: 0, vals: []uint32{unix.AF_VSOCK, unix.AF_ALG}, errno: unix.EPERM},
	// Only the default persona and the query: other personas change the
	// address space layout (READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE...).
	{nr: unix.SYS_PERSONALITY, arg: 0, vals: []uint32{0, 0xffffffff}, allow: true, errno: unix.EPERM},
	{nr: unix.SYS_FCHMOD, arg: 1, mask: setidModes, errno: unix.EPERM},
	{nr: unix.SYS_FCHMODAT, arg: 2, mask: setidModes, errno: unix.EPERM},
	{nr: unix.SYS_FCHMODAT2, arg: 2, mask: setidModes, errno: unix.EPERM},
	{nr: unix.SYS_OPENAT, arg: 3, mask: setidModes, errno: unix.EPERM},
	{nr: unix.SYS_MKNODAT, arg: 2, mask: setidModes, errno: unix.EPERM},
}, archArgRules...)

// cloneNamespaces are clone's flags that make namespaces.
const cloneNamespaces = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// Offsets in struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
	offArg0 = 16 // the low 32 bits on little-endian machines; each argument is 8 bytes
)

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

const (
	ld   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	jge  = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	jset = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	ret  = unix.BPF_RET | unix.BPF_K
)

func retErrno(e unix.Errno) unix.SockFilter {
	return stmt(ret, uint32(unix.SECCOMP_RET_ERRNO)|uint32(e))
}

// block is the check of one argRule's argument; it always returns.
func (r argRule) block() []unix.SockFilter {
	b := []unix.SockFilter{stmt(ld, uint32(offArg0+8*r.arg))}
	allow := stmt(ret, unix.SECCOMP_RET_ALLOW)
	if len(r.vals) == 0 {
		return append(b, jump(jset, r.mask, 0, 1), retErrno(r.errno), allow)
	}
	n := len(r.vals)
	for i, v := range r.vals {
		// A match jumps over the remaining tests and the first return.
		b = append(b, jump(jeq, v, uint8(n-1-i+1), 0))
	}
	if r.allow {
		return append(b, retErrno(r.errno), allow)
	}
	return append(b, allow, retErrno(r.errno))
}

// seccompFilter builds the program. Layout: check the architecture, refuse
// the other ABI (x32), then one test per denied call, then the argument
// checks, then clone's flags, then allow.
func seccompFilter() []unix.SockFilter {
	p := []unix.SockFilter{
		stmt(ld, offArch),
		jump(jeq, auditArch, 1, 0),
		stmt(ret, unix.SECCOMP_RET_KILL_PROCESS), // a foreign ABI: no numbers to trust
		stmt(ld, offNr),
	}
	if otherABI != 0 {
		p = append(p, jump(jge, otherABI, 0, 1), retErrno(unix.EPERM))
	}
	for _, nr := range deniedSyscalls {
		p = append(p, jump(jeq, uint32(nr), 0, 1), retErrno(unix.EPERM))
	}
	for _, nr := range enosysSyscalls {
		p = append(p, jump(jeq, uint32(nr), 0, 1), retErrno(unix.ENOSYS))
	}
	for _, r := range argRules {
		b := r.block()
		p = append(p, jump(jeq, uint32(r.nr), 0, uint8(len(b))))
		p = append(p, b...)
	}
	p = append(p,
		jump(jeq, uint32(unix.SYS_CLONE), 0, 3),
		stmt(ld, offArg0),
		jump(jset, cloneNamespaces, 0, 1), retErrno(unix.EPERM),
		stmt(ret, unix.SECCOMP_RET_ALLOW),
	)
	return p
}

// installSeccomp loads the filter on this thread, the one that execs the
// task; no_new_privs must already be set.
func installSeccomp() error {
	filter := seccompFilter()
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
		return fail("install the seccomp filter", err)
	}
	return nil
}

// SeccompFilter reports whether tasks get the seccomp filter here.
const SeccompFilter = true
