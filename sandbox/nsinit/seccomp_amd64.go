//go:build linux

package nsinit

import "golang.org/x/sys/unix"

const (
	auditArch = unix.AUDIT_ARCH_X86_64
	// otherABI: x32 system calls carry this bit and share the x86-64
	// architecture value; they are refused as a whole.
	otherABI = 0x40000000
)
