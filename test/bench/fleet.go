package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/dispatch"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/registry"
	"github.com/taskjob/task-job/registry/etcdreg"
	"github.com/taskjob/task-job/registry/etcdreg/etcdtest"
)

// Targets of the fleet section.
const (
	// dispatcherOver is the most the dispatcher may add to dispatch
	// (RPUSH → task running) at p50, over the shared-queue path.
	dispatcherOver = time.Millisecond
	// assignTarget is the dispatcher's rate of assignments with nothing
	// running, in tasks/s.
	assignTarget = 10_000
)

// fleet is an etcd (embedded, as in the tests) and a registry on it.
type fleet struct {
	etcd *etcdtest.Server
	reg  *etcdreg.Registry
}

func (b *bench) startFleet(phase string) (*fleet, error) {
	etcd, err := etcdtest.Embed(filepath.Join(b.tmp, "etcd-"+phase))
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	reg, err := etcdreg.New(etcdreg.Options{Endpoints: []string{etcd.Endpoint()}, Prefix: "/task-job/" + names(phase).Tasks + "/", TTL: 10 * time.Second})
	if err != nil {
		etcd.Close()
		return nil, err
	}
	return &fleet{etcd: etcd, reg: reg}, nil
}

func (f *fleet) close() {
	f.reg.Close()
	f.etcd.Close()
}

// register puts a dispatched member serving the untubed list in the
// registry.
func (f *fleet) register(ctx context.Context, id string, slots int) (func(), error) {
	g, err := f.reg.Register(ctx, registry.Member{ID: id, Tubes: []string{""}, Slots: slots, Dispatched: true}, registry.Hooks{})
	if err != nil {
		return nil, err
	}
	return func() { _ = g.Close(context.Background()) }, nil
}

