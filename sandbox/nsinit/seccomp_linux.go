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

// deniedSyscalls fail with EPERM.
var deniedSyscalls = []uintptr{
	unix.SYS_UNSHARE, unix.SYS_SETNS, // new or other namespaces
	unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, // the filesystem view
	unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY, // kernel keyrings: not namespaced
	unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
	unix.SYS_OPEN_BY_HANDLE_AT, unix.SYS_NAME_TO_HANDLE_AT, // file handles walk past mounts
	unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD, unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE,
	unix.SYS_DELETE_MODULE, unix.SYS_REBOOT, unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_ACCT,
	unix.SYS_SYSLOG, unix.SYS_QUOTACTL,
}

// cloneNamespaces are clone's flags that make namespaces.
const cloneNamespaces = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// Offsets in struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
	offArg0 = 16 // the low 32 bits on little-endian machines
)

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

// seccompFilter builds the program. Layout: check the architecture, refuse
// the other ABI (x32), then one test per denied call, then clone's flags,
// clone3 (whose flags sit in memory a filter cannot read: ENOSYS makes
// libc fall back to clone), then allow.
func seccompFilter() []unix.SockFilter {
	const (
		ld   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge  = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		jset = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
	)
	eperm := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	enosys := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))
	p := []unix.SockFilter{
		stmt(ld, offArch),
		jump(jeq, auditArch, 1, 0),
		stmt(ret, unix.SECCOMP_RET_KILL_PROCESS), // a foreign ABI: no numbers to trust
		stmt(ld, offNr),
	}
	if otherABI != 0 {
		p = append(p, jump(jge, otherABI, 0, 1), stmt(ret, eperm))
	}
	for _, nr := range deniedSyscalls {
		p = append(p, jump(jeq, uint32(nr), 0, 1), stmt(ret, eperm))
	}
	p = append(p,
		jump(jeq, uint32(unix.SYS_CLONE3), 0, 1), stmt(ret, enosys),
		jump(jeq, uint32(unix.SYS_CLONE), 0, 3),
		stmt(ld, offArg0),
		jump(jset, cloneNamespaces, 0, 1), stmt(ret, eperm),
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
