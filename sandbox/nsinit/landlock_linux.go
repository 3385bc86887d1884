package nsinit

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Landlock is a second wall behind the mount namespace: even if a mount
// were left writable by mistake, the task may write only beneath its own
// places (its work dir, /tmp, /dev/shm, cmd_dir for a cmd_dir_writable
// rule) and write to existing files under /dev and /proc (/dev/null, its
// own /proc/self entries). Reads and execution stay the mount namespace's
// business: Landlock is asked to handle only the rights that change the
// filesystem.

const (
	llWriteV1 = unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR |
		unix.LANDLOCK_ACCESS_FS_REMOVE_FILE | unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR |
		unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_MAKE_SOCK | unix.LANDLOCK_ACCESS_FS_MAKE_FIFO |
		unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK | unix.LANDLOCK_ACCESS_FS_MAKE_SYM
)

// LandlockABI returns the kernel's Landlock ABI version, 0 without one
// (not built in, or not enabled at boot).
func LandlockABI() int {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0
	}
	return int(v)
}

// rulesetAttr is struct landlock_ruleset_attr as ABI 1 has it; later
// fields are left out, which every later kernel accepts.
type rulesetAttr struct{ handledAccessFS uint64 }

// RestrictWrites confines this thread (and what it execs) to writing
// beneath dirs, and to writing existing files beneath files. It reports
// whether Landlock is on; on a kernel without it, it does nothing.
func RestrictWrites(dirs, files []string) (bool, error) {
	abi := LandlockABI()
	if abi == 0 {
		return false, nil
	}
	handled := uint64(llWriteV1)
	if abi >= 2 {
		handled |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	write := uint64(unix.LANDLOCK_ACCESS_FS_WRITE_FILE)
	if abi >= 3 {
		handled |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
		write |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	attr := rulesetAttr{handledAccessFS: handled}
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if errno != 0 {
		return false, fail("create the Landlock ruleset", errno)
	}
	defer unix.Close(int(fd))
	add := func(path string, access uint64) error {
		p, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT {
			return nil // not in this view (chroot mode has no /dev)
		}
		if err != nil {
			return fail("open "+path+" for Landlock", err)
		}
		defer unix.Close(p)
		rule := unix.LandlockPathBeneathAttr{Allowed_access: access, Parent_fd: int32(p)}
		if _, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, fd, unix.LANDLOCK_RULE_PATH_BENEATH,
			uintptr(unsafe.Pointer(&rule)), 0, 0, 0); errno != 0 {
			return fail("add the Landlock rule for "+path, errno)
		}
		return nil
	}
	for _, d := range dirs {
		if err := add(d, handled); err != nil {
			return false, err
		}
	}
	for _, f := range files {
		if err := add(f, write); err != nil {
			return false, err
		}
	}
	if _, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, 0, 0); errno != 0 {
		return false, fail("enforce the Landlock ruleset", errno)
	}
	return true, nil
}

// landlock applies RestrictWrites for the task c describes, in its root.
func landlock(c *Config) error {
	var dirs []string
	if c.TaskDirAt != "" {
		dirs = append(dirs, c.TaskDirAt)
	}
	files := []string{"/dev", "/proc"}
	if c.RootMode != RootChroot {
		if c.CmdDir != "/tmp" || c.CmdDirWritable {
			dirs = append(dirs, "/tmp") // else cmd_dir is there, read-only
		}
		dirs = append(dirs, "/dev/shm")
		if c.CmdDirWritable {
			dirs = append(dirs, c.CmdDir)
		}
	}
	_, err := RestrictWrites(dirs, files)
	return err
}
