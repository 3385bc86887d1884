package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// A mirror copies each line of the local file, the source of truth, to a
// store elsewhere (a Redis stream, a Kafka topic: audit/redismirror,
// audit/kafkamirror), so that a tail rewritten with recomputed hashes, or
// a log removed, differs from the copy. It reads the file, not the Log,
// so it never slows Append; it follows rotations, and after an outage or
// a restart it resumes after the newest seq the store holds.

// MirrorStore is where a Mirror copies to. Its lines carry their seqs, so
// a copy is idempotent: the store keeps the seq order.
type MirrorStore interface {
	// Resume returns the newest seq the store holds of this log (0 when
	// none), or an error when the store holds another log's records.
	Resume(ctx context.Context) (uint64, error)
	// Append stores lines, whose seqs grow, in order, and returns how
	// many of them, from the first, are known stored.
	Append(ctx context.Context, lines []MirrorLine) (int, error)
	// Name names the store in messages ("the mirror stream audit:host-a").
	Name() string
}

// MirrorLine is one line of the log, as stored, with its seq.
type MirrorLine struct {
	Seq  uint64
	Line []byte
}

// MirrorOptions tune a Mirror. The zero value is usable.
type MirrorOptions struct {
	// PollInterval is how often the file is checked for new lines (50ms).
	PollInterval time.Duration
	// RetryInterval is the wait after a store error before resuming (1s).
	RetryInterval time.Duration
	// OnError, when set, is told of each error (store unreachable, the
	// store ahead of the local log…); the mirror keeps retrying.
	OnError func(error)
}

// Mirror copies an audit log to a MirrorStore in the background.
type Mirror struct {
	base  string
	store MirrorStore
	opts  MirrorOptions

	mirrored atomic.Uint64
	errMu    sync.Mutex
	err      error
	cancel   context.CancelFunc
	done     chan struct{}
}

// StartMirror starts copying the log at basePath to store.
func StartMirror(basePath string, store MirrorStore, opts MirrorOptions) *Mirror {
	if opts.PollInterval <= 0 {
		opts.PollInterval = 50 * time.Millisecond
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mirror{base: basePath, store: store, opts: opts, cancel: cancel, done: make(chan struct{})}
	go m.run(ctx)
	return m
}

// Mirrored returns the last seq known to be in the store.
func (m *Mirror) Mirrored() uint64 { return m.mirrored.Load() }

// Err returns the latest error, nil once copying works again.
func (m *Mirror) Err() error {
	m.errMu.Lock()
	defer m.errMu.Unlock()
	return m.err
}

func (m *Mirror) setErr(err error) {
	m.errMu.Lock()
	m.err = err
	m.errMu.Unlock()
	if err != nil && m.opts.OnError != nil {
		m.opts.OnError(err)
	}
}

// Wait returns once seq has been mirrored, or ctx ends.
func (m *Mirror) Wait(ctx context.Context, seq uint64) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for m.Mirrored() < seq {
		select {
		case <-ctx.Done():
			err := fmt.Errorf("audit: mirror reached seq %d, not %d: %w", m.Mirrored(), seq, ctx.Err())
			if merr := m.Err(); merr != nil {
				err = fmt.Errorf("%w (last mirror error: %v)", err, merr)
			}
			return err
		case <-t.C:
		}
	}
	return nil
}

// Close stops the mirror. Lines not yet copied are copied by the next
// Mirror started on the same log and store.
func (m *Mirror) Close() error {
	m.cancel()
	<-m.done
	return nil
}

func (m *Mirror) run(ctx context.Context) {
	defer close(m.done)
	for {
		err := m.session(ctx)
		if ctx.Err() != nil {
			return
		}
		m.setErr(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(m.opts.RetryInterval):
		}
	}
}

// session resumes after the store's newest seq and copies until an error.
func (m *Mirror) session(ctx context.Context) error {
	last, err := m.store.Resume(ctx)
	if err != nil {
		return err
	}
	m.mirrored.Store(last)
	files, err := ChainFiles(m.base)
	if err != nil {
		return err
	}
	t := &tailer{m: m, last: last}
	if err := t.rotated(ctx, files); err != nil {
		return err
	}
	m.setErr(nil)
	return t.follow(ctx)
}

type tailer struct {
	m       *Mirror
	last    uint64 // highest seq in the store
	f       *os.File
	off     int64
	partial []byte
	batch   []MirrorLine
	local   uint64 // highest seq seen in the local files
	warned  bool
}

