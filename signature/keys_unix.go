//go:build unix

package signature

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// openKeyFile opens without blocking on a FIFO someone left in the key
// directory; the caller checks the opened file, not the name, so a
// symbolic link (as in a Kubernetes secret volume) is judged by its target.
func openKeyFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("signature: open key file: %w", err)
	}
	return f, nil
}

// checkPrivate checks the key directory itself.
func checkPrivateDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("signature: key directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("signature: key directory %s is not a directory", dir)
	}
	return checkModeOwner(fi, "key directory", dir)
}

func checkPrivateFile(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("signature: key file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("signature: key file %s is not a regular file (%v); the key directory should hold only key files", path, fi.Mode().Type())
	}
	return checkModeOwner(fi, "key file", path)
}

func checkModeOwner(fi fs.FileInfo, what, path string) error {
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("signature: %s %s has mode %04o: group and others must have no access to secrets; run chmod go= %s", what, path, perm, path)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("signature: %s %s: cannot read its owner", what, path)
	}
	if uid := int(st.Uid); uid != 0 && uid != os.Geteuid() {
		return fmt.Errorf("signature: %s %s is owned by uid %d, neither root nor this process's user (uid %d); another user could replace the secret", what, path, uid, os.Geteuid())
	}
	return nil
}
