// Package spool is the executor's ordered outbox: every message bound for
// Redis (log lines, results) goes through one Spool, so that tasks keep
// running while Redis is unreachable and their messages are delivered later in
// exactly the order they were pushed.
//
// A Spool is a FIFO in three parts, always drained in this order:
//
//	head (memory) → spill segments (disk) → tail (memory, waiting to be written)
//
// While everything fits the memory budget only the head is used, and a record
// costs an append under a mutex. Once a record does not fit, it and every later
// record go to the tail, which is written to disk in batches, until the
// consumer has read the whole disk part back; then the tail becomes the head
// again. Reading back happens a chunk at a time, so a long outage never needs
// its whole backlog in memory. If the disk fails, the tail simply stays in
// memory: order is kept, and only droppable records are refused.
//
// Many goroutines may Push; one goroutine (the publisher) calls Batch and Ack.
package spool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/taskjob/task-job/internal/privdir"
)

// Defaults for Options.
const (
	DefaultMemBytes  = 64 << 20
	DefaultDiskBytes = 1 << 30
)

// recordOverhead is what a queued record costs in memory besides its Data
// (the Record header in the queue's slice). Counting it keeps a flood of empty
// records from escaping the memory budget.
const recordOverhead = 32

// Tuning. They are fields of Spool (set from these in New) so tests can shrink
// them without writing megabytes.
const (
	maxFlushBytes = 256 << 10 // tail bytes gathered before one write
	maxChunkBytes = 1 << 20   // memory read back from disk at a time
	minSegBytes   = 64 << 10
	maxSegBytes   = 64 << 20
	diskRetry     = time.Second // how long a failed disk is left alone
)

// ErrClosed is returned by Batch once the Spool is closed.
var ErrClosed = errors.New("spool: closed")

// Record is one queued message.
type Record struct {
	// Kind is opaque to the spool; the caller uses it to tell log lines from
	// results.
	Kind byte
	// Data is the payload. The spool keeps the slice as is (no copy on the
	// memory path), so the caller must not modify it after Push.
	Data []byte
}

// Options configures a Spool.
type Options struct {
	// Dir holds the spill files: a clean absolute path. It is created
	// (0700) if missing, without following symlinks, and refused if it or
	// a parent is a symlink, if it is not this user's with mode 0700 or
	// less, or if a parent could be changed by another user. Spill
	// files a previous run left in it are removed. It belongs to one Spool.
	Dir string
	// MemBytes is the memory budget (default 64 MiB): Data plus a small
	// per-record overhead. Beyond it records go to disk.
	MemBytes int64
	// DiskBytes is the disk budget (default 1 GiB). Beyond it, with memory
	// full too, droppable records are dropped and counted.
	DiskBytes int64
}

// Stats is a snapshot of a Spool's state and counters.
type Stats struct {
	Queued    int    // records waiting, in memory and on disk
	MemBytes  int64  // memory held by queued records (Data plus overhead)
	DiskBytes int64  // size of the spill files
	Spilled   uint64 // records written to disk since New
	Dropped   uint64 // droppable records refused, plus records lost to an unreadable spill file
	DiskErr   error  // the last spill file error; nil again once a write succeeds
}

// Spool is an ordered, bounded, disk-backed queue of records. See the package
// documentation for how it is laid out.
type Spool struct {
	dir       string
	memLimit  int64
	diskLimit int64
	headLimit int64 // memLimit minus room for the tail to gather a write
	flushSize int64
	chunkSize int64
	segSize   int64
	retry     time.Duration

	mu     sync.Mutex
	closed bool
	done   chan struct{} // closed by Close
	wake   chan struct{} // capacity 1: a Push tells a waiting Batch
	// waiting is set by a Batch about to block, so that Push touches the
	// channel only when someone listens, not once per record.
	waiting bool

	head      []Record // head[hpos:] is queued; Batch returns a view of it
	hpos      int
	headBytes int64
	batchLen  int // records returned by the last Batch, not yet acknowledged

	segs      []*segment // oldest first; the last one is written to
	segSeq    uint64
	diskBytes int64
	diskRecs  int // records on disk not yet read back

	tail      []Record
	tailBytes int64 // memory cost of tail
	tailDisk  int64 // its size once encoded
	flushAt   int64 // tailBytes at which to write the tail out
	wbuf      []byte
	diskErr   error
	diskErrAt time.Time

	spilled uint64
	dropped uint64
}

