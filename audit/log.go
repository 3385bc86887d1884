package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Options tune a Log. The zero value is usable.
type Options struct {
	// SyncInterval is the longest a written record waits for fsync
	// (default 100ms): what a host power loss can lose.
	SyncInterval time.Duration
	// SyncEvery starts an fsync early once this many records are pending
	// (default 1000).
	SyncEvery int
	// MaxBytes rotates the file once it has grown to this size; 0 = never.
	MaxBytes int64
	// Executor fills Record.Executor when a record leaves it empty.
	Executor string
	// Now replaces time.Now, for tests.
	Now func() time.Time
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit: the log is closed")

// WriteError is why a Log failed. Unwrap gives the system error, so
// errors.Is(err, syscall.ENOSPC) works.
type WriteError struct {
	Path string
	Op   string // "write", "sync", "open", "rotate", "check"
	Err  error
}

func (e *WriteError) Error() string {
	return fmt.Sprintf("audit: cannot %s %s: %v; tasks are not started until the audit log can be written", e.Op, e.Path, unwrapPath(e.Err))
}

func (e *WriteError) Unwrap() error { return e.Err }

// unwrapPath drops the *PathError wrapping so the path is not said twice.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Log is an open audit log. Its methods are safe for concurrent use.
type Log struct {
	path string
	opts Options

	mu       sync.Mutex
	f        *os.File
	gen      uint64 // bumped whenever f is replaced by Reopen
	size     int64
	firstSeq uint64 // seq of the first record in the current file, 0 if none
	seq      uint64 // last seq written
	prev     string // hash of the last record written
	err      error  // sticky failure
	failedAt time.Time
	refused  int // appends refused while failed
	pending  int // records written since the last fsync was started
	retired  []*os.File
	lock     *os.File // the one-writer lock, held until Close
	dirSync  bool
	closed   bool
	closing  bool
	buf      []byte

	syncMu sync.Mutex // serialises fsync rounds, so Sync waits for one in flight
	syncs  atomic.Int64
	kick   chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup
}

// Open opens (creating it if needed) the audit log at path and continues
// its chain from the last record found there, or in its newest rotated
// file. A torn last line left by a crash is terminated and an "executor"
// record with event "recovered" describes it.
func Open(path string, opts Options) (*Log, error) {
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = 100 * time.Millisecond
	}
	if opts.SyncEvery <= 0 {
		opts.SyncEvery = 1000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	lock, err := lockWriter(path)
	if err != nil {
		return nil, err
	}
	l := &Log{path: path, opts: opts, prev: ZeroHash, kick: make(chan struct{}, 1), done: make(chan struct{}), lock: lock}
	l.mu.Lock()
	err = l.openLocked("")
	l.mu.Unlock()
	if err != nil {
		if l.f != nil {
			l.f.Close()
		}
		lock.Close()
		return nil, err
	}
	l.wg.Add(1)
	go l.syncLoop()
	return l, nil
}

// openLocked (re)reads the chain's state from disk, opens the current file
// and writes what must come first: the end of a torn line, a rotate record
// when the current file is new after a rotation, and a "recovered" record
// when note is set or a tear was found.
func (l *Log) openLocked(note string) error {
	st, err := readFileState(l.path)
	if err != nil {
		return err
	}
	var prevFile string
	if st.lastSeq == 0 && st.tornLen == 0 {
		// Empty or missing: continue from the newest rotated file, if any.
		files, err := chainFiles(l.path)
		if err != nil {
			return err
		}
		for i := len(files) - 1; i >= 0; i-- {
			if files[i].Rotated {
				rst, err := readFileState(files[i].Path)
				if err != nil {
					return err
				}
				if rst.tornLen > 0 {
					return fmt.Errorf("audit: rotated file %s ends with a torn line; the chain cannot be continued", files[i].Path)
				}
				st.lastSeq, st.lastHash = rst.lastSeq, rst.lastHash
				prevFile = filepath.Base(files[i].Path)
				break
			}
		}
	}
	if l.seq > st.lastSeq && st.tornLen == 0 {
		// Reopen after the file was removed or replaced: what is on disk is
		// behind what this process wrote, so continue the chain we know
		// rather than start a second one; the mirror holds the rest.
		gone := fmt.Sprintf("%s was removed or replaced: records up to seq %d are missing from it (the mirror stream has them); the chain continues from seq %d", filepath.Base(l.path), l.seq, l.seq)
		if note != "" {
			note += "; " + gone
		} else {
			note = gone
		}
		st = fileState{size: st.size, firstSeq: st.firstSeq, lastSeq: l.seq, lastHash: l.prev}
		prevFile = ""
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return &WriteError{Path: l.path, Op: "open", Err: err}
	}
	l.f = f
	l.gen++
	l.size = st.size
	l.firstSeq = st.firstSeq
	l.seq = st.lastSeq
	l.prev = ZeroHash
	if st.lastHash != "" {
		l.prev = st.lastHash
	}
	l.dirSync = true
	l.err = nil
	if st.tornLen > 0 {
		n, err := f.Write([]byte{'\n'})
		l.size += int64(n)
		if err != nil {
			return &WriteError{Path: l.path, Op: "write", Err: err}
		}
	}
	if st.tornLen > 0 && !st.tornWhole {
		tear := fmt.Sprintf("the last line of %s was torn (%d bytes at offset %d without a newline, left by a crash or a failed write); it is not part of the chain, which continues from seq %d",
			filepath.Base(l.path), st.tornLen, st.tornStart, st.lastSeq)
		if note != "" {
			note += "; " + tear
		} else {
			note = tear
		}
	}
	if prevFile != "" && l.size == 0 {
		body, err := encodeBody(&Record{Kind: KindRotate, Time: l.opts.Now().UTC(), Executor: l.opts.Executor, PrevFile: prevFile})
		if err != nil {
			return err
		}
		if err := l.writeLocked(body, false); err != nil {
			return err
		}
	}
	if note != "" {
		body, err := encodeBody(&Record{Kind: KindExecutor, Event: EventRecovered, Time: l.opts.Now().UTC(), Executor: l.opts.Executor, Reason: note})
		if err != nil {
			return err
		}
		if err := l.writeLocked(body, false); err != nil {
			return err
		}
	}
	return nil
}

// Path returns the log's file name.
func (l *Log) Path() string { return l.path }

// Append writes r as the next record. It returns once the line has been
// written to the file (not yet fsynced; see the package doc). Seq, Prev and
// Hash are assigned here; Time is set to now when zero, and made UTC.
//
// After a write or fsync failure every Append returns the failure until
// Healthy or Reopen succeeds.
func (l *Log) Append(r Record) error {
	if r.Kind == "" {
		return errors.New("audit: a record needs a kind")
	}
	if r.Kind == KindRotate {
		return errors.New("audit: rotate records are written by the log itself")
	}
	if r.Time.IsZero() {
		r.Time = l.opts.Now()
	}
	r.Time = r.Time.UTC()
	if r.Executor == "" {
		r.Executor = l.opts.Executor
	}
	body, err := encodeBody(&r)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.err != nil {
		l.refused++
		return l.err
	}
	return l.writeLocked(body, true)
}

// writeLocked writes one record, rotating first when the file is full.
func (l *Log) writeLocked(body []byte, mayRotate bool) error {
	if mayRotate && l.opts.MaxBytes > 0 && l.size >= l.opts.MaxBytes && l.firstSeq != 0 {
		if err := l.rotateLocked(); err != nil {
			return l.failLocked(err)
		}
	}
	line, h := appendLine(l.buf[:0], body, l.seq+1, l.prev)
	if cap(line) <= 64<<10 {
		l.buf = line
	}
	n, err := l.f.Write(line)
	if err != nil && n > 0 && l.f.Truncate(l.size) == nil {
		n = 0 // the part written is cut off again, so no torn line is left
	}
	l.size += int64(n)
	if err != nil {
		return l.failLocked(&WriteError{Path: l.path, Op: "write", Err: err})
	}
	l.seq++
	l.prev = h
	if l.firstSeq == 0 {
		l.firstSeq = l.seq
	}
	l.pending++
	if l.pending >= l.opts.SyncEvery {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// rotateLocked renames the current file and starts a new one whose first
// record links back to it. The old file is fsynced and closed by the next
// fsync round.
func (l *Log) rotateLocked() error {
	name := rotatedName(l.path, l.firstSeq, l.seq, l.opts.Now())
	if err := os.Rename(l.path, name); err != nil {
		return &WriteError{Path: l.path, Op: "rotate", Err: err}
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		// Reopen finds the renamed file and continues from it.
		return &WriteError{Path: l.path, Op: "rotate", Err: err}
	}
	l.retired = append(l.retired, l.f)
	l.f = f
	l.size = 0
	l.firstSeq = 0
	l.dirSync = true
	body, err := encodeBody(&Record{Kind: KindRotate, Time: l.opts.Now().UTC(), Executor: l.opts.Executor, PrevFile: filepath.Base(name)})
	if err != nil {
		return err
	}
	return l.writeLocked(body, false)
}

func (l *Log) failLocked(err error) error {
	if l.err == nil {
		l.err = err
		l.failedAt = l.opts.Now()
	}
	return l.err
}

// Err returns the failure that stops Append, or nil.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Seq returns the seq of the last record written.
func (l *Log) Seq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

// Syncs returns how many fsync rounds have run, for benchmarks and metrics.
func (l *Log) Syncs() int64 { return l.syncs.Load() }

// Healthy returns nil when the log can be written. A failed log is reopened
// and, once that works, a "recovered" record notes the gap; the executor
// polls Healthy while it refuses to start tasks.
func (l *Log) Healthy() error {
	if err := l.Err(); err == nil {
		return nil
	}
	return l.Reopen()
}

// Reopen closes the current file and opens the log again from what is on
// disk, clearing a failure when that works. Use it after the file was
// moved aside or the disk was repaired.
func (l *Log) Reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	var note string
	if l.err != nil {
		note = fmt.Sprintf("the audit log could not be written from %s to %s (%v); %d appends were refused in that time",
			l.failedAt.UTC().Format(time.RFC3339Nano), l.opts.Now().UTC().Format(time.RFC3339Nano), unwrapWrite(l.err), l.refused)
	}
	failed, failedAt, refused := l.err, l.failedAt, l.refused
	if l.f != nil {
		l.f.Close() // errors here are what got us here
		l.f = nil
	}
	if err := l.openLocked(note); err != nil {
		if l.f != nil {
			l.f.Close()
			l.f = nil
		}
		// Still failed: keep the original failure time and count.
		l.err, l.failedAt, l.refused = err, failedAt, refused
		if failed == nil {
			l.failedAt = l.opts.Now()
		}
		var we *WriteError
		if !errors.As(err, &we) {
			l.err = &WriteError{Path: l.path, Op: "open", Err: err}
		}
		return l.err
	}
	l.refused = 0
	return nil
}

func unwrapWrite(err error) error {
	var we *WriteError
	if errors.As(err, &we) {
		return fmt.Errorf("%s: %v", we.Op, unwrapPath(we.Err))
	}
	return err
}

// Sync fsyncs everything written so far and returns once it is durable.
func (l *Log) Sync() error { return l.syncRound(true) }

func (l *Log) syncLoop() {
	defer l.wg.Done()
	t := time.NewTicker(l.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		case <-l.kick:
		}
		_ = l.syncRound(false)
	}
}

// syncRound fsyncs retired (rotated) files, the directory after a rename
// or create, and the current file when something was written or force is
// set. It also notices the file being removed or replaced under us.
func (l *Log) syncRound(force bool) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	f, gen, retired, dirSync, pending, failed := l.f, l.gen, l.retired, l.dirSync, l.pending, l.err
	l.retired, l.dirSync, l.pending = nil, false, 0
	l.mu.Unlock()
	if failed != nil && !force {
		for _, r := range retired {
			r.Close()
		}
		return failed
	}
	var firstErr error
	fail := func(op string, err error) {
		if firstErr == nil {
			firstErr = &WriteError{Path: l.path, Op: op, Err: err}
		}
	}
	for _, r := range retired {
		if err := r.Sync(); err != nil {
			fail("sync", err)
		}
		r.Close()
	}
	if dirSync {
		if d, err := os.Open(filepath.Dir(l.path)); err == nil {
			if err := d.Sync(); err != nil {
				fail("sync the directory of", err)
			}
			d.Close()
		}
	}
	if f != nil && (pending > 0 || force) {
		l.syncs.Add(1)
		if err := f.Sync(); err != nil {
			fail("sync", err)
		}
	}
	if f != nil && firstErr == nil {
		// A file removed or replaced by someone else would swallow records.
		// Checked under mu so that our own rotation cannot look like it.
		l.mu.Lock()
		if l.f == f {
			fi, err1 := f.Stat()
			pi, err2 := os.Stat(l.path)
			if err1 == nil && (err2 != nil || !os.SameFile(fi, pi)) {
				fail("write", errors.New("the file was removed or replaced by another program (only the built-in rotation may move it)"))
			}
		}
		l.mu.Unlock()
	}
	if firstErr != nil {
		l.mu.Lock()
		if l.gen == gen && !l.closed {
			l.failLocked(firstErr)
		}
		err := l.err
		l.mu.Unlock()
		if err == nil {
			return nil // the file was reopened meanwhile; its own round will tell
		}
		return err
	}
	return failed
}

// Close syncs and closes the log. Later Appends return ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closing = true
	l.mu.Unlock()
	close(l.done)
	l.wg.Wait()
	err := l.syncRound(true)
	l.mu.Lock()
	l.closed = true
	if l.f != nil {
		if cerr := l.f.Close(); cerr != nil && err == nil {
			err = &WriteError{Path: l.path, Op: "close", Err: cerr}
		}
		l.f = nil
	}
	l.lock.Close()
	l.mu.Unlock()
	return err
}
