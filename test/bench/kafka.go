package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/executor"
	"github.com/taskjob/task-job/jail"
	"github.com/taskjob/task-job/queue/kafkaqueue"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/sandbox"
)

// kafkaBench is the Kafka transport's part of the run: franz-go's
// in-process broker, started here, and a producer for the clients' side.
type kafkaBench struct {
	broker *kfake.Cluster
	cl     *kgo.Client
}

func startKafkaBench() (*kafkaBench, error) {
	broker, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker.ListenAddrs()...), kgo.ProducerLinger(0))
	if err != nil {
		broker.Close()
		return nil, err
	}
	return &kafkaBench{broker: broker, cl: cl}, nil
}

func (k *kafkaBench) close() {
	k.cl.Close()
	k.broker.Close()
}

// startKafkaExecutor is startExecutor on the Kafka transport: its own
// topics (queue_name "bench-kafka-<phase>"), wired as the task-job binary
// wires "transport": "kafka".
func (b *bench) startKafkaExecutor(k *kafkaBench, phase string, concurrency int, runner *sandbox.Runner, configure ...func(*executor.Options)) (*runningExecutor, error) {
	j, err := jail.New(jail.Options{Dir: b.cmdDir})
	if err != nil {
		return nil, err
	}
	id := "bench-kafka-" + phase
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := kafkaqueue.New(ctx, k.broker.ListenAddrs(), nil, kafkaqueue.Options{
		Names: kafkaqueue.Names{Tasks: id}, ExecutorID: id, Retention: time.Hour, CreateTopics: true,
		Logger: b.log.Named(id),
	})
	if err != nil {
		return nil, err
	}
	t := q.Topics()
	opts := executor.Options{
		ExecutorID: id, Concurrency: concurrency, Logs: true,
		SpoolDir: filepath.Join(b.tmp, "spool-kafka-"+phase),
		Env:      taskEnv,
		Broker:   q, Jail: j, Runner: runner, Logger: b.log.Named(id),
	}
	for _, f := range configure {
		f(&opts)
	}
	ex, err := executor.New(opts)
	if err != nil {
		q.Close()
		return nil, err
	}
	rctx, rcancel := context.WithCancel(context.Background())
	r := &runningExecutor{names: redisqueue.Names{Tasks: t.Tasks, Control: t.Control, Logs: t.Logs}, cancel: rcancel, done: make(chan error, 1)}
	go func() {
		err := ex.Run(rctx)
		q.Close()
		r.done <- err
	}()
	return r, nil
}

// collectKafka is collect on a logs topic: a reader in no group, from the
// start of the topic (each measurement has topics of its own), handing on
// what each fetch brings.
func (b *bench) collectKafka(k *kafkaBench, topic string) (*collector, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.broker.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(time.Second))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{out: make(chan batch, 4096), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer cl.Close()
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			at := time.Now()
			fs.EachError(func(_ string, _ int32, err error) {
				if ctx.Err() == nil {
					fmt.Fprintf(os.Stderr, "bench: reading %s: %v\n", topic, err)
				}
			})
			var vals []string
			fs.EachRecord(func(r *kgo.Record) { vals = append(vals, string(r.Value)) })
			if len(vals) == 0 {
				continue
			}
			select {
			case c.out <- batch{vals: vals, at: at}:
			case <-ctx.Done():
			}
		}
	}()
	return c, nil
}

// produceTasks submits tasks as `task-job submit` does over Kafka: each
// keyed by its id. It returns once all are acknowledged.
func (k *kafkaBench) produceTasks(ctx context.Context, topic string, ids, raws []string) error {
	recs := make([]*kgo.Record, len(raws))
	for i := range raws {
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(ids[i]), Value: []byte(raws[i])}
	}
	return k.cl.ProduceSync(ctx, recs...).FirstErr()
}

// kafkaDispatch is dispatchSeries on Kafka: produce → the stamp the task
// prints as its first instruction, one task at a time.
func (b *bench) kafkaDispatch(ctx context.Context, k *kafkaBench, v variant, iters int) (samples, error) {
	ex, err := b.startKafkaExecutor(k, "latency", 1, v.runner)
	if err != nil {
		return nil, err
	}
	defer ex.stop()
	col, err := b.collectKafka(k, ex.names.Logs)
	if err != nil {
		return nil, err
	}
	defer col.stop()
	var s samples
	for i := -warmup; i < iters; i++ {
		id := fmt.Sprintf("kdispatch-%d", i)
		t0 := time.Now()
		if err := k.produceTasks(ctx, ex.names.Tasks, []string{id}, []string{taskJSON(id, stampProgram, nil)}); err != nil {
			return nil, err
		}
		msgs, _, err := col.waitDone(id, taskTimeout)
		if err != nil {
			return nil, err
		}
		stamp, err := stampOf(msgs)
		if err != nil {
			return nil, err
		}
		if i >= 0 {
			s = append(s, time.Duration(stamp-t0.UnixNano()))
		}
		time.Sleep(gap)
	}
	return s, nil
}

// kafkaThroughput is taskJobThroughput on Kafka: n trivial tasks produced
// at once, first produce → last done in hand, each done exactly once.
func (b *bench) kafkaThroughput(ctx context.Context, k *kafkaBench, v variant, concurrency, n int) (float64, error) {
	phase := fmt.Sprintf("flood-c%d", concurrency)
	ex, err := b.startKafkaExecutor(k, phase, concurrency, v.runner)
	if err != nil {
		return 0, err
	}
	defer ex.stop()
	col, err := b.collectKafka(k, ex.names.Logs)
	if err != nil {
		return 0, err
	}
	defer col.stop()
	ids, raws := make([]string, n), make([]string, n)
	pending := make(map[string]bool, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("k%s-%d", phase, i)
		raws[i] = taskJSON(ids[i], trueScript, nil)
		pending[ids[i]] = true
	}
	t0 := time.Now()
	if err := k.produceTasks(ctx, ex.names.Tasks, ids, raws); err != nil {
		return 0, err
	}
	last, err := waitAllDone(col, pending, time.Minute+time.Duration(n)*10*time.Millisecond)
	if err != nil {
		return 0, err
	}
	return float64(n) / last.Sub(t0).Seconds(), nil
}

