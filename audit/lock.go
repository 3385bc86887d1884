package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, &WriteError{Path: name, Op: "open", Err: err}
	}
	if err := lockFile(f); err != nil {
		b, _ := os.ReadFile(name)
		f.Close()
		holder := strings.TrimSpace(string(b))
		if holder == "" {
			holder = "another process"
		}
		return nil, fmt.Errorf("%w: %s is being written by %s (lock %s); give each executor its own audit_file",
			ErrLocked, path, holder, name)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte("pid "+strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
