//go:build unix

package jail

import (
	"io/fs"
	"syscall"
)

// permsChecked says whether files carry Unix owners and permission bits, so rule 5 applies.
const permsChecked = true

// fileOwner returns the uid that owns fi.
func fileOwner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

func defaultInterpreters() map[string]string {
	return map[string]string{"bash": "/bin/bash", "sh": "/bin/sh"}
}
