// Package executor is the loop at the heart of task-job: it takes a task
// when a slot is free, claims its id, resolves its cmdline through the jail,
// runs it in the sandbox, streams its output, obeys kills, and publishes
// exactly one done. It also keeps the executor's liveness, recovers the work
// of dead peers, and shuts down gracefully. It talks to its transport only
// through the interfaces of package queue.
package executor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/jail"
	"github.com/taskjob/task-job/policy"
	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/sandbox"
	"github.com/taskjob/task-job/signature"
	"github.com/taskjob/task-job/spool"
)

// Causes of a task's context being cancelled; the done reports which.
var (
	ErrKilled   = errors.New("executor: killed by a kill message")
	ErrTimeout  = errors.New("executor: timeout")
	ErrShutdown = errors.New("executor: executor shutting down")
	// ErrDiskLow stops a task that may write cmd_dir once the file system
	// holding it has less than CmdDirMinFree left.
	ErrDiskLow = errors.New("executor: cmd_dir's file system is under cmd_dir_min_free")
)

// Defaults of Options, where the field is zero. config's keys of the same
// meaning default to these too.
const (
	DefaultConcurrency       = 1
	DefaultMaxTaskBytes      = queue.DefaultMaxTaskBytes
	DefaultMaxOutputBytes    = 16 << 20
	DefaultMaxOutputMessages = 100000
	DefaultMaxOutputRate     = 5000
	DefaultMaxLineBytes      = 64 << 10
	DefaultKillGrace         = 5 * time.Second
	DefaultShutdownGrace     = 30 * time.Second
	DefaultTTL               = queue.DefaultTTL
	DefaultSpoolMaxBytes     = spool.DefaultDiskBytes
	DefaultCmdDirMinFree     = 1 << 30
)

// Options configure an Executor. Zero values take the documented defaults.
type Options struct {
	ExecutorID  string
	Concurrency int // default 1
	// Logs ships stdout/stderr lines; done messages are always published.
	Logs           bool
	MaxTaskBytes   int   // default 1 MiB
	MaxOutputBytes int64 // default 16 MiB of TaskLog messages, envelope included
	// MaxOutputMessages caps the output lines shipped per task (default
	// 100,000), MaxOutputRate those per task per second (default 5,000).
	MaxOutputMessages int
	MaxOutputRate     int
	MaxLineBytes      int           // default 64 KiB
	KillGrace         time.Duration // default 5 s
	ShutdownGrace     time.Duration // default 30 s
	// TTL is the liveness window: peers treat this executor as dead once its
	// heartbeat is older than this. Default 5 s.
	TTL time.Duration
	// LogsHTTP, when set, also receives every message by POST.
	LogsHTTP      string
	SpoolDir      string
	SpoolMaxBytes int64
	// SpoolMemBytes is the outbox's memory budget before it spills to
	// SpoolDir (default 64 MiB).
	SpoolMemBytes int64
	// Env is the whole environment of a task, before the TASK_* variables.
	Env []string
	// CmdDirMinFree (default 1 GiB) is the free space a task that may write
	// cmd_dir (a cmd_dir_writable rule) must leave on cmd_dir's file
	// system: such a task does not start below it, and is stopped, without
	// kill_grace, once the space falls below it. Writes there reach the
	// host's disk, which no tmpfs caps.
	CmdDirMinFree int64

	// Policy is the whitelist; nil means the jail's rules alone. SetPolicy
	// replaces it while running.
	Policy *policy.Policy
	// Verifier checks signed tasks. With RequireSignatures, tasks that are
	// not validly signed are rejected.
	Verifier          *signature.Verifier
	RequireSignatures bool
	// Audit records every task, decision, start, kill and end before it
	// takes effect; nil = no audit log. While it cannot be written, no task
	// is taken.
	Audit *audit.Log

	// Observer is told about every task, for metrics; nil = nobody.
	Observer Observer

	Broker queue.Broker
	Jail   *jail.Jail
	Runner *sandbox.Runner
	Logger hclog.Logger
}

