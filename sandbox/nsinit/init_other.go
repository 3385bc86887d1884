//go:build !linux

package nsinit

import (
	"fmt"
	"os"
	"runtime"
)

// Main exists so the helper builds everywhere; only Linux has the
// namespaces it sets up.
func Main() {
	fmt.Fprintf(os.Stderr, "task-job-init: the sandbox setup step runs only on Linux, not %s\n", runtime.GOOS)
	os.Exit(127)
}
