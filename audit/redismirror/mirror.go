package redismirror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/audit"
)

// The mirror copies each line of the local file, the source of truth, to a
// Redis stream as entry ID "<seq>-0" with the single field "line". Explicit
// IDs make a copy idempotent (Redis refuses an ID at or below the stream's
// top), let a restarted mirror resume from the stream's last entry, and let
// Verify look records up by seq. Use one stream per log.

// Options tune a Mirror. The zero value is usable.
type Options struct {
	// MaxLen caps the stream, approximately (MAXLEN ~); default 1,000,000
	// entries. 0 keeps the default; -1 keeps everything.
	MaxLen int64
	// PollInterval is how often the file is checked for new lines (50ms).
	PollInterval time.Duration
	// RetryInterval is the wait after a Redis error before resuming (1s).
	RetryInterval time.Duration
	// OnError, when set, is told of each error (Redis unreachable, the
	// stream ahead of the local log…); the mirror keeps retrying.
	OnError func(error)
	// Executor, when set, is the id this log's records carry. A stream
	// whose newest entry another executor wrote is refused with an error
	// that says so: two logs in one stream collide on their seqs.
	Executor string
}

// Mirror copies an audit log to a Redis stream in the background. It never
// slows Append: it reads the file, not the Log.
type Mirror struct {
	base   string
	rdb    redis.UniversalClient
	stream string
	opts   Options

	mirrored atomic.Uint64
	errMu    sync.Mutex
	err      error
	cancel   context.CancelFunc
	done     chan struct{}
}

// Start starts copying the log at basePath to stream. It first asks
// the stream for the last seq it holds and continues after it, so an
// outage or a restart leaves no gap once Redis answers again.
func Start(basePath string, rdb redis.UniversalClient, stream string, opts Options) *Mirror {
	if opts.MaxLen == 0 {
		opts.MaxLen = 1_000_000
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 50 * time.Millisecond
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mirror{base: basePath, rdb: rdb, stream: stream, opts: opts, cancel: cancel, done: make(chan struct{})}
	go m.run(ctx)
	return m
}

// Mirrored returns the last seq known to be in the stream.
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
// Mirror started on the same log and stream.
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

// Last returns the seq of the stream's newest entry, 0 when empty.
func Last(ctx context.Context, rdb redis.UniversalClient, stream string) (uint64, error) {
	msgs, err := rdb.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	if err != nil {
		return 0, fmt.Errorf("audit: cannot read the mirror stream %s: %w", stream, err)
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	return idSeq(msgs[0].ID)
}

func idSeq(id string) (uint64, error) {
	ms, _, _ := strings.Cut(id, "-")
	seq, err := strconv.ParseUint(ms, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("audit: the mirror stream has an entry %q that is not an audit seq", id)
	}
	return seq, nil
}

// checkOwner refuses a stream whose newest record names another executor.
func (m *Mirror) checkOwner(ctx context.Context) error {
	if m.opts.Executor == "" {
		return nil
	}
	msgs, err := m.rdb.XRevRangeN(ctx, m.stream, "+", "-", 1).Result()
	if err != nil || len(msgs) == 0 {
		return err
	}
	line, _ := msgs[0].Values["line"].(string)
	var r struct {
		Executor string `json:"executor"`
	}
	if json.Unmarshal([]byte(line), &r) == nil && r.Executor != "" && r.Executor != m.opts.Executor {
		return fmt.Errorf("audit: the mirror stream %s holds the audit log of executor %q, not of this executor %q; each executor needs a stream of its own (leave audit_stream unset: its default names the executor)",
			m.stream, r.Executor, m.opts.Executor)
	}
	return nil
}

// session resumes after the stream's last entry and copies until an error.
func (m *Mirror) session(ctx context.Context) error {
	last, err := Last(ctx, m.rdb, m.stream)
	if err != nil {
		return err
	}
	if err := m.checkOwner(ctx); err != nil {
		return err
	}
	m.mirrored.Store(last)
	files, err := audit.ChainFiles(m.base)
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

// rotated copies what the rotated files among files hold beyond the
// stream.
func (t *tailer) rotated(ctx context.Context, files []audit.ChainFile) error {
	// The file being followed is read on where it was afterwards; what
	// these files repeat of it is below the stream's top and skipped.
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

type tailer struct {
	m       *Mirror
	last    uint64 // highest seq in the stream
	f       *os.File
	off     int64
	partial []byte
	batch   [][]byte
	local   uint64 // highest seq seen in the local files
	warned  bool
}

// drain copies every complete line of f that is newer than the stream.
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
	r, err := audit.ParseLine(line)
	if err == nil && r.Seq > t.local {
		t.local = r.Seq
	}
	if err != nil || r.Seq <= t.last {
		return nil // torn or damaged lines are Verify's business, not the mirror's
	}
	t.batch = append(t.batch, append([]byte(nil), line...))
	if len(t.batch) >= 256 {
		return t.flush(ctx)
	}
	return nil
}

func (t *tailer) flush(ctx context.Context) error {
	if len(t.batch) == 0 {
		return nil
	}
	m := t.m
	pipe := m.rdb.Pipeline()
	seqs := make([]uint64, len(t.batch))
	for i, line := range t.batch {
		r, _ := audit.ParseLine(line)
		seqs[i] = r.Seq
		a := &redis.XAddArgs{Stream: m.stream, ID: strconv.FormatUint(r.Seq, 10) + "-0", Values: []any{"line", line}}
		if m.opts.MaxLen > 0 {
			a.MaxLen, a.Approx = m.opts.MaxLen, true
		}
		pipe.XAdd(ctx, a)
	}
	cmds, err := pipe.Exec(ctx)
	// Count what went in, in order, up to the first failure.
	// Only an entry Redis answered with its ID counts: after a failed
	// pipeline some commands may carry neither an error nor a reply.
	for i, c := range cmds {
		sc, ok := c.(*redis.StringCmd)
		if !ok || sc.Err() != nil || sc.Val() != strconv.FormatUint(seqs[i], 10)+"-0" {
			break
		}
		t.last = seqs[i]
		m.mirrored.Store(seqs[i])
	}
	t.batch = t.batch[:0]
	if err != nil {
		return fmt.Errorf("audit: cannot copy to the mirror stream %s: %w", m.stream, err)
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
				// the stream (whose IDs only grow).
				files, err := audit.ChainFiles(t.m.base)
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
			if err := t.checkAhead(); err != nil {
				return err
			}
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

// checkAhead reports, once, a stream that holds records the local log no
// longer has: the local tail was removed or the log replaced.
func (t *tailer) checkAhead() error {
	if t.warned || t.local >= t.last {
		return nil
	}
	t.warned = true
	t.m.setErr(fmt.Errorf("audit: the mirror stream %s holds records up to seq %d but %s ends at seq %d — the local log lost its tail or was replaced",
		t.m.stream, t.last, filepath.Base(t.m.base), t.local))
	return nil
}