func (o *Options) setDefaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.MaxTaskBytes <= 0 {
		o.MaxTaskBytes = DefaultMaxTaskBytes
	}
	if o.MaxOutputBytes <= 0 {
		o.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if o.MaxOutputMessages <= 0 {
		o.MaxOutputMessages = DefaultMaxOutputMessages
	}
	if o.MaxOutputRate <= 0 {
		o.MaxOutputRate = DefaultMaxOutputRate
	}
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = DefaultMaxLineBytes
	}
	if o.KillGrace <= 0 {
		o.KillGrace = DefaultKillGrace
	}
	if o.CmdDirMinFree <= 0 {
		o.CmdDirMinFree = DefaultCmdDirMinFree
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = DefaultShutdownGrace
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.SpoolMaxBytes <= 0 {
		o.SpoolMaxBytes = DefaultSpoolMaxBytes
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
}

// Executor runs tasks. Create it with New and call Run once.
type Executor struct {
	opt Options
	log hclog.Logger
	out *outbox

	slots chan struct{}

	// tasks holds the tasks of this executor by id, from before their claim
	// until their done is queued, so a kill always finds them.
	mu    sync.Mutex
	tasks map[string]*run
	wg    sync.WaitGroup

	// taskCtx is the parent of every task's context. It is cancelled (with
	// ErrShutdown) only when the shutdown grace has run out, not when
	// taking stops.
	taskCtx    context.Context
	killAll    context.CancelCauseFunc
	stopNowMu  sync.Once
	stopNowCh  chan struct{}
	held       held            // deliveries taken and not yet released
	lease      *lease          // this executor's view of its own liveness
	onFinished func(id string) // test hook
	isolation  string          // reported in every done

	policy    atomic.Pointer[policy.Policy]
	auditDown atomic.Bool // the last audit append failed
	paused    atomic.Bool // PauseTaking: no new tasks (registry.go)
}

// New checks opts and prepares an Executor.
func New(opts Options) (*Executor, error) {
	opts.setDefaults()
	switch {
	case opts.Broker == nil:
		return nil, errors.New("executor: no broker")
	case opts.Jail == nil:
		return nil, errors.New("executor: no jail")
	case opts.Runner == nil:
		return nil, errors.New("executor: no sandbox runner")
	case opts.ExecutorID == "":
		return nil, errors.New("executor: no executor id")
	}
	sp, err := spool.New(spool.Options{Dir: opts.SpoolDir, MemBytes: opts.SpoolMemBytes, DiskBytes: opts.SpoolMaxBytes})
	if err != nil {
		return nil, fmt.Errorf("executor: %w", err)
	}
	e := &Executor{
		opt:       opts,
		log:       opts.Logger,
		slots:     make(chan struct{}, opts.Concurrency),
		tasks:     make(map[string]*run),
		stopNowCh: make(chan struct{}),
	}
	e.isolation = opts.Runner.Isolation()
	e.policy.Store(opts.Policy)
	e.lease = newLease(opts.TTL)
	e.out = newOutbox(sp, opts.Broker, opts.LogsHTTP, e.log, e.applied)
	e.out.lease = e.lease
	e.taskCtx, e.killAll = context.WithCancelCause(context.Background())
	return e, nil
}

// StopNow ends the shutdown grace at once: running tasks are killed and
// reported. A second SIGTERM calls it.
func (e *Executor) StopNow() { e.stopNowMu.Do(func() { close(e.stopNowCh) }) }

// Running returns how many tasks this executor holds now.
func (e *Executor) Running() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.tasks)
}

// Run serves until ctx is cancelled, then shuts down gracefully: it stops
// taking tasks, lets running ones finish within the shutdown grace, kills
// and reports the rest, delivers every queued message it can, and leaves.
func (e *Executor) Run(ctx context.Context) error {
	log := e.log
	joined, err := e.join(ctx)
	if err != nil {
		return err
	}
	e.lease.renewed(joined)
	// Another process taking this executor's id ends it (with that error).
	ctx, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	// What the previous run could not deliver goes first: recovering that
	// run would report its tasks lost.
	if err := e.deliverHandoff(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		log.Error("could not deliver the previous run's undelivered messages", "error", err)
	}
	if r, err := e.opt.Broker.Recover(ctx, e.opt.ExecutorID); err != nil {
		log.Warn("could not recover the work of this executor's previous run", "error", err)
	} else if r != (queue.Recovered{}) {
		log.Warn("recovered the work of this executor's previous run", "lost", r.Lost, "requeued", r.Requeued, "controls", r.Controls, "republished", r.Republished)
	}

	pubCtx, stopPub := context.WithCancel(context.Background())
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); e.out.run(pubCtx) }()

	// Liveness is kept until the outbox has drained: through the shutdown
	// grace too, or peers would report this executor's last tasks lost.
	liveCtx, stopLive := context.WithCancel(context.Background())
	liveDone := make(chan struct{})
	go func() { defer close(liveDone); e.heartbeatLoop(liveCtx, stopRun) }()
	var bg sync.WaitGroup
	for _, loop := range []func(context.Context){e.recoverLoop, e.sweepLoop, e.controlLoop, e.forwardedLoop} {
		bg.Add(1)
		go func() { defer bg.Done(); loop(ctx) }()
	}
	log.Info("executor serving", "id", e.opt.ExecutorID, "concurrency", e.opt.Concurrency)
	e.takeLoop(ctx)

	stopping := time.Now()
	e.shutdown()
	bg.Wait()
	// Delivering is part of the shutdown grace: keep trying until it is
	// over (at least a second after the last task ended, for its done).
	e.out.drain(max(time.Until(stopping.Add(e.opt.ShutdownGrace)), time.Second))
	stopPub()
	<-pubDone
	stopLive()
	<-liveDone
	leaveCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n := e.out.pending(); n > 0 {
		// Undelivered: keep them for the next start, and leave the tasks
		// in the processing list, where peers find them if this executor
		// does not come back.
		if kept, err := e.writeHandoff(); err != nil {
			log.Error("messages could not be delivered before exit, nor kept; peers will report this executor's unfinished tasks as lost",
				"undelivered", n, "error", err)
		} else {
			log.Error("messages could not be delivered within the shutdown grace; kept for the next start of this executor id, "+
				"which delivers them first (if it does not start within two executor_ttl, peers report its unfinished tasks lost)",
				"undelivered", kept, "file", e.handoffPath())
		}
	} else {
		// Anything still in our processing list was taken but never
		// claimed (a pop cut short by the shutdown): put it back.
		if r, err := e.opt.Broker.Recover(leaveCtx, e.opt.ExecutorID); err == nil && r.Requeued > 0 {
			log.Info("put back tasks taken during shutdown", "requeued", r.Requeued)
		}
		if err := e.opt.Broker.Leave(leaveCtx); err != nil {
			log.Warn("could not deregister", "error", err)
		}
	}
	e.out.close()
	if err := context.Cause(ctx); errors.Is(err, queue.ErrIdentityTaken) {
		return err
	}
	log.Info("executor stopped")
	return nil
}

