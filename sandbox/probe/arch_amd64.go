//go:build linux

package main

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

func archProbes() []syscallProbe {
	var ldt [16]byte
	return []syscallProbe{
		{"modify_ldt(read)", func() error {
			return raw(unix.SYS_MODIFY_LDT, 0, uintptr(unsafe.Pointer(&ldt[0])), uintptr(len(ldt)))
		}},
		{"iopl", func() error { return raw(unix.SYS_IOPL, 0) }},
	}
}