// kafkaLines is taskJobLines on Kafka.
func (b *bench) kafkaLines(ctx context.Context, k *kafkaBench, n int) (lineRun, error) {
	ex, err := b.startKafkaExecutor(k, "lines", 1, b.runner, func(o *executor.Options) {
		o.MaxOutputRate, o.MaxOutputMessages, o.MaxOutputBytes = 1<<30, 1<<30, 1<<40
	})
	if err != nil {
		return lineRun{}, err
	}
	defer ex.stop()
	col, err := b.collectKafka(k, ex.names.Logs)
	if err != nil {
		return lineRun{}, err
	}
	defer col.stop()
	const id = "klines-0"
	t0 := time.Now()
	if err := k.produceTasks(ctx, ex.names.Tasks, []string{id}, []string{taskJSON(id, chattyScript, []string{strconv.Itoa(n)})}); err != nil {
		return lineRun{}, err
	}
	done, at, lines, err := verifyLines(col, id, n)
	if err != nil {
		return lineRun{}, err
	}
	if err := checkSucceeded(done); err != nil {
		return lineRun{}, err
	}
	if done.OutputDropped > 0 {
		return lineRun{}, fmt.Errorf("the executor dropped %d output bytes (output cap)", done.OutputDropped)
	}
	return lineRun{lines: lines, elapsed: at.Sub(t0)}, nil
}

// transportVariant is the variant the transport comparisons use: the
// sandbox off when the host runs it on by default.
func (b *bench) transportVariant() variant {
	vs := b.variants()
	return vs[len(vs)-1]
}

// kafkaRows measures the Kafka transport as the latency, throughput and
// lines rows measure Redis, and sets each beside the Redis figure of the
// same run (when that section ran).
func (b *bench) kafkaRows(ctx context.Context, rep *report) {
	progress("kafka: starting the in-process broker (kfake)")
	k, err := startKafkaBench()
	if err != nil {
		rep.fail("Kafka rows", err)
		return
	}
	defer k.close()
	// Dispatch and tasks/s with the sandbox off where it can be on: its
	// cost is the same on both transports and would hide theirs. Lines
	// with the default runner, as the Redis lines row.
	vs := b.transportVariant()
	beside := func(redis string) string {
		if redis == "" {
			return "Redis: not measured in this run"
		}
		return "Redis, same run: " + redis
	}

	what := "Kafka dispatch: produce → task running (p50 / p99)" + vs.label
	progress("kafka: dispatch latency")
	if s, err := b.kafkaDispatch(ctx, k, vs, b.cfg.latencyIters); err != nil {
		rep.fail(what, err)
	} else {
		r := row{what: what, taskJob: s.String(), baseline: beside(""), ratio: "–", target: "–"}
		if b.redisDispatch != nil {
			r.baseline = beside(b.redisDispatch.String())
			r.ratio = ratio(float64(s.p50()), float64(b.redisDispatch.p50()))
			r.target = fmt.Sprintf("– (%+.2f ms p50 against Redis)", float64(s.p50()-b.redisDispatch.p50())/float64(time.Millisecond))
		}
		rep.add(r)
	}

	const c = 4
	what = fmt.Sprintf("Kafka tasks/s, concurrency %d (%d × `exit 0`)%s", c, b.cfg.floodTasks, vs.label)
	progress(fmt.Sprintf("kafka: throughput at concurrency %d", c))
	if tj, err := b.kafkaThroughput(ctx, k, vs, c, b.cfg.floodTasks); err != nil {
		rep.fail(what, err)
	} else {
		r := row{what: what, taskJob: rate(tj, "tasks"), baseline: beside(""), ratio: "–", target: "–"}
		if b.redisRateC4 > 0 {
			r.baseline, r.ratio = beside(rate(b.redisRateC4, "tasks")), ratio(tj, b.redisRateC4)
		}
		rep.add(r)
	}

	what = fmt.Sprintf("Kafka log lines/s (`seq 1 %d`, produce → done)%s", b.cfg.lines, b.variants()[0].label)
	progress("kafka: log lines")
	if l, err := b.kafkaLines(ctx, k, b.cfg.lines); err != nil {
		rep.fail(what, err)
	} else {
		r := row{what: what, taskJob: fmt.Sprintf("%s (%d/%d in order, %.2f s)", rate(l.perSec(), "lines"), l.lines, b.cfg.lines, l.elapsed.Seconds()),
			baseline: beside(""), ratio: "–", target: "none lost: " + verdict(l.lines == b.cfg.lines)}
		if b.redisLines > 0 {
			r.baseline, r.ratio = beside(rate(b.redisLines, "lines")), ratio(l.perSec(), b.redisLines)
		}
		rep.add(r)
	}
	rep.notes = append(rep.notes,
		"Kafka rows: franz-go's in-process broker (kfake, one broker, in this process, so its CPU is in the figures), an in-process executor on `\"transport\": \"kafka\"` with the default topic settings, clients producing keyed by id and reading the logs topic in no group. kfake is not a production broker: the rows compare the transports' paths on one machine, not Kafka's own speed.")
}
