package kafkaqueue

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/queue/queuetest"
)

// The broker contract on the in-process broker. Some of its cases state
// what a Redis list does and a topic cannot (README, Kafka section: a task
// put back goes to the tail, a queued task is not removed by a kill, a
// partition's records go to the one member that owns it), so it runs on
// request: go test ./queue/kafkaqueue -run Contract -contract
var contract = flag.Bool("contract", false, "run the queuetest contract against the Kafka transport")

func TestContract(t *testing.T) {
	if !*contract {
		t.Log("the contract runs with -contract (see the README's Kafka section for the cases it does not pass)")
		return
	}
	queuetest.Run(t, func(t *testing.T, cfg queuetest.Config) queuetest.Env {
		c := startKafka(t)
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return &contractEnv{c: c, cl: cl, cfg: cfg, names: testNames()}
	})
}

type contractEnv struct {
	c     *kfake.Cluster
	cl    *kgo.Client
	cfg   queuetest.Config
	names Names
}

func (e *contractEnv) topics() Topics { return TopicsFor(e.names) }

func (e *contractEnv) Broker(t *testing.T, executor string) queue.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// One partition: the task list's order is the topic's.
	q, err := New(ctx, e.c.ListenAddrs(), nil, Options{Names: e.names, ExecutorID: executor, TTL: e.cfg.TTL,
		MaxTaskBytes: e.cfg.MaxTaskBytes, Retention: e.cfg.Retention, Partitions: 1, CreateTopics: true, SessionTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func (e *contractEnv) produce(t *testing.T, topic string, raw []byte) {
	t.Helper()
	e.Broker(t, "setup") // creates the topics if no broker did yet
	if err := e.cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: raw}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func (e *contractEnv) Submit(t *testing.T, raw []byte) { e.produce(t, e.topics().Tasks, raw) }
func (e *contractEnv) SubmitControl(t *testing.T, raw []byte) {
	e.produce(t, e.topics().Control, raw)
}

// read returns topic's records from offset from (per partition) to its end.
func (e *contractEnv) read(t *testing.T, topic string, from map[int32]int64) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	adm := kadm.NewClient(e.cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	start := map[int32]kgo.Offset{}
	want := 0
	ends.Each(func(o kadm.ListedOffset) {
		start[o.Partition] = kgo.NewOffset().At(from[o.Partition])
		want += int(o.Offset - from[o.Partition])
	})
	if want <= 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.c.ListenAddrs()...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out [][]byte
	for len(out) < want && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r.Value) })
	}
	return out
}

func (e *contractEnv) Published(t *testing.T) [][]byte {
	return e.read(t, e.topics().Logs, map[int32]int64{})
}

// Queued is what the group has not committed yet.
func (e *contractEnv) Queued(t *testing.T) [][]byte {
	t.Helper()
	adm := kadm.NewClient(e.cl)
	from := map[int32]int64{}
	if os, err := adm.FetchOffsets(context.Background(), e.names.Tasks+"-executors"); err == nil {
		os.Each(func(o kadm.OffsetResponse) {
			if o.Topic == e.topics().Tasks && o.At >= 0 {
				from[o.Partition] = o.At
			}
		})
	}
	return e.read(t, e.topics().Tasks, from)
}

func (e *contractEnv) Expire(t *testing.T, executor string) {
	t.Helper()
	if err := ExpireExecutor(context.Background(), e.cl, e.topics(), executor); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // every broker's view reads it
}
