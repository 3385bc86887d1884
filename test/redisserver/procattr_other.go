//go:build !linux

package redisserver

import "syscall"

// procAttr has no parent-death signal outside Linux; servers are still
// stopped by t.Cleanup in a normal run.
func procAttr() *syscall.SysProcAttr { return nil }
