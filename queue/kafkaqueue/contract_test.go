package kafkaqueue

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/queue/queuetest"
)

// The broker contract on the in-process broker, but for the cases that
// state what a Redis list does and a topic does not, by design (README,
// Kafka section).
var differs = map[string]string{
	"TakeMovesToTakenInOrder":       "a taken task stays in the topic, uncommitted, until its claim",
	"DropAndRequeue":                "a put-back task goes to the tail of the topic, not its head",
	"RemoveQueued":                  "a queued record cannot be taken out of a topic; a kill ends it when an executor reaches it",
	"ControlsAndForwarding":         "every executor reads every kill: there is no shared control list to take from or forward to",
	"RecoverReportsLostAndRequeues": "a dead executor's taken, unclaimed tasks were never committed: its group gives them to a peer, not the recovery",
}

func TestContract(t *testing.T) {
	queuetest.RunExcept(t, func(t *testing.T, cfg queuetest.Config) queuetest.Env {
		c := startKafka(t)
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return &contractEnv{c: c, cl: cl, cfg: cfg, names: testNames()}
	}, differs)
}

type contractEnv struct {
	c      *kfake.Cluster
	cl     *kgo.Client
	cfg    queuetest.Config
	names  Names
	groups []string // the executors' task groups
}

func (e *contractEnv) topics() Topics { return TopicsFor(e.names) }

func (e *contractEnv) Broker(t *testing.T, executor string) queue.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// One partition: the task list's order is the topic's.
	// Each executor reads the tasks in a group of its own, so a second one
	// reads what the first has not committed (as after a rebalance) and the
	// cases can hand one id to two executors; in one group a partition's
	// records go to its one owner (tested in kafkaqueue_test.go).
	group := e.names.Tasks + "-" + executor
	e.groups = append(e.groups, group)
	q, err := New(ctx, e.c.ListenAddrs(), nil, Options{Names: e.names, ExecutorID: executor, TTL: e.cfg.TTL,
		MaxTaskBytes: e.cfg.MaxTaskBytes, Retention: e.cfg.Retention, Partitions: 1, CreateTopics: true, SessionTimeout: time.Second, group: group})
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

// Queued is what no executor's group has committed yet.
func (e *contractEnv) Queued(t *testing.T) [][]byte {
	t.Helper()
	adm := kadm.NewClient(e.cl)
	from := map[int32]int64{}
	for _, g := range e.groups {
		if os, err := adm.FetchOffsets(context.Background(), g); err == nil {
			os.Each(func(o kadm.OffsetResponse) {
				if o.Topic == e.topics().Tasks && o.At > from[o.Partition] {
					from[o.Partition] = o.At
				}
			})
		}
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
