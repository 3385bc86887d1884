package executor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/taskjob/task-job/internal/pidlock"
)

// ErrIdentityHeld: another process on this host holds the executor id.
var ErrIdentityHeld = errors.New("executor: executor id is held by another process on this host")

// Identity is the host-local lock on one executor id. The cgroup parent,
// the spool and the /etc copy of an executor are named after its id, and
// an executor cleans what a previous run of its id left in them at start:
// so only the holder of this lock may touch them. Take it before anything
// else; it is released by Close, or by the kernel however the process ends.
type Identity struct {
	f    *os.File
	path string
}

// Path is the lock file.
func (l *Identity) Path() string { return l.path }

// LockIdentity takes the lock of executor id in dir (created 0700 if
// missing; the executor uses /run/task-job). It does not wait: when another
// live process holds it, the error wraps ErrIdentityHeld and names that
// process's pid, at once.
func LockIdentity(dir, id string) (*Identity, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("executor: create the state directory for the executor id lock: %w", err)
	}
	path := filepath.Join(dir, "executor-"+strings.ReplaceAll(id, "/", "_")+".lock")
	f, err := pidlock.Lock(path)
	var held *pidlock.HeldError
	switch {
	case errors.As(err, &held):
		holder := held.Holder
		if holder == "" {
			holder = "a process that has not written its pid yet"
		}
		return nil, fmt.Errorf("%w: executor_id %q is in use by %s (lock %s); give each executor on a host its own executor_id, or stop the other one",
			ErrIdentityHeld, id, holder, path)
	case err != nil:
		return nil, fmt.Errorf("executor: open the executor id lock: %w", err)
	}
	return &Identity{f: f, path: path}, nil
}

// Close releases the lock. The file stays: removing it would let a third
// process lock a new file while a second still waits on the old one.
func (l *Identity) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
