package history

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kafkaPartitions is the executors' kafka_partitions: as many as the
// most executors a history runs, so that each can own a partition of the
// tasks topic (README, "What differs from Redis").
const kafkaPartitions = 3

// kafkaBroker is franz-go's in-process broker (kfake), started in the test
// process with a data directory and a fixed port, so that a restart brings
// it back with its topics, offsets and groups at the address the
// executors know. The harness is a client as the README describes one:
// tasks are produced to the tasks topic keyed by id (as `task-job submit`
// does), kills to the control topic, and the logs topic is read from its
// start, every partition, in no group.
//
// Kafka histories have no network faults: a Kafka client dials the
// address the broker advertises in its metadata, not the one it was
// given, so a TCP proxy in front of the broker would carry only the first
// connection and cut or delay nothing after it.
type kafkaBroker struct {
	t    testing.TB
	opts []kfake.Opt
	mu   sync.Mutex
	kf   *kfake.Cluster // nil while stopped
	addr string
	cl   *kgo.Client
	next map[int32]int64 // the logs topic's offset to read next, per partition
}

func newKafkaBroker(t testing.TB, dir string) *kafkaBroker {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	b := &kafkaBroker{t: t, next: map[int32]int64{}, opts: []kfake.Opt{
		kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(500 * time.Millisecond),
		kfake.DataDir(dir), kfake.Ports(port),
	}}
	if b.kf, err = kfake.NewCluster(b.opts...); err != nil {
		t.Fatal(err)
	}
	b.addr = b.kf.ListenAddrs()[0]
	// The broker closes last (cleanups run in reverse); a restart may
	// have replaced it.
	t.Cleanup(func() {
		if !b.isUp() {
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		b.kf.Close()
	})
	// The executors create the topics when they start; until then the
	// client looks them up again often.
	b.cl, err = kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.ConsumeTopics(logsList),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MetadataMinAge(200*time.Millisecond), kgo.MetadataMaxAge(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.cl.Close)
	return b
}

func (b *kafkaBroker) name() string    { return "broker" }
func (b *kafkaBroker) target() string  { return "" }
func (b *kafkaBroker) waiting() string { return "Kafka is not usable yet" }

func (b *kafkaBroker) keys(string) map[string]any {
	return map[string]any{"transport": "kafka", "kafka_brokers": []string{b.addr},
		"kafka_partitions": kafkaPartitions, "queue_name": queueName}
}

// errBrokerDown is a produce while the broker is stopped: the client's
// records would wait in its buffer for the restart, so it gives up at
// once, as a Redis push to a stopped server fails, and the history knows
// the message was not accepted.
var errBrokerDown = errors.New("the broker is down")

func (b *kafkaBroker) isUp() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.kf != nil
}

func (b *kafkaBroker) produce(r *kgo.Record) error {
	if !b.isUp() {
		return errBrokerDown
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return b.cl.ProduceSync(ctx, r).FirstErr()
}

// submit produces the task keyed by its id; a duplicate is the same bytes
// with the same key, so the same partition. A tube routes nothing on Kafka
// (one tasks topic), and Kafka plans have none.
func (b *kafkaBroker) submit(s taskSpec) error {
	return b.produce(&kgo.Record{Topic: queueName, Key: []byte(s.ID), Value: []byte(s.taskJSON())})
}

func (b *kafkaBroker) kill(id string) error {
	return b.produce(&kgo.Record{Topic: ctrlList, Value: []byte(killJSON(id))})
}

func (b *kafkaBroker) fetch(final bool) ([]logMsg, error) {
	var out []logMsg
	take := func(fs kgo.Fetches) {
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < b.next[r.Partition] {
				return // read again after a reconnect
			}
			b.next[r.Partition] = r.Offset + 1
			out = append(out, logMsg{Part: int(r.Partition), Pos: int(r.Offset), Raw: string(r.Value)})
		})
	}
	// What is buffered, or what comes within a moment (a cancelled context
	// would return nothing at all).
	wait, stop := context.WithTimeout(context.Background(), 30*time.Millisecond)
	take(b.cl.PollRecords(wait, 0))
	stop()
	if !final {
		return out, nil
	}
	if !b.isUp() {
		return out, errBrokerDown
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(b.cl).ListEndOffsets(ctx, logsList)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return out, fmt.Errorf("the logs topic's end offsets: %w", err)
	}
	behind := func() bool {
		left := false
		ends.Each(func(o kadm.ListedOffset) { left = left || b.next[o.Partition] < o.Offset })
		return left
	}
	for behind() {
		fs := b.cl.PollRecords(ctx, 0)
		if ctx.Err() != nil {
			return out, fmt.Errorf("reading the logs topic to its end: %w", ctx.Err())
		}
		take(fs)
	}
	return out, nil
}

// stop closes the in-process broker; it has no SIGKILL, and kill changes
// nothing (its data directory is what a restart reads).
func (b *kafkaBroker) stop(bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.kf.Close()
	b.kf = nil
}

// restart starts a new broker on the same data directory and port. The
// port may take a moment to be free again.
func (b *kafkaBroker) restart() {
	for i := 0; ; i++ {
		kf, err := kfake.NewCluster(b.opts...)
		if err == nil {
			b.mu.Lock()
			b.kf = kf
			b.mu.Unlock()
			return
		}
		if i == 50 {
			b.t.Fatalf("restarting the broker on %s: %v", b.addr, err)
		}
		time.Sleep(100 * time.Millisecond) // waiting for the port
	}
}
