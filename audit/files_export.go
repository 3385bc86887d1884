package audit

// What a copy of the log elsewhere (audit/redismirror) needs to read the
// log's files as Verify does.

// ChainFile is one file of a log: a rotated one or the current one.
type ChainFile = chainFile

// ChainFiles lists the files of the log at base in chain order: rotated
// files by first seq, then the current file if it exists.
func ChainFiles(base string) ([]ChainFile, error) { return chainFiles(base) }

// Lines calls fn for each line of path (without '\n'), with its 1-based
// number; a last line without '\n' is passed with complete=false.
func Lines(path string, fn func(n int, line []byte, complete bool) error) error {
	return lines(path, fn)
}
