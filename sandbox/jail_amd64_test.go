//go:build linux

package sandbox_test

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

const archSyscallsWant = "modify_ldt operation not permitted\n"

// archSyscalls tries the x86-only calls the filter refuses.
func archSyscalls(report func(string, error)) {
	var buf [16]byte
	_, _, e := unix.Syscall(unix.SYS_MODIFY_LDT, 0, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
	report("modify_ldt", errnoOrNil(e))
}
