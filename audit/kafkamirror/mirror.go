// Package kafkamirror copies an executor's audit log to a Kafka topic, the
// Kafka transport's sibling of audit/redismirror: a deployment without
// Redis keeps a copy of every executor's log off the host, where a tail
// rewritten with recomputed hashes, or a log removed, differs from it.
//
// The executors of one deployment share the topic (the transport's
// Topics().Audit). Each record is one line of the log, keyed by executor
// id, with the line's seq in the header "seq"; the partition is the
// key's hash, chosen here rather than by the client, so that a restarted
// mirror knows which partition holds its records and resumes after the
// newest of them. The idempotent producer keeps a session's records in
// order and without duplicates; a record whose acknowledgement was lost is
// found by the next Resume, so it is not copied twice either.
package kafkamirror

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/audit"
)

// callTimeout bounds one read-back or copy, so an outage is reported
// (OnError) and retried rather than waited out in silence.
const callTimeout = 15 * time.Second

// Options tune a Mirror.
type Options struct {
	// Executor is the executor id, the key of this log's records (required).
	Executor string
	// PollInterval, RetryInterval and OnError are audit.MirrorOptions'.
	PollInterval, RetryInterval time.Duration
	OnError                     func(error)
}

// Mirror copies one audit log to the topic in the background.
type Mirror struct {
	*audit.Mirror
	store *topicStore
}

// Start starts copying the log at basePath to topic, which must exist.
// base holds the seed brokers and the connection options (TLS, SASL).
func Start(basePath string, base []kgo.Opt, topic string, opts Options) (*Mirror, error) {
	if opts.Executor == "" {
		return nil, errors.New("audit: kafka mirror: no executor id to key the records with")
	}
	cl, err := kgo.NewClient(append(base,
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		// Records wait for Append's Flush, so that each chunk is one
		// record batch (see Append).
		kgo.ManualFlushing(),
		// The mirror's context never ends: without this, a produce during
		// an outage would wait for the brokers forever and never say so.
		kgo.RecordDeliveryTimeout(callTimeout),
	)...)
	if err != nil {
		return nil, fmt.Errorf("audit: kafka mirror: %w", err)
	}
	s := &topicStore{cl: cl, base: base, topic: topic, executor: opts.Executor, partition: -1}
	m := audit.StartMirror(basePath, s, audit.MirrorOptions{PollInterval: opts.PollInterval, RetryInterval: opts.RetryInterval, OnError: opts.OnError})
	return &Mirror{Mirror: m, store: s}, nil
}

// Close stops the mirror and its client.
func (m *Mirror) Close() error {
	m.Mirror.Close()
	m.store.cl.Close()
	return nil
}

// topicStore is an audit.MirrorStore on a Kafka topic.
type topicStore struct {
	cl        *kgo.Client
	base      []kgo.Opt
	topic     string
	executor  string
	partition int32 // the key's partition, known after Resume
}

func (s *topicStore) Name() string {
	return fmt.Sprintf("the mirror topic %s (executor %s)", s.topic, s.executor)
}

// Partition returns the partition that holds executor's records in a topic
// of n partitions: the hash the Kafka clients use for a keyed record.
func Partition(topic, executor string, n int) int32 {
	p := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	return int32(p.Partition(&kgo.Record{Key: []byte(executor)}, n))
}

// Resume implements audit.MirrorStore: it reads the key's partition back
// from its end, a growing window at a time, until it finds this
// executor's newest record.
func (s *topicStore) Resume(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	first, end, err := s.bounds(ctx)
	if err != nil {
		return 0, err
	}
	for step := int64(256); end > first; step *= 2 {
		from := max(first, end-step)
		seq, found, err := s.newestIn(ctx, from, end)
		if err != nil || found {
			return seq, err
		}
		end = from
	}
	return 0, nil
}

// bounds finds the key's partition and returns its start and end offsets.
func (s *topicStore) bounds(ctx context.Context) (first, end int64, err error) {
	adm := kadm.NewClient(s.cl)
	ends, err := adm.ListEndOffsets(ctx, s.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("audit: cannot read %s: %w", s.Name(), err)
	}
	n := len(ends[s.topic])
	if n == 0 {
		return 0, 0, fmt.Errorf("audit: %s does not exist", s.Name())
	}
	s.partition = Partition(s.topic, s.executor, n)
	starts, err := adm.ListStartOffsets(ctx, s.topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("audit: cannot read %s: %w", s.Name(), err)
	}
	return starts[s.topic][s.partition].Offset, ends[s.topic][s.partition].Offset, nil
}

// newestIn returns the seq of this executor's newest record in [from, end).
func (s *topicStore) newestIn(ctx context.Context, from, end int64) (uint64, bool, error) {
	cl, err := kgo.NewClient(append(s.base, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		s.topic: {s.partition: kgo.NewOffset().At(from)},
	}))...)
	if err != nil {
		return 0, false, err
	}
	defer cl.Close()
	var seq uint64
	var found bool
	for next := from; next < end; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return 0, false, fmt.Errorf("audit: reading %s back: %w", s.Name(), err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return 0, false, fmt.Errorf("audit: reading %s back: %w", s.Name(), ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			next = r.Offset + 1
			if r.Offset >= end || string(r.Key) != s.executor {
				return
			}
			if v, ok := recordSeq(r); ok {
				seq, found = v, true
			}
		})
	}
	return seq, found, nil
}