// rotated copies what the rotated files among files hold beyond the
// store.
func (t *tailer) rotated(ctx context.Context, files []ChainFile) error {
	// The file being followed is read on where it was afterwards; what
	// these files repeat of it is below the store's top and skipped.
	f, off, partial := t.f, t.off, t.partial
	defer func() { t.f, t.off, t.partial = f, off, partial }()
	for _, cf := range files {
		if !cf.Rotated {
			continue
		}
		t.local = max(t.local, cf.Last)
		if cf.Last <= t.last {
			continue
		}
		f, err := os.Open(cf.Path)
		if err != nil {
			return fmt.Errorf("audit: mirror: %w", err)
		}
		err = t.drain(ctx, f)
		f.Close()
		t.f = nil
		if err != nil {
			return err
		}
	}
	return nil
}

// drain copies every complete line of f that is newer than the store.
func (t *tailer) drain(ctx context.Context, f *os.File) error {
	if t.f != f {
		t.f, t.off, t.partial = f, 0, nil
	}
	buf := make([]byte, 256<<10)
	for {
		n, err := f.ReadAt(buf, t.off)
		if n > 0 {
			t.off += int64(n)
			data := append(t.partial, buf[:n]...)
			for {
				i := bytes.IndexByte(data, '\n')
				if i < 0 {
					break
				}
				if err := t.add(ctx, data[:i]); err != nil {
					return err
				}
				data = data[i+1:]
			}
			t.partial = append([]byte(nil), data...)
		}
		if errors.Is(err, io.EOF) {
			return t.flush(ctx)
		}
		if err != nil {
			return fmt.Errorf("audit: mirror: cannot read %s: %w", f.Name(), err)
		}
	}
}

func (t *tailer) add(ctx context.Context, line []byte) error {
	r, err := ParseLine(line)
	if err == nil && r.Seq > t.local {
		t.local = r.Seq
	}
	if err != nil || r.Seq <= t.last {
		return nil // torn or damaged lines are Verify's business, not the mirror's
	}
	t.batch = append(t.batch, MirrorLine{Seq: r.Seq, Line: append([]byte(nil), line...)})
	if len(t.batch) >= 256 {
		return t.flush(ctx)
	}
	return nil
}

func (t *tailer) flush(ctx context.Context) error {
	if len(t.batch) == 0 {
		return nil
	}
	n, err := t.m.store.Append(ctx, t.batch)
	if n > 0 {
		t.last = t.batch[n-1].Seq
		t.m.mirrored.Store(t.last)
	}
	t.batch = t.batch[:0]
	if err != nil {
		return fmt.Errorf("audit: cannot copy to %s: %w", t.m.store.Name(), err)
	}
	return nil
}

// follow copies the current file as it grows, and moves to the new file
// when the log rotates (the old one is finished before its rename).
func (t *tailer) follow(ctx context.Context) error {
	defer func() {
		if t.f != nil {
			t.f.Close()
		}
	}()
	for {
		if t.f == nil {
			f, err := os.Open(t.m.base)
			if err == nil {
				t.f, t.off, t.partial = f, 0, nil
				// The log may have rotated more than once since the last
				// look: every file rotated before this open is listed
				// now, and copied first, in order, or the records between
				// the file just finished and this one would never reach
				// the store (whose seqs only grow).
				files, err := ChainFiles(t.m.base)
				if err != nil {
					return err
				}
				if err := t.rotated(ctx, files); err != nil {
					return err
				}
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("audit: mirror: %w", err)
			}
		}
		if t.f != nil {
			if err := t.drain(ctx, t.f); err != nil {
				return err
			}
			t.checkAhead()
			// Rotated away? Drain what is left, then switch.
			fi, err1 := t.f.Stat()
			pi, err2 := os.Stat(t.m.base)
			_ = err2 // a missing file is a rotation in progress: wait
			if err1 != nil {
				return fmt.Errorf("audit: mirror: %w", err1)
			}
			if err2 == nil && !os.SameFile(fi, pi) {
				if err := t.drain(ctx, t.f); err != nil {
					return err
				}
				t.f.Close()
				t.f = nil
				continue
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(t.m.opts.PollInterval):
		}
	}
}

// checkAhead reports, once, a store that holds records the local log no
// longer has: the local tail was removed or the log replaced.
func (t *tailer) checkAhead() {
	if t.warned || t.local >= t.last {
		return
	}
	t.warned = true
	t.m.setErr(fmt.Errorf("audit: %s holds records up to seq %d but %s ends at seq %d — the local log lost its tail or was replaced",
		t.m.store.Name(), t.last, filepath.Base(t.m.base), t.local))
}
