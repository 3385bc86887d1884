package redisserver

import "syscall"

// procAttr asks the kernel to kill redis-server when the test binary dies,
// so an interrupted or crashed test run leaves no servers behind.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
