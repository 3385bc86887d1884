//go:build !(linux || darwin || freebsd)

package executor

// freeBytes cannot tell the free space here: the cmd_dir_min_free guard is
// off on this system.
func freeBytes(string) (int64, bool) { return 0, false }
