//go:build linux

package nsinit

import "golang.org/x/sys/unix"

const (
	auditArch = unix.AUDIT_ARCH_AARCH64
	otherABI  = 0
)

// arm64 has neither the x86 calls nor the legacy path calls.
var (
	archDenied   []uintptr
	archArgRules []argRule
)