// join registers this executor, retrying while the transport cannot be
// reached (an executor may start during an outage); it fails at once when
// another live process holds the id. It returns when the registration was
// sent.
func (e *Executor) join(ctx context.Context) (time.Time, error) {
	var b backoff
	for {
		sent := time.Now()
		err := e.opt.Broker.Join(ctx)
		if err == nil {
			b.ok(e.log, "registered")
			return sent, nil
		}
		if errors.Is(err, queue.ErrIdentityTaken) || ctx.Err() != nil {
			return sent, err
		}
		b.fail(ctx, e.log, "cannot register this executor yet", err)
	}
}

func (e *Executor) shutdown() {
	n := e.Running()
	if n == 0 {
		return
	}
	e.log.Info("shutting down: no new tasks; waiting for running ones", "running", n, "grace", e.opt.ShutdownGrace)
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	timer := time.NewTimer(e.opt.ShutdownGrace)
	defer timer.Stop()
	select {
	case <-done:
		return
	case <-timer.C:
	case <-e.stopNowCh:
	}
	e.log.Warn("shutdown grace over: killing running tasks", "running", e.Running())
	e.killAll(ErrShutdown)
	<-done
}

// takeLoop takes a task whenever a slot is free.
func (e *Executor) takeLoop(ctx context.Context) {
	var failing backoff
	for {
		select {
		case e.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		// Fail closed: while the audit log cannot be written, leave tasks
		// on the queue for executors that can record them.
		for !e.auditHealthy() {
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				<-e.slots
				return
			}
		}
		if !e.waitTaking(ctx) {
			<-e.slots
			return
		}
		var d *queue.Delivery
		for d == nil {
			var err error
			d, err = e.opt.Broker.Take(ctx)
			if d != nil {
				e.held.add(d.Raw)
				if e.paused.Load() && ctx.Err() == nil {
					// Paused while it waited: not ours to run now.
					e.requeue(d)
					d = nil
					if !e.waitTaking(ctx) {
						<-e.slots
						return
					}
					continue
				}
			}
			if ctx.Err() != nil {
				if d != nil {
					e.requeue(d)
				}
				<-e.slots
				return
			}
			if err != nil {
				failing.fail(ctx, e.log, "cannot take tasks", err)
				continue
			}
			failing.ok(e.log, "taking tasks again")
		}
		e.wg.Add(1)
		go func() {
			defer func() { <-e.slots; e.wg.Done() }()
			e.handle(d)
		}()
	}
}

func (e *Executor) requeue(d *queue.Delivery) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.opt.Broker.Requeue(ctx, d); err != nil {
		e.log.Warn("could not put a task back; it stays in this executor's processing list and is put back at its next start", "error", err)
		return
	}
	e.held.release(d.Raw)
}

// backoff spaces retries while the transport fails, and logs the first
// failure and the recovery rather than every attempt.
type backoff struct {
	n int
}

func (b *backoff) fail(ctx context.Context, log hclog.Logger, what string, err error) {
	if b.n == 0 {
		log.Warn(what+"; retrying", "error", err)
	}
	d := time.Duration(50<<min(b.n, 5)) * time.Millisecond // 50 ms … 1.6 s
	b.n++
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (b *backoff) ok(log hclog.Logger, what string) {
	if b.n > 0 {
		log.Info(what, "after_attempts", b.n)
	}
	b.n = 0
}

// retry calls f until it succeeds or ctx ends: while Redis is down, a task
// that was already taken waits for it rather than being lost.
func retry[T any](ctx context.Context, log hclog.Logger, what string, f func(context.Context) (T, error)) (T, error) {
	var b backoff
	for {
		v, err := f(ctx)
		if err == nil {
			b.ok(log, what+" again")
			return v, nil
		}
		if ctx.Err() != nil {
			return v, ctx.Err()
		}
		b.fail(ctx, log, "cannot "+what, err)
	}
}
