//go:build !unix

package jail

import "io/fs"

// permsChecked says whether files carry Unix owners and permission bits, so rule 5 applies. Here
// they do not: access is governed by ACLs, which this package does not interpret.
const permsChecked = false

func fileOwner(fs.FileInfo) (int, bool) { return 0, false }

// defaultInterpreters is empty: there is no /bin/bash to default to.
func defaultInterpreters() map[string]string { return map[string]string{} }