// recordSeq reads a record's seq from its header.
func recordSeq(r *kgo.Record) (uint64, bool) {
	for _, h := range r.Headers {
		if h.Key == "seq" {
			v, err := strconv.ParseUint(string(h.Value), 10, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// chunkBytes bounds the lines of one produce, well under the producer's
// batch limit (ProducerBatchMaxBytes, 1 MB by default), so that a chunk is
// one record batch, which the broker appends whole or not at all.
const chunkBytes = 256 << 10

// Append implements audit.MirrorStore. Its count must be a prefix: a
// store that held seq 27 without seq 11 would resume after 27 and never
// copy 11. So the lines go a chunk at a time, each one record batch, the
// next only once the last is stored; ProduceSync alone could split a call
// into batches, and when the broker refuses one (an error the client does
// not retry) still store the batches after it.
func (s *topicStore) Append(ctx context.Context, lines []audit.MirrorLine) (int, error) {
	if s.partition < 0 {
		return 0, errors.New("audit: kafka mirror: Append before Resume")
	}
	n := 0
	for n < len(lines) {
		end, size := n, 0
		for end < len(lines) && (end == n || size+len(lines[end].Line) <= chunkBytes) {
			size += len(lines[end].Line)
			end++
		}
		stored, err := s.produceChunk(ctx, lines[n:end])
		n += stored
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// produceChunk produces lines and returns how many of them, from the
// first, are stored.
func (s *topicStore) produceChunk(ctx context.Context, lines []audit.MirrorLine) (int, error) {
	errs := make([]error, len(lines))
	var wg sync.WaitGroup
	for i, l := range lines {
		r := &kgo.Record{Topic: s.topic, Partition: s.partition, Key: []byte(s.executor), Value: l.Line,
			Headers: []kgo.RecordHeader{{Key: "seq", Value: strconv.AppendUint(nil, l.Seq, 10)}}}
		wg.Add(1)
		s.cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			errs[i] = err
			wg.Done()
		})
	}
	ferr := s.cl.Flush(ctx)
	wg.Wait() // each record ends by its delivery timeout at the latest
	for i, err := range errs {
		if err != nil {
			return i, err
		}
	}
	return len(lines), ferr
}

// Verify compares the log at basePath with executor's records in topic
// (audit.CompareMirror): the check `task-job audit -verify` makes on a
// Kafka deployment. base holds the seed brokers and connection options.
// It reads the key's partition from its start to the end it had when the
// check began, so a live log's newer copies are not waited for.
func Verify(ctx context.Context, basePath string, base []kgo.Opt, topic, executor string) (audit.MirrorReport, error) {
	if executor == "" {
		return audit.MirrorReport{}, errors.New("audit: kafka mirror: no executor id: the topic's records are keyed by it")
	}
	cl, err := kgo.NewClient(base...)
	if err != nil {
		return audit.MirrorReport{}, fmt.Errorf("audit: kafka mirror: %w", err)
	}
	defer cl.Close()
	s := &topicStore{cl: cl, base: base, topic: topic, executor: executor, partition: -1}
	last, err := s.Resume(ctx)
	if err != nil {
		return audit.MirrorReport{}, err
	}
	first, end, err := s.bounds(ctx)
	if err != nil {
		return audit.MirrorReport{}, err
	}
	rd, err := kgo.NewClient(append(base, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {s.partition: kgo.NewOffset().At(first)},
	}))...)
	if err != nil {
		return audit.MirrorReport{}, fmt.Errorf("audit: kafka mirror: %w", err)
	}
	defer rd.Close()
	var buf []audit.MirrorLine
	next, prev := first, uint64(0)
	return audit.CompareMirror(basePath, audit.MirrorCopy{Name: s.Name(), Last: last, Next: func() (audit.MirrorLine, bool, error) {
		for len(buf) == 0 && next < end {
			fs := rd.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				return audit.MirrorLine{}, false, fmt.Errorf("audit: reading %s: %w", s.Name(), err)
			}
			var ferr error
			fs.EachError(func(_ string, _ int32, err error) { ferr = err })
			if ferr != nil {
				return audit.MirrorLine{}, false, fmt.Errorf("audit: reading %s: %w", s.Name(), ferr)
			}
			fs.EachRecord(func(r *kgo.Record) {
				next = r.Offset + 1
				if r.Offset >= end || string(r.Key) != executor {
					return
				}
				// A produce retried across sessions may repeat a seq;
				// the first copy is the one compared.
				if seq, ok := recordSeq(r); ok && seq > prev {
					prev = seq
					buf = append(buf, audit.MirrorLine{Seq: seq, Line: r.Value})
				}
			})
		}
		if len(buf) == 0 {
			return audit.MirrorLine{}, false, nil
		}
		e := buf[0]
		buf = buf[1:]
		return e, true, nil
	}})
}
