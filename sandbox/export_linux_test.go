package sandbox

import "os"

// SetAfterSpecSent lets a test act between the send of a task's setup to a
// pre-started helper and the read of its status; nil restores the default.
func SetAfterSpecSent(f func(sock *os.File)) { afterSpecSent = f }
