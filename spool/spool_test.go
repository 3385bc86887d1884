package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// privateTempDir is t.TempDir made 0700, as New wants a spill directory.
func privateTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// setup returns a Spool in a fresh directory (unless opts.Dir is set) that is
// closed when the test ends.
func setup(t testing.TB, opts Options) *Spool {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = privateTempDir(t)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// rec returns record i: its number, padded to size bytes.
func rec(i, size int) Record {
	d := make([]byte, max(size, len(strconv.Itoa(i))))
	for j := range d {
		d[j] = '.'
	}
	copy(d, strconv.Itoa(i))
	return Record{Kind: byte(i), Data: d}
}

// seq reads back the number rec stored in r.
func seq(t testing.TB, r Record) int {
	t.Helper()
	n, err := strconv.Atoi(string(bytes.TrimRight(r.Data, ".")))
	if err != nil {
		t.Fatalf("record %q: %v", r.Data, err)
	}
	if byte(n) != r.Kind {
		t.Fatalf("record %d has kind %d", n, r.Kind)
	}
	return n
}

// drain takes n records out of s with batches of at most batchMax records
// (no limit if zero).
func drain(t testing.TB, s *Spool, n, batchMax int) []Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []Record
	for len(out) < n {
		limit := n - len(out)
		if batchMax > 0 {
			limit = min(limit, batchMax)
		}
		b, err := s.Batch(ctx, limit, 0)
		if err != nil {
			t.Fatalf("Batch after %d of %d records: %v", len(out), n, err)
		}
		out = append(out, b...)
		s.Ack(len(b))
	}
	if len(out) != n {
		t.Fatalf("drained %d records, want %d", len(out), n)
	}
	return out
}

// checkSeq fails unless recs are exactly the records numbered want, in order.
func checkSeq(t testing.TB, recs []Record, want []int) {
	t.Helper()
	if len(recs) != len(want) {
		t.Fatalf("got %d records, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		if got := seq(t, r); got != want[i] {
			t.Fatalf("record %d is #%d, want #%d", i, got, want[i])
		}
	}
}

func spillFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, segPrefix+"*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func ints(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func TestMemoryOnly(t *testing.T) {
	t.Parallel()
	dir := privateTempDir(t)
	s := setup(t, Options{Dir: dir})
	for i := range 1000 {
		if !s.Push(rec(i, 100), true) {
			t.Fatalf("Push %d dropped", i)
		}
	}
	if st := s.Stats(); st.Spilled != 0 || st.DiskBytes != 0 || st.Queued != 1000 || st.MemBytes != 1000*memCost(100) {
		t.Errorf("Stats = %+v, want 1000 queued in memory only", st)
	}
	if f := spillFiles(t, dir); len(f) != 0 {
		t.Errorf("spill files %v on the memory path", f)
	}
	checkSeq(t, drain(t, s, 1000, 64), ints(0, 1000))
}

// TestOrderAcrossSpill walks memory → disk → memory and checks each leg.
func TestOrderAcrossSpill(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		mem      int64
		size     int
		batchMax int
	}{
		{"small records", 4 << 10, 100, 7},
		{"one per batch", 2 << 10, 50, 1},
		{"records near the budget", 1 << 10, 800, 3},
		{"records beyond the budget", 1 << 10, 3000, 2},
		{"bare numbers", 1 << 10, 0, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := privateTempDir(t)
			s := setup(t, Options{Dir: dir, MemBytes: tt.mem})
			s.segSize = 4 << 10 // several segments, so some are deleted early
			push := func(from, to int) {
				for i := from; i < to; i++ {
					if !s.Push(rec(i, tt.size), i%2 == 0) {
						t.Fatalf("Push %d dropped", i)
					}
				}
			}
			var got []Record
			push(0, 300)
			if st := s.Stats(); st.Spilled == 0 || st.DiskBytes == 0 || len(spillFiles(t, dir)) == 0 {
				t.Fatalf("nothing spilled: %+v", st)
			}
			got = append(got, drain(t, s, 100, tt.batchMax)...)
			push(300, 600) // still behind the disk part
			got = append(got, drain(t, s, 500, tt.batchMax)...)
			checkSeq(t, got, ints(0, 600))

			st := s.Stats()
			if st.Queued != 0 || st.MemBytes != 0 || st.DiskBytes != 0 {
				t.Errorf("drained Stats = %+v, want all zero sizes", st)
			}
			if f := spillFiles(t, dir); len(f) != 0 {
				t.Errorf("spill files left after drain: %v", f)
			}
			// Back on the memory path.
			s.Push(rec(600, 10), true)
			if got := s.Stats().Spilled; got != st.Spilled {
				t.Errorf("Spilled went from %d to %d after the disk part was drained", st.Spilled, got)
			}
			checkSeq(t, drain(t, s, 1, tt.batchMax), []int{600})
		})
	}
}

