//go:build unix

package privdir

import (
	"errors"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Make creates the directory path (and missing parents, mode 0755) if it
// does not exist, walking from / one component at a time with
// O_NOFOLLOW, and checks what it finds:
//
//   - no component may be a symlink (name the real path instead);
//   - every parent must be owned by root or by this process's user, and not
//     be writable by others unless sticky (as /tmp is), so that nobody else
//     can rename or replace what lies beneath;
//   - path itself must be owned by this process's user and writable by
//     nobody else; read and search bits beyond perm are then removed.
//
// A directory that fails a check is refused, never repaired: an error
// matching ErrUnsafe tells what to fix.
func Make(path string, perm fs.FileMode) error {
	if err := checkPath(path); err != nil {
		return err
	}
	euid := uint32(os.Geteuid())
	fd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: "/", Err: err}
	}
	names := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if path == "/" {
		names = nil
	}
	cur := ""
	for i, name := range names {
		last := i == len(names)-1
		cur += "/" + name
		mode := uint32(0o755)
		if last {
			mode = uint32(perm.Perm())
		}
		next, err := openDir(fd, name)
		if errors.Is(err, unix.ENOENT) {
			if err = unix.Mkdirat(fd, name, mode); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(fd)
				return &fs.PathError{Op: "mkdir", Path: cur, Err: err}
			}
			next, err = openDir(fd, name)
		}
		unix.Close(fd)
		switch {
		case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
			// O_NOFOLLOW fails with ELOOP on a symlink; ENOTDIR means a file.
			return refuse(cur, "is a symlink or not a directory; symlinks are not followed here, so name the real directory (or remove what is there)")
		case err != nil:
			return &fs.PathError{Op: "open", Path: cur, Err: err}
		}
		fd = next
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return &fs.PathError{Op: "stat", Path: cur, Err: err}
		}
		if err := check(cur, &st, last, euid, perm); err != nil {
			unix.Close(fd)
			return err
		}
		if last && uint32(st.Mode)&0o7777&^uint32(perm.Perm()) != 0 {
			// Ours, and nobody else can write it: only readable by more
			// than perm allows. Tighten it, through the fd just checked.
			if err := unix.Fchmod(fd, uint32(perm.Perm())); err != nil {
				unix.Close(fd)
				return &fs.PathError{Op: "chmod", Path: cur, Err: err}
			}
		}
	}
	unix.Close(fd)
	return nil
}

func openDir(dirfd int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

func check(path string, st *unix.Stat_t, last bool, euid uint32, perm fs.FileMode) error {
	m := uint32(st.Mode)
	if last {
		if st.Uid != euid {
			return refuse(path, "is owned by uid %d, not by this process's uid %d; remove it, or chown it if it is really ours", st.Uid, euid)
		}
		if m&0o022 != 0 || m&(unix.S_ISUID|unix.S_ISGID) != 0 {
			return refuse(path, "has mode %04o: others could change what is in it; run chmod %o on it", m&0o7777, perm.Perm())
		}
		return nil
	}
	if st.Uid != 0 && st.Uid != euid {
		return refuse(path, "is owned by uid %d, neither root nor this process's uid %d, so its owner could swap what lies beneath; choose a directory under a trusted one", st.Uid, euid)
	}
	if m&0o022 != 0 && m&unix.S_ISVTX == 0 {
		return refuse(path, "is writable by other users (mode %04o) and not sticky, so anyone could swap what lies beneath; run chmod go-w on it or choose another place", m&0o7777)
	}
	return nil
}
