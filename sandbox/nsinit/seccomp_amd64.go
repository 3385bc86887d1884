//go:build linux

package nsinit

import "golang.org/x/sys/unix"

const (
	auditArch = unix.AUDIT_ARCH_X86_64
	// otherABI: x32 system calls carry this bit and share the x86-64
	// architecture value; they are refused as a whole.
	otherABI = 0x40000000
)

// archDenied are the x86-only calls refused outright: modify_ldt installs
// 16-bit segments, a path to several kernel bugs and needed only by old
// emulators; iopl and ioperm reach I/O ports.
var archDenied = []uintptr{unix.SYS_MODIFY_LDT, unix.SYS_IOPL, unix.SYS_IOPERM}

// archArgRules are the legacy calls that take a mode (see setidModes).
var archArgRules = []argRule{
	{nr: unix.SYS_CHMOD, arg: 1, mask: setidModes, errno: unix.EPERM},
	{nr: unix.SYS_OPEN, arg: 2, mask: setidModes, errno: unix.EPERM},
	{nr: unix.SYS_CREAT, arg: 1, mask: setidModes, errno: unix.EPERM},
	{nr: unix.SYS_MKNOD, arg: 1, mask: setidModes, errno: unix.EPERM},
}