// TestConcurrentProducers checks that each producer's records come out in
// its order while the spool spills and reads back under load.
func TestConcurrentProducers(t *testing.T) {
	t.Parallel()
	const producers, each = 4, 3000
	s := setup(t, Options{MemBytes: 8 << 10})
	s.segSize = 16 << 10

	var wg sync.WaitGroup
	half := make(chan struct{}) // closed once every producer is halfway
	var halfway sync.WaitGroup
	halfway.Add(producers)
	go func() { halfway.Wait(); close(half) }()
	for p := range producers {
		wg.Go(func() {
			reached := false
			defer func() {
				if !reached {
					halfway.Done()
				}
			}()
			for i := range each {
				if i == each/2 {
					reached = true
					halfway.Done()
				}
				r := Record{Kind: byte(p), Data: fmt.Appendf(nil, "%d:%d", p, i)}
				if !s.Push(r, p%2 == 0) {
					t.Errorf("producer %d: Push %d dropped", p, i)
					return
				}
			}
		})
	}

	<-half // let the backlog reach the disk before consuming
	if st := s.Stats(); st.Spilled == 0 {
		t.Errorf("nothing spilled with %d records queued: %+v", st.Queued, st)
	}
	next := make([]int, producers)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for n, batch := 0, 1; n < producers*each; batch = batch%13 + 1 {
		b, err := s.Batch(ctx, batch, 0)
		if err != nil {
			t.Fatalf("Batch after %d records: %v", n, err)
		}
		for _, r := range b {
			var p, i int
			if _, err := fmt.Sscanf(string(r.Data), "%d:%d", &p, &i); err != nil || int(r.Kind) != p {
				t.Fatalf("bad record %q kind %d: %v", r.Data, r.Kind, err)
			}
			if i != next[p] {
				t.Fatalf("producer %d: got record %d, want %d", p, i, next[p])
			}
			next[p]++
		}
		n += len(b)
		s.Ack(len(b))
	}
	wg.Wait()
	if st := s.Stats(); st.Queued != 0 || st.Dropped != 0 || st.DiskBytes != 0 {
		t.Errorf("final Stats = %+v", st)
	}
}

// TestBudgets fills a spool that nobody drains and checks that droppable
// records are refused only once memory and disk are both full, that the
// budgets hold, and that records that are not droppable are still kept.
func TestBudgets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		mem, disk int64
		size      int
	}{
		{"small records", 4 << 10, 16 << 10, 100},
		{"large records", 8 << 10, 64 << 10, 1000},
		{"tiny budgets", 512, 1 << 10, 10},
		{"disk smaller than memory", 16 << 10, 2 << 10, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := setup(t, Options{MemBytes: tt.mem, DiskBytes: tt.disk})
			s.segSize = 1 << 10
			mc, dc := memCost(tt.size), diskCost(tt.size)
			total := int(2 * (tt.mem + tt.disk) / int64(tt.size))
			var kept []int
			for i := range total {
				before := s.Stats()
				ok := s.Push(rec(i, tt.size), true)
				st := s.Stats()
				if st.MemBytes > tt.mem || st.DiskBytes > tt.disk {
					t.Fatalf("push %d: over budget: %+v", i, st)
				}
				if ok {
					kept = append(kept, i)
					continue
				}
				if before.MemBytes+mc <= tt.mem || before.DiskBytes+dc <= tt.disk {
					t.Fatalf("push %d dropped with room left: %+v", i, before)
				}
				if st.Dropped != before.Dropped+1 {
					t.Fatalf("push %d dropped but Dropped went %d → %d", i, before.Dropped, st.Dropped)
				}
			}
			st := s.Stats()
			if st.Dropped == 0 || int(st.Dropped) != total-len(kept) {
				t.Fatalf("Dropped = %d, want %d", st.Dropped, total-len(kept))
			}
			for i := total; i < total+20; i++ {
				if !s.Push(rec(i, tt.size), false) {
					t.Fatalf("non-droppable push %d refused", i)
				}
				kept = append(kept, i)
			}
			if got := s.Stats(); got.Dropped != st.Dropped || got.Queued != len(kept) {
				t.Fatalf("after non-droppable pushes Stats = %+v, want %d queued", got, len(kept))
			}
			checkSeq(t, drain(t, s, len(kept), 50), kept)
		})
	}
}

