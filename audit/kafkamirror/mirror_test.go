package kafkamirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/taskjob/task-job/audit"
)

// startKafka starts franz-go's in-process broker with a three-partition
// audit topic (the transport makes one partition; an operator may make
// more, and the mirror must still find its records).
func startKafka(t *testing.T) (*kfake.Cluster, []kgo.Opt, string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	base := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	cl, err := kgo.NewClient(base...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const topic = "q_audit"
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	return c, base, topic
}

func start(t *testing.T, path string, base []kgo.Opt, topic, executor string) *Mirror {
	t.Helper()
	m, err := Start(path, base, topic, Options{Executor: executor, PollInterval: 5 * time.Millisecond, RetryInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func waitMirror(t *testing.T, m *Mirror, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := m.Wait(ctx, seq); err != nil {
		t.Fatal(err)
	}
}

func openLog(t *testing.T, path string, opts audit.Options) *audit.Log {
	t.Helper()
	l, err := audit.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func appendN(t *testing.T, l *audit.Log, n int) {
	t.Helper()
	for i := range n {
		if err := l.Append(audit.Record{Kind: audit.KindReceived, ID: fmt.Sprint("t", i), Size: i}); err != nil {
			t.Fatal(err)
		}
	}
}

// topicLines reads every record of executor from the topic, in order.
func topicLines(t *testing.T, base []kgo.Opt, topic, executor string) (seqs []uint64, lines [][]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(base...)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	cl.Close()
	if err != nil {
		t.Fatal(err)
	}
	p := Partition(topic, executor, len(ends[topic]))
	end := ends[topic][p].Offset
	rd, err := kgo.NewClient(append(base, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().AtStart()}}))...)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	for next := int64(0); next < end; {
		fs := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("reading the topic timed out")
		}
		fs.EachRecord(func(r *kgo.Record) {
			next = r.Offset + 1
			if string(r.Key) != executor {
				return
			}
			s, ok := recordSeq(r)
			if !ok {
				t.Fatalf("record at %d without a seq", r.Offset)
			}
			seqs, lines = append(seqs, s), append(lines, r.Value)
		})
	}
	return seqs, lines
}

// localLines reads the log's lines, rotated files first, by seq.
func localLines(t *testing.T, path string) map[uint64][]byte {
	t.Helper()
	files, err := audit.ChainFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64][]byte{}
	for _, cf := range files {
		data, err := os.ReadFile(cf.Path)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
			r, err := audit.ParseLine(line)
			if err != nil {
				t.Fatal(err)
			}
			out[r.Seq] = line
		}
	}
	return out
}

// checkCopy asserts the topic holds each of the log's records once, in
// seq order, byte for byte.
func checkCopy(t *testing.T, path string, base []kgo.Opt, topic, executor string, want uint64) {
	t.Helper()
	seqs, lines := topicLines(t, base, topic, executor)
	local := localLines(t, path)
	if uint64(len(seqs)) != want {
		t.Fatalf("executor %s: the topic holds %d records, the log %d: %v", executor, len(seqs), want, seqs)
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("executor %s: record %d of the topic has seq %d: %v", executor, i, s, seqs)
		}
		if !bytes.Equal(lines[i], local[s]) {
			t.Fatalf("executor %s: seq %d differs from the local line", executor, s)
		}
	}
}

// Two executors share the topic; each copies its log across rotations
// and a restart, and resumes after its own newest record even when the
// other executor wrote many records after it (the read-back window grows).
func TestMirrorSharedTopicAndResume(t *testing.T) {
	t.Parallel()
	_, base, topic := startKafka(t)
	dir := t.TempDir()
	pa, pb := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	la, lb := openLog(t, pa, audit.Options{MaxBytes: 8192}), openLog(t, pb, audit.Options{})
	ma, mb := start(t, pa, base, topic, "exec-a"), start(t, pb, base, topic, "exec-b")
	appendN(t, la, 60) // rotates
	appendN(t, lb, 10)
	waitMirror(t, ma, la.Seq())
	waitMirror(t, mb, lb.Seq())
	ma.Close()

	// While a is down, b writes enough that a's newest record is more
	// than one read-back window from the end, even if both hash to one
	// partition.
	appendN(t, lb, 700)
	waitMirror(t, mb, lb.Seq())
	appendN(t, la, 25)
	ma = start(t, pa, base, topic, "exec-a")
	if got := ma.Mirrored(); got > 60 {
		t.Fatalf("restarted mirror claims seq %d before copying", got)
	}
	waitMirror(t, ma, la.Seq())
	ma.Close()
	mb.Close()
	checkCopy(t, pa, base, topic, "exec-a", la.Seq())
	checkCopy(t, pb, base, topic, "exec-b", lb.Seq())
}

// Produces cut on the wire, and refused outright, delay the copy and are
// reported; nothing is lost or copied twice.
func TestMirrorProduceFaults(t *testing.T) {
	t.Parallel()
	c, base, topic := startKafka(t)
	path := filepath.Join(t.TempDir(), "a.jsonl")
	l := openLog(t, path, audit.Options{})
	var errs atomic.Int32
	m, err := Start(path, base, topic, Options{Executor: "exec-a", PollInterval: 5 * time.Millisecond, RetryInterval: 20 * time.Millisecond,
		OnError: func(error) { errs.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	appendN(t, l, 10)
	waitMirror(t, m, 10)
	var faults atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		n := faults.Add(1)
		switch {
		case n <= 3:
			return nil, errors.New("cut"), true
		case n <= 6:
			// Refused: the broker answers every partition with an error
			// the client does not retry on its own.
			r := req.(*kmsg.ProduceRequest)
			resp := r.ResponseKind().(*kmsg.ProduceResponse)
			for _, rt := range r.Topics {
				st := kmsg.NewProduceResponseTopic()
				st.Topic, st.TopicID = rt.Topic, rt.TopicID
				for _, rp := range rt.Partitions {
					sp := kmsg.NewProduceResponseTopicPartition()
					sp.Partition = rp.Partition
					sp.ErrorCode = 87 // INVALID_RECORD
					st.Partitions = append(st.Partitions, sp)
				}
				resp.Topics = append(resp.Topics, st)
			}
			return resp, nil, true
		}
		return nil, nil, false
	})
	appendN(t, l, 30)
	waitMirror(t, m, l.Seq())
	if faults.Load() < 6 {
		t.Fatalf("only %d faults injected", faults.Load())
	}
	if errs.Load() == 0 {
		t.Error("refused produces were never reported")
	}
	m.Close()
	checkCopy(t, path, base, topic, "exec-a", l.Seq())
}

// A topic that holds more of this executor's log than the local file
// (the local tail removed) is reported.
func TestMirrorAheadOfLocalLog(t *testing.T) {
	t.Parallel()
	_, base, topic := startKafka(t)
	path := filepath.Join(t.TempDir(), "a.jsonl")
	l := openLog(t, path, audit.Options{})
	m := start(t, path, base, topic, "exec-a")
	appendN(t, l, 20)
	waitMirror(t, m, 20)
	m.Close()
	l.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	l2 := openLog(t, path, audit.Options{})
	appendN(t, l2, 3)
	m = start(t, path, base, topic, "exec-a")
	defer m.Close()
	deadline := time.Now().Add(10 * time.Second)
	for m.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := m.Err(); err == nil || !bytes.Contains([]byte(err.Error()), []byte("lost its tail or was replaced")) {
		t.Fatalf("mirror error = %v, want the local log reported as behind the topic", err)
	}
}
