// Package pidlock is a lock file held by the one process doing a job that
// must have one doer (an executor id on a host, an audit log's writer),
// with that process's pid written in it for whoever is refused.
package pidlock

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// HeldError says that another open file holds the lock, and who wrote it.
type HeldError struct {
	Path string
	// Holder is what the holder wrote ("pid N"), "" when it has not yet.
	Holder string
}

func (e *HeldError) Error() string {
	h := e.Holder
	if h == "" {
		h = "a process that has not written its pid yet"
	}
	return fmt.Sprintf("pidlock: %s is held by %s", e.Path, h)
}

// ErrHeld matches every *HeldError with errors.Is.
var ErrHeld = errors.New("pidlock: held by another process")

func (e *HeldError) Is(target error) bool { return target == ErrHeld }

// Lock opens path (created with mode 0600) and locks it without waiting:
// the lock belongs to the open file, so even a second Lock in the same
// process is refused, with a *HeldError. It is released when the returned
// file is closed, or the process ends. The file stays: removing it would
// let a third process lock a new file while a second still waits on the old.
func Lock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := lockFile(f); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		return nil, &HeldError{Path: path, Holder: strings.TrimSpace(string(b))}
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte("pid "+strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