// TestReadBackInChunks checks that a backlog comes back from disk a chunk at
// a time, within the memory budget, and that read-back files are deleted
// before the whole backlog is delivered.
func TestReadBackInChunks(t *testing.T) {
	t.Parallel()
	const mem, n = 4 << 10, 2000
	s := setup(t, Options{MemBytes: mem})
	s.segSize = 16 << 10
	for i := range n {
		s.Push(rec(i, 100), true)
	}
	full := s.Stats()
	if full.Queued != n || full.Spilled == 0 {
		t.Fatalf("Stats = %+v", full)
	}
	ctx := context.Background()
	shrunk := false
	var got []Record
	for len(got) < n {
		b, err := s.Batch(ctx, 10, 0)
		if err != nil {
			t.Fatal(err)
		}
		st := s.Stats()
		if st.MemBytes > mem {
			t.Fatalf("after %d records: %d bytes in memory, budget %d", len(got), st.MemBytes, mem)
		}
		if st.Queued > n/2 && st.DiskBytes < full.DiskBytes {
			shrunk = true
		}
		got = append(got, b...)
		s.Ack(len(b))
	}
	if !shrunk {
		t.Error("no spill file was deleted before half the backlog was delivered")
	}
	checkSeq(t, got, ints(0, n))
}

// TestEmptyRecords sends records without Data through memory and disk; the
// Kind alone tells them apart.
func TestEmptyRecords(t *testing.T) {
	t.Parallel()
	s := setup(t, Options{MemBytes: 256})
	for i := range 200 {
		s.Push(Record{Kind: byte(i)}, true)
	}
	if s.Stats().Spilled == 0 {
		t.Fatal("nothing spilled")
	}
	for i, r := range drain(t, s, 200, 0) {
		if int(r.Kind) != i || len(r.Data) != 0 {
			t.Fatalf("record %d = kind %d data %q", i, r.Kind, r.Data)
		}
	}
}

func TestNonDroppableNeverDropped(t *testing.T) {
	t.Parallel()
	s := setup(t, Options{MemBytes: 256, DiskBytes: 512})
	const n = 2000
	for i := range n {
		if !s.Push(rec(i, 64), false) {
			t.Fatalf("Push %d refused", i)
		}
	}
	if st := s.Stats(); st.Dropped != 0 || st.Queued != n {
		t.Fatalf("Stats = %+v", st)
	}
	checkSeq(t, drain(t, s, n, 33), ints(0, n))
}

// TestDiskFailure makes spill files impossible to create by removing the
// directory, and checks that what is kept stays in order.
func TestDiskFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// spillFirst pushes this many records before the directory goes.
		spillFirst int
		// recover recreates the directory after the failure.
		recover bool
	}{
		{"fails from the start", 0, false},
		{"fails after spilling", 200, false},
		{"fails and recovers", 200, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(privateTempDir(t), "spool")
			const mem, size = 4 << 10, 100
			s := setup(t, Options{Dir: dir, MemBytes: mem})
			s.segSize = 1 // a new file for every write, so every write can fail
			var kept []int
			push := func(from, to int, droppable bool) {
				for i := from; i < to; i++ {
					if s.Push(rec(i, size), droppable) {
						kept = append(kept, i)
					} else if !droppable {
						t.Fatalf("non-droppable push %d refused", i)
					}
				}
			}
			push(0, tt.spillFirst, true)
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			i := tt.spillFirst
			push(i, i+300, true)
			push(i+300, i+320, false)
			push(i+320, i+400, true)
			st := s.Stats()
			if st.DiskErr == nil || st.Dropped == 0 {
				t.Fatalf("after failure Stats = %+v, want a disk error and drops", st)
			}
			if st.MemBytes > mem+20*memCost(size) {
				t.Fatalf("memory %d beyond budget plus the non-droppable records", st.MemBytes)
			}
			if tt.recover {
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				s.retry = 0
				spilled := st.Spilled
				push(i+400, i+600, true)
				if st := s.Stats(); st.DiskErr != nil || st.Spilled == spilled {
					t.Fatalf("after recovery Stats = %+v", st)
				}
			}
			checkSeq(t, drain(t, s, len(kept), 17), kept)
		})
	}
}