// New creates a Spool, creating opts.Dir if needed and removing spill files
// left there by a previous run.
func New(opts Options) (*Spool, error) {
	if opts.Dir == "" {
		return nil, errors.New("spool: Options.Dir is required: name a directory for spill files")
	}
	if opts.MemBytes <= 0 {
		opts.MemBytes = DefaultMemBytes
	}
	if opts.DiskBytes <= 0 {
		opts.DiskBytes = DefaultDiskBytes
	}
	// Made without following symlinks and checked (owner, mode, parents):
	// at start-up spill files found there are deleted, and during an outage
	// a lot is written there, so nobody else may choose where that is.
	if err := privdir.Make(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: the spill directory (spool_dir) cannot be used safely: %w", err)
	}
	if err := removeLeftovers(opts.Dir); err != nil {
		return nil, err
	}
	flush := min(opts.MemBytes/8, maxFlushBytes)
	s := &Spool{
		dir:       opts.Dir,
		memLimit:  opts.MemBytes,
		diskLimit: opts.DiskBytes,
		headLimit: opts.MemBytes - flush,
		flushSize: flush,
		chunkSize: max(min(opts.MemBytes-flush, maxChunkBytes), 1),
		segSize:   min(max(opts.DiskBytes/8, minSegBytes), maxSegBytes),
		retry:     diskRetry,
		done:      make(chan struct{}),
		wake:      make(chan struct{}, 1),
		flushAt:   flush,
	}
	return s, nil
}

func memCost(n int) int64 { return int64(n) + recordOverhead }

func diskCost(n int) int64 { return int64(n) + hdrLen }

