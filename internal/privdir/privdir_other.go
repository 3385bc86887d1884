//go:build !unix

package privdir

import (
	"io/fs"
	"os"
)

// Make creates path and its parents. Without Unix ownership and mode bits
// there is nothing more to check; the path must still be clean and
// absolute.
func Make(path string, perm fs.FileMode) error {
	if err := checkPath(path); err != nil {
		return err
	}
	return os.MkdirAll(path, perm)
}
