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

// LinesOf is a copy of a log held elsewhere than in files (a Redis stream),
// as its name and a walk over its lines in chain order, each complete.
// ReadCopy and VerifyCopy may walk it more than once.
type LinesOf struct {
	Name string
	Walk func(fn func(n int, line []byte) error) error
}

func (c LinesOf) chain() []chainFile { return []chainFile{{Path: c.Name}} }

func (c LinesOf) lines(fn func(n int, line []byte, complete bool) error) error {
	return c.Walk(func(n int, line []byte) error { return fn(n, line, true) })
}

// ReadCopy is Read over a copy of a log.
func ReadCopy(c LinesOf, f Filter, fn func(Record) error) error {
	return read(c.chain(), func(_ chainFile, fn func(n int, line []byte, complete bool) error) error { return c.lines(fn) }, f, fn)
}

// VerifyCopy is Verify over a copy of a log: each line's hash, the prev
// links and the seqs, from its first record on (a copy has no rotated
// files, so no rotate record is looked for).
func VerifyCopy(c LinesOf) (Report, error) {
	return verify(c.chain(), func(_ chainFile, fn func(n int, line []byte, complete bool) error) error { return c.lines(fn) })
}
