// Package privdir creates the executor's private directories (its state
// directory, spool and task work directories) without following symlinks
// and refuses directories that someone else could change: a predictable path
// in a shared place such as /tmp must not let a local user redirect where a
// root process deletes or writes files.
package privdir

import (
	"errors"
	"fmt"
	"path/filepath"
)

// ErrUnsafe is matched (errors.Is) by every refusal of Make.
var ErrUnsafe = errors.New("privdir: unsafe directory")

// unsafeError says what is wrong with which path, and what to do.
type unsafeError struct{ path, why string }

func (e *unsafeError) Error() string { return e.path + ": " + e.why }
func (e *unsafeError) Is(target error) bool {
	return target == ErrUnsafe
}

func refuse(path, format string, args ...any) error {
	return &unsafeError{path, fmt.Sprintf(format, args...)}
}

// checkPath accepts clean absolute paths only: what is checked is then
// exactly what is used.
func checkPath(path string) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return refuse(path, "not a clean absolute path; write it in full, without .., // or a trailing slash")
	}
	return nil
}
