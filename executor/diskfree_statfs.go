//go:build linux || darwin || freebsd

package executor

import "golang.org/x/sys/unix"

// freeBytes returns the space an unprivileged user may still write on the
// file system holding path; ok is false when it cannot be told.
func freeBytes(path string) (free int64, ok bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}
