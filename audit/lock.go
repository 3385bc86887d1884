package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/taskjob/task-job/internal/pidlock"
)

// ErrLocked: another process writes this audit log. Two writers would
// interleave their chains and break it at once.
var ErrLocked = errors.New("audit: the log has another writer")

// lockWriter takes the lock that makes this process the log's one writer:
// an exclusive lock on ".<name>.lock" beside it (hidden, and outside the
// "<name>.*" pattern of rotated files), which holds the writer's pid for
// the error a second writer gets. The kernel releases it however the process
// ends.
func lockWriter(path string) (*os.File, error) {
	dir, base := filepath.Split(path)
	name := filepath.Join(dir, "."+base+".lock")
	f, err := pidlock.Lock(name)
	var held *pidlock.HeldError
	switch {
	case errors.As(err, &held):
		holder := held.Holder
		if holder == "" {
			holder = "another process"
		}
		return nil, fmt.Errorf("%w: %s is being written by %s (lock %s); give each executor its own audit_file",
			ErrLocked, path, holder, name)
	case err != nil:
		return nil, &WriteError{Path: name, Op: "open", Err: err}
	}
	return f, nil
}