// Push appends r. It returns false if r was dropped: r is droppable and
// neither memory nor disk has room for it (counted in Stats.Dropped), or the
// Spool is closed. A record that is not droppable (a task result) is always
// kept, even beyond both budgets, because losing it would break the promise of
// exactly one result per task.
func (s *Spool) Push(r Record, droppable bool) bool {
	cost := memCost(len(r.Data))
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	if len(s.tail) == 0 && s.diskRecs == 0 && s.headBytes+cost <= s.headLimit {
		s.head = append(s.head, r)
		s.headBytes += cost
	} else if !s.pushTail(r, cost, droppable) {
		s.dropped++
		s.mu.Unlock()
		return false
	}
	if s.waiting {
		s.waiting = false
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
	return true
}

// pushTail queues r behind everything on disk, and writes the tail out when
// enough has gathered or memory is over budget. It reports false if r is
// droppable and there is no room for it anywhere.
func (s *Spool) pushTail(r Record, cost int64, droppable bool) bool {
	dcost := diskCost(len(r.Data))
	usable := s.diskUsable()
	if droppable && !s.roomFor(cost, dcost, usable) {
		if !usable || len(s.tail) == 0 {
			return false
		}
		// The tail may hold records already promised to disk: write them
		// before deciding the disk is full.
		s.flush()
		usable = s.diskUsable()
		if !s.roomFor(cost, dcost, usable) {
			return false
		}
	}
	s.tail = append(s.tail, r)
	s.tailBytes += cost
	s.tailDisk += dcost
	if usable && (s.tailBytes >= s.flushAt || s.headBytes+s.tailBytes > s.memLimit) {
		s.flush()
	}
	return true
}

// roomFor reports whether a droppable record of the given costs fits either
// on disk (after the tail is written out) or in memory.
func (s *Spool) roomFor(cost, dcost int64, usable bool) bool {
	return (usable && s.diskBytes+s.tailDisk+dcost <= s.diskLimit) ||
		s.headBytes+s.tailBytes+cost <= s.memLimit
}

// diskUsable reports whether to try the disk: it is left alone for a while
// after an error, so a full disk does not cost a failing write per record.
func (s *Spool) diskUsable() bool {
	return s.diskErrAt.IsZero() || time.Since(s.diskErrAt) >= s.retry
}

// flush writes as much of the tail as fits the disk budget with one write.
// Whatever does not fit, or fails to be written, stays in memory, still
// behind the disk part, so order is kept either way.
func (s *Spool) flush() {
	buf := s.wbuf[:0]
	var n int
	var dbytes, mbytes int64
	for _, r := range s.tail {
		d := diskCost(len(r.Data))
		if s.diskBytes+dbytes+d > s.diskLimit || !spillable(r) {
			break
		}
		buf = appendRecord(buf, r)
		n++
		dbytes += d
		mbytes += memCost(len(r.Data))
	}
	if int64(cap(buf)) <= 4*maxFlushBytes {
		s.wbuf = buf[:0]
	} else {
		s.wbuf = nil // do not keep a huge record's buffer around
	}
	s.flushAt = s.tailBytes + s.flushSize
	if n == 0 {
		return
	}
	seg, err := s.writableSegment()
	if err == nil {
		err = seg.write(buf, n)
	}
	if err != nil {
		s.diskErr = err
		s.diskErrAt = time.Now()
		return
	}
	s.diskErr = nil
	s.diskErrAt = time.Time{}
	s.diskBytes += dbytes
	s.diskRecs += n
	s.spilled += uint64(n)
	rest := copy(s.tail, s.tail[n:])
	clear(s.tail[rest:])
	s.tail = s.tail[:rest]
	s.tailBytes -= mbytes
	s.tailDisk -= dbytes
	s.flushAt = s.tailBytes + s.flushSize
}

// writableSegment returns the segment to append to, starting a new one when
// the current one is full so that read-back segments can be deleted early.
func (s *Spool) writableSegment() (*segment, error) {
	if n := len(s.segs); n > 0 && s.segs[n-1].size < s.segSize {
		return s.segs[n-1], nil
	}
	s.segSeq++
	seg, err := createSegment(s.dir, s.segSeq)
	if err != nil {
		return nil, err
	}
	s.segs = append(s.segs, seg)
	return seg, nil
}

// Batch waits until at least one record is queued, or ctx ends, or the Spool
// is closed, and returns up to maxRecs records and up to maxBytes of Data (but
// always at least one record) from the head of the queue, in order, without
// removing them. Zero or negative limits mean no limit. The returned slice is
// the spool's own storage: it is valid until the next Ack or Batch, and its
// Data may be kept longer.
//
// An error reading a spill file is returned once; the records that could not
// be read are counted as dropped and the next Batch continues after them.
func (s *Spool) Batch(ctx context.Context, maxRecs, maxBytes int) ([]Record, error) {
	s.mu.Lock()
	for {
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		if s.hpos == len(s.head) {
			if err := s.refill(); err != nil {
				s.mu.Unlock()
				return nil, err
			}
		}
		if s.hpos < len(s.head) {
			break
		}
		s.waiting = true
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-s.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		s.mu.Lock()
	}
	n, bytes := 0, 0
	for _, r := range s.head[s.hpos:] {
		if maxRecs > 0 && n == maxRecs {
			break
		}
		if maxBytes > 0 && n > 0 && bytes+len(r.Data) > maxBytes {
			break
		}
		n++
		bytes += len(r.Data)
	}
	s.batchLen = n
	b := s.head[s.hpos : s.hpos+n : s.hpos+n]
	s.mu.Unlock()
	return b, nil
}

// refill moves the next records into the empty head: a chunk from the oldest
// spill segment, or, once the disk part is all read back, the whole tail,
// which returns the Spool to the memory-only path.
func (s *Spool) refill() error {
	clear(s.head)
	s.head, s.hpos = s.head[:0], 0
	for s.diskRecs > 0 {
		seg := s.segs[0]
		if seg.recs == 0 {
			s.dropSegment()
			continue
		}
		limit := max(min(s.chunkSize, s.headLimit-s.tailBytes), 1)
		recs := seg.recs
		var err error
		s.head, err = seg.read(s.head, limit)
		s.diskRecs -= recs - seg.recs
		for _, r := range s.head {
			s.headBytes += memCost(len(r.Data))
		}
		if err != nil {
			s.dropped += uint64(seg.recs)
			s.diskRecs -= seg.recs
			seg.recs = 0
			s.dropSegment()
			return err
		}
		if seg.recs == 0 {
			s.dropSegment()
		}
		return nil
	}
	if len(s.tail) > 0 {
		s.head, s.tail = s.tail, s.head
		s.headBytes += s.tailBytes
		s.tailBytes, s.tailDisk = 0, 0
		s.flushAt = s.flushSize
	}
	return nil
}

// dropSegment deletes the oldest segment, whose records are all read back.
func (s *Spool) dropSegment() {
	seg := s.segs[0]
	s.segs[0] = nil
	s.segs = s.segs[1:]
	s.diskBytes -= seg.size
	if err := seg.remove(); err != nil {
		s.diskErr = err
	}
}

// Ack removes the first n records returned by the last Batch, once they are
// delivered. n is capped at the number Batch returned.
func (s *Spool) Ack(n int) {
	s.mu.Lock()
	n = max(min(n, s.batchLen), 0)
	s.batchLen = 0
	acked := s.head[s.hpos : s.hpos+n]
	for _, r := range acked {
		s.headBytes -= memCost(len(r.Data))
	}
	clear(acked)
	s.hpos += n
	switch {
	case s.hpos == len(s.head) && cap(s.head) > 1<<16:
		s.head, s.hpos = nil, 0 // let a burst's backing array go
	case s.hpos == len(s.head):
		s.head, s.hpos = s.head[:0], 0
	case s.hpos >= 1<<12 && 2*s.hpos >= len(s.head):
		rest := copy(s.head, s.head[s.hpos:])
		clear(s.head[rest:])
		s.head, s.hpos = s.head[:rest], 0
	}
	s.mu.Unlock()
}

// Len returns the number of queued records.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queued()
}

func (s *Spool) queued() int { return len(s.head) - s.hpos + s.diskRecs + len(s.tail) }

// Stats returns a snapshot of the Spool's state and counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Queued:    s.queued(),
		MemBytes:  s.headBytes + s.tailBytes,
		DiskBytes: s.diskBytes,
		Spilled:   s.spilled,
		Dropped:   s.dropped,
		DiskErr:   s.diskErr,
	}
}

// Close discards whatever is still queued, removes the spill files and wakes
// a waiting Batch, which returns ErrClosed. Later Pushes return false. Drain
// the Spool first to deliver everything.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.done)
	var errs []error
	for _, seg := range s.segs {
		if err := seg.remove(); err != nil {
			errs = append(errs, err)
		}
	}
	s.segs, s.head, s.tail = nil, nil, nil
	s.hpos, s.batchLen, s.diskRecs = 0, 0, 0
	s.headBytes, s.tailBytes, s.tailDisk, s.diskBytes = 0, 0, 0, 0
	return errors.Join(errs...)
}