// TestUnreadableSpillFile damages a spill file: Batch reports it once, counts
// the lost records, and carries on with the next file.
func TestUnreadableSpillFile(t *testing.T) {
	t.Parallel()
	dir := privateTempDir(t)
	s := setup(t, Options{Dir: dir, MemBytes: 1 << 10})
	s.segSize = 2 << 10
	for i := range 200 {
		s.Push(rec(i, 100), false)
	}
	files := spillFiles(t, dir)
	if len(files) < 2 {
		t.Fatalf("want several spill files, got %v", files)
	}
	inMem := len(s.head)
	lost := s.segs[0].recs
	if err := os.Truncate(files[0], 3); err != nil {
		t.Fatal(err)
	}
	got := drain(t, s, inMem, 0)
	if _, err := s.Batch(context.Background(), 0, 0); err == nil {
		t.Fatal("Batch on a truncated spill file succeeded")
	}
	if st := s.Stats(); st.Dropped != uint64(lost) {
		t.Errorf("Dropped = %d, want %d", st.Dropped, lost)
	}
	got = append(got, drain(t, s, 200-inMem-lost, 0)...)
	checkSeq(t, got, append(ints(0, inMem), ints(inMem+lost, 200)...))
}

func TestBatchLimits(t *testing.T) {
	t.Parallel()
	sizes := []int{10, 10, 10, 50, 10}
	tests := []struct {
		name          string
		max, maxBytes int
		want          int
	}{
		{"count", 2, 0, 2},
		{"bytes", 0, 25, 2},
		{"bytes exactly", 0, 80, 4},
		{"at least one", 0, 5, 1},
		{"both, bytes first", 3, 15, 1},
		{"both, count first", 2, 1000, 2},
		{"no limits", 0, 0, 5},
		{"more than queued", 100, 0, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := setup(t, Options{})
			for i, n := range sizes {
				s.Push(rec(i, n), true)
			}
			b, err := s.Batch(context.Background(), tt.max, tt.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			checkSeq(t, b, ints(0, tt.want))
			if s.Len() != len(sizes) {
				t.Errorf("Batch removed records: Len = %d", s.Len())
			}
		})
	}
}

func TestAck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		batch     int
		acks      []int
		wantNext  int
		wantQueue int
	}{
		{"all", 4, []int{4}, 4, 6},
		{"part", 4, []int{1}, 1, 9},
		{"more than returned", 4, []int{100}, 4, 6},
		{"twice for one batch", 4, []int{2, 2}, 2, 8},
		{"none", 4, []int{0}, 0, 10},
		{"negative", 4, []int{-3}, 0, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := setup(t, Options{})
			for i := range 10 {
				s.Push(rec(i, 10), true)
			}
			if _, err := s.Batch(context.Background(), tt.batch, 0); err != nil {
				t.Fatal(err)
			}
			for _, n := range tt.acks {
				s.Ack(n)
			}
			if s.Len() != tt.wantQueue {
				t.Errorf("Len = %d, want %d", s.Len(), tt.wantQueue)
			}
			b, err := s.Batch(context.Background(), 1, 0)
			if err != nil {
				t.Fatal(err)
			}
			checkSeq(t, b, []int{tt.wantNext})
		})
	}
}

// waitUntilWaiting polls until a Batch is blocked on s.
func waitUntilWaiting(t *testing.T, s *Spool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; runtime.Gosched() {
		s.mu.Lock()
		w := s.waiting
		s.mu.Unlock()
		if w {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("Batch never started waiting")
		}
	}
}

