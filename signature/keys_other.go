//go:build !unix

package signature

import (
	"fmt"
	"os"
)

// On systems without Unix permissions (Windows) the mode bits Go reports
// say nothing about who may read a file, so no check is made: the key
// directory's ACL is the administrator's to set.

func openKeyFile(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("signature: open key file: %w", err)
	}
	return f, nil
}

func checkPrivateDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("signature: key directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("signature: key directory %s is not a directory", dir)
	}
	return nil
}

func checkPrivateFile(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("signature: key file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("signature: key file %s is not a regular file", path)
	}
	return nil
}