// dispatcher runs one replica on phase's lists until stop, and waits
// until it leads.
func (b *bench) dispatcher(f *fleet, phase string) (*dispatch.Dispatcher, func(), error) {
	rdb := redis.NewClient(&redis.Options{Addr: b.redis.addr, PoolSize: 8})
	q := redisqueue.New(rdb, redisqueue.Options{Names: names(phase), Retention: time.Hour})
	d := dispatch.New(dispatch.Options{
		Client: f.reg.Client(), Prefix: f.reg.Prefix(), ExecutorsPrefix: f.reg.ExecutorsPrefix(), CordonsPrefix: f.reg.CordonsPrefix(),
		Queue: q, TTL: 10 * time.Second, Name: "bench", Logger: b.log.Named("dispatcher"),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done; q.Close() }
	deadline := time.Now().Add(20 * time.Second)
	for d.Token() == 0 {
		if time.Now().After(deadline) {
			stop()
			return nil, nil, fmt.Errorf("the dispatcher did not lead within 20 s")
		}
		time.Sleep(time.Millisecond)
	}
	return d, stop, nil
}

// dispatchedLatency is dispatch through a dispatcher: an executor with
// one slot takes only its assigned list, which a leader fills from the
// shared list.
func (b *bench) dispatchedLatency(ctx context.Context, half, iters int) (samples, error) {
	phase := fmt.Sprintf("fleet-dispatched-%d", half)
	f, err := b.startFleet(phase)
	if err != nil {
		return nil, err
	}
	defer f.close()
	ex, err := b.startExecutorOn(phase, 1, b.group, redisqueue.Options{Dispatched: true})
	if err != nil {
		return nil, err
	}
	col := b.collect(ex.names.Logs)
	defer col.stop()
	defer ex.stop()
	leave, err := f.register(ctx, "bench-"+phase, 1)
	if err != nil {
		return nil, err
	}
	defer leave()
	_, stop, err := b.dispatcher(f, phase)
	if err != nil {
		return nil, err
	}
	defer stop()
	return b.dispatchSeries(ctx, ex, col, phase, iters)
}

// directLatency is the same series on the shared-queue path, the
// executor taking from the list itself.
func (b *bench) directLatency(ctx context.Context, half, iters int) (samples, error) {
	phase := fmt.Sprintf("fleet-direct-%d", half)
	ex, err := b.startExecutorOn(phase, 1, b.group, redisqueue.Options{})
	if err != nil {
		return nil, err
	}
	col := b.collect(ex.names.Logs)
	defer col.stop()
	defer ex.stop()
	return b.dispatchSeries(ctx, ex, col, phase, iters)
}

// assignRate pushes n tasks to the shared list in front of an idle leader
// and three members that take nothing, and times until the leader has
// assigned them all.
func (b *bench) assignRate(ctx context.Context, n int) (float64, error) {
	const phase = "fleet-assign"
	f, err := b.startFleet(phase)
	if err != nil {
		return 0, err
	}
	defer f.close()
	for i := range 3 {
		leave, err := f.register(ctx, fmt.Sprintf("bench-%s-%d", phase, i), 1<<30)
		if err != nil {
			return 0, err
		}
		defer leave()
	}
	d, stop, err := b.dispatcher(f, phase)
	if err != nil {
		return 0, err
	}
	defer stop()
	time.Sleep(100 * time.Millisecond) // it has seen the members
	t0 := time.Now()
	if err := b.pushTasks(ctx, names(phase).Tasks, "assign", n); err != nil {
		return 0, err
	}
	deadline := t0.Add(5 * time.Minute)
	for d.Moves() < int64(n) {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d of %d tasks assigned after 5 minutes", d.Moves(), n)
		}
		time.Sleep(time.Millisecond)
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}

// pushTasks pushes n `exit 0` tasks to list, 1,000 per RPUSH.
func (b *bench) pushTasks(ctx context.Context, list, prefix string, n int) error {
	for i := 0; i < n; {
		var batch []any
		for ; i < n && len(batch) < 1000; i++ {
			batch = append(batch, taskJSON(fmt.Sprintf("%s-%d", prefix, i), trueScript, nil))
		}
		if err := b.rdb.RPush(ctx, list, batch...).Err(); err != nil {
			return err
		}
	}
	return nil
}

// bareMoveRate is the floor of any mover that takes one round trip per
// task: n sequential LMOVEs from one list to another.
func (b *bench) bareMoveRate(ctx context.Context, n int) (float64, error) {
	const src, dst = "bench:bare-move", "bench:bare-move:dst"
	if err := b.pushTasks(ctx, src, "bare-move", n); err != nil {
		return 0, err
	}
	defer b.rdb.Del(ctx, src, dst)
	t0 := time.Now()
	for range n {
		if err := b.rdb.LMove(ctx, src, dst, "LEFT", "RIGHT").Err(); err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}

// fleetRows adds the dispatcher's rows: dispatch latency through it
// against the shared-queue path in the same run, and its assignment rate.
func (b *bench) fleetRows(ctx context.Context, rep *report) {
	cfg := b.cfg
	// The two paths alternate in halves, so that the machine's drift
	// falls on both alike.
	var direct, via samples
	var errDirect, errVia error
	for half := range 2 {
		progress("fleet: dispatch latency, shared-queue path")
		d, err := b.directLatency(ctx, half, cfg.latencyIters/2)
		direct, errDirect = append(direct, d...), firstErr(errDirect, err)
		progress("fleet: dispatch latency through the dispatcher")
		v, err := b.dispatchedLatency(ctx, half, cfg.latencyIters/2)
		via, errVia = append(via, v...), firstErr(errVia, err)
	}
	what := "Fleet: dispatch through the dispatcher, RPUSH → task running (p50 / p99), sandbox off (process group)"
	switch {
	case errDirect != nil:
		rep.fail(what, fmt.Errorf("shared-queue path: %w", errDirect))
	case errVia != nil:
		rep.fail(what, errVia)
	default:
		over := via.p50() - direct.p50()
		rep.add(row{
			what:     what,
			taskJob:  via.String(),
			baseline: "shared-queue path, same executor " + direct.String(),
			ratio:    ratio(float64(via.p50()), float64(direct.p50())),
			target:   fmt.Sprintf("p50 ≤ +%s ms over the shared-queue path: %s (%+.2f ms)", ms(dispatcherOver), verdict(over <= dispatcherOver), float64(over)/float64(time.Millisecond)),
		})
	}

	n := 10 * cfg.floodTasks
	progress(fmt.Sprintf("fleet: %d tasks assigned by the dispatcher", n))
	tj, errTJ := b.assignRate(ctx, n)
	progress(fmt.Sprintf("fleet: %d bare LMOVEs", n))
	bare, errBare := b.bareMoveRate(ctx, n)
	what = fmt.Sprintf("Fleet: tasks assigned/s by the dispatcher leader (%d tasks, 3 members, none running)", n)
	switch {
	case errBare != nil:
		rep.fail(what, fmt.Errorf("LMOVE baseline: %w", errBare))
	case errTJ != nil:
		rep.fail(what, errTJ)
	default:
		rep.add(row{
			what:     what,
			taskJob:  rate(tj, "tasks"),
			baseline: "sequential LMOVE, one round trip a task " + rate(bare, "tasks"),
			ratio:    ratio(tj, bare),
			target:   fmt.Sprintf("≥ %dk/s: %s", assignTarget/1000, verdict(tj >= assignTarget)),
		})
	}
	rep.notes = append(rep.notes,
		"Fleet rows: etcd embedded in the benchmark process (10 ms heartbeat), the dispatcher leader in-process too (dispatch.Dispatcher, as `task-job dispatcher` runs it). Dispatch through the dispatcher: the leader, woken by the push to the empty shared list, moves the task into the executor's assigned list (one fenced Lua move), where the executor's blocking take gets it; the shared-queue row is the same executor (one slot; the sandbox off, since it costs both paths alike and its pool refill only adds noise) taking from the list itself, in alternated halves of the same run. Assigned/s: a leader looks at 32 tasks of a list at a time (one script) and moves them with one more (the epoch checked once, each task's placement key checked as it moves); the baseline moves one task per round trip.")
}

// firstErr keeps the first error.
func firstErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
