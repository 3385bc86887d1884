//go:build unix

package pidlock

import (
	"os"

	"golang.org/x/sys/unix"
)

// lockFile takes an exclusive flock without waiting. A flock belongs to the
// open file, so even a second open in the same process is refused.
func lockFile(f *os.File) error { return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) }