func TestBatchWaits(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		then    func(*Spool) // run once Batch is blocked
		wantErr error
		wantRec bool
	}{
		{
			name:    "canceled",
			ctx:     func() (context.Context, context.CancelFunc) { return canceled, func() {} },
			wantErr: context.Canceled,
		},
		{
			name: "deadline",
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 20*time.Millisecond)
			},
			wantErr: context.DeadlineExceeded,
		},
		{
			name:    "woken by Push",
			ctx:     func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			then:    func(s *Spool) { s.Push(rec(7, 10), true) },
			wantRec: true,
		},
		{
			name:    "woken by a Push that spills",
			ctx:     func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			then:    func(s *Spool) { s.Push(rec(7, 4<<10), true) },
			wantRec: true,
		},
		{
			name:    "woken by Close",
			ctx:     func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			then:    func(s *Spool) { s.Close() },
			wantErr: ErrClosed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := setup(t, Options{MemBytes: 1 << 10})
			ctx, cancel := tt.ctx()
			defer cancel()
			type result struct {
				b   []Record
				err error
			}
			done := make(chan result, 1)
			go func() {
				b, err := s.Batch(ctx, 0, 0)
				done <- result{b, err}
			}()
			if tt.then != nil {
				waitUntilWaiting(t, s)
				tt.then(s)
			}
			var r result
			select {
			case r = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Batch did not return")
			}
			if !errors.Is(r.err, tt.wantErr) {
				t.Fatalf("Batch error = %v, want %v", r.err, tt.wantErr)
			}
			if tt.wantRec {
				checkSeq(t, r.b, []int{7})
			}
		})
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	dir := privateTempDir(t)
	s, err := New(Options{Dir: dir, MemBytes: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		s.Push(rec(i, 100), true)
	}
	if len(spillFiles(t, dir)) == 0 {
		t.Fatal("nothing spilled")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if f := spillFiles(t, dir); len(f) != 0 {
		t.Errorf("spill files left after Close: %v", f)
	}
	if s.Push(rec(0, 1), false) {
		t.Error("Push after Close succeeded")
	}
	if _, err := s.Batch(context.Background(), 1, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Batch after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	t.Run("removes leftovers", func(t *testing.T) {
		t.Parallel()
		dir := privateTempDir(t)
		leftovers := []string{"spool-0000000000000001.seg", "spool-0000000000000002.seg"}
		kept := []string{"notes.txt", "spool-1.seg.bak"}
		for _, name := range append(leftovers, kept...) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("old"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		s := setup(t, Options{Dir: dir})
		for _, name := range leftovers {
			if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("leftover %s: stat error %v, want not exist", name, err)
			}
		}
		for _, name := range kept {
			if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
				t.Errorf("unrelated file %s: %v", name, err)
			}
		}
		if s.Len() != 0 {
			t.Errorf("Len = %d, leftovers must not be replayed", s.Len())
		}
	})
	t.Run("creates the directory", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(privateTempDir(t), "a", "b")
		setup(t, Options{Dir: dir})
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o700 {
			t.Errorf("mode %v, want 0700", fi.Mode().Perm())
		}
	})
	t.Run("needs a directory", func(t *testing.T) {
		t.Parallel()
		if _, err := New(Options{}); err == nil {
			t.Error("New without Dir succeeded")
		}
	})
}

// TestNewRefusesPlantedDirectory is the attack on a predictable spool path:
// a local user points it, by symlink, at a directory of root's, where a
// start-up would delete spill-named files and an outage would write. New
// refuses, and touches nothing there.
func TestNewRefusesPlantedDirectory(t *testing.T) {
	base := privateTempDir(t)
	victim := filepath.Join(base, "victim")
	if err := os.Mkdir(victim, 0o700); err != nil {
		t.Fatal(err)
	}
	precious := filepath.Join(victim, segPrefix+"precious"+segSuffix)
	if err := os.WriteFile(precious, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(base, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	planted := filepath.Join(shared, "task-job-spool-x")
	if err := os.Symlink(victim, planted); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(shared, "open") // writable by others
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{planted, planted + "/sub", open, "relative/spool"} {
		s, err := New(Options{Dir: dir})
		if err == nil {
			s.Close()
			t.Errorf("New(%s) accepted it", dir)
			continue
		}
		if !strings.Contains(err.Error(), "spool_dir") {
			t.Errorf("New(%s) = %v; the error should name spool_dir", dir, err)
		}
	}
	if _, err := os.Stat(precious); err != nil {
		t.Errorf("a file in the symlink's target was removed: %v", err)
	}
	// Made fresh, it is private.
	fresh := filepath.Join(shared, "fresh")
	setup(t, Options{Dir: fresh})
	if fi, err := os.Lstat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("a new spool directory: %v, %v; want mode 0700", fi.Mode(), err)
	}
}
