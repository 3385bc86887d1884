package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/jail"
	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/sandbox"
	"github.com/taskjob/task-job/task"
)

// run is one task on this executor, from its claim to its done.
type run struct {
	id, typ, tube string
	rule          string // the policy rule that allowed it
	d             *queue.Delivery
	claimed       atomic.Bool // read by the fence from another goroutine
	fenced        atomic.Bool // a peer reported it lost: no done of ours

	ctx    context.Context
	cancel context.CancelCauseFunc

	seq     atomic.Uint64
	written atomic.Int64 // bytes the task wrote, all of them
	meter   meter        // what its output lines shipped, against the caps
}

// ending is how a task ended: every path from a claim to a terminal state
// produces one, and finish turns it into the task's one done.
type ending struct {
	state   task.State
	reason  string
	res     *sandbox.Result // nil when no process ran
	started time.Time       // zero when no process ran
}

func refused(reason string) ending { return ending{state: task.Rejected, reason: reason} }

// handle takes one delivery to its end: claim → prepare → execute → one
// finish. It never panics on bad input and always leaves the delivery
// finished, dropped or put back.
func (e *Executor) handle(d *queue.Delivery) {
	// One parse, strict: the id claimed, verified, audited and run is the
	// one Decode read (see task.Decode).
	t, id, typ, perr := e.decode(d)
	received := received(d, id, typ)
	if id == "" {
		e.log.Warn("dropping a task message with no readable id; no done can be sent for it",
			"reason", perr, "bytes", len(d.Raw))
		if e.record(received) == nil {
			_ = e.record(audit.Record{Kind: audit.KindDecision, Decision: audit.DecisionRejected, Reason: fmt.Sprint(perr)})
		}
		e.drop(d)
		return
	}
	auth := e.authenticate(t, perr)
	if auth.unanswered != "" {
		e.log.Warn("dropping a message no signing key vouches for: its id is not claimed and no done is sent (require_signatures)",
			"id", id, "reason", auth.unanswered)
		if e.record(received) == nil {
			_ = e.record(audit.Record{Kind: audit.KindDecision, ID: id, Decision: audit.DecisionRejected,
				Reason: "not answered, id not claimed: " + auth.unanswered})
		}
		e.drop(d)
		return
	}
	r := &run{id: id, typ: typ, d: d}
	r.ctx, r.cancel = context.WithCancelCause(e.taskCtx)
	defer r.cancel(nil)
	if !e.register(r) {
		e.duplicate(r, received, "already running here")
		return
	}
	defer e.unregister(r)

	claim, err := retry(e.taskCtx, e.log, "claim tasks", func(ctx context.Context) (queue.Claim, error) {
		return e.opt.Broker.Claim(ctx, d, id)
	})
	if err != nil {
		return // hard shutdown while Redis is down: the delivery stays for recovery
	}
	if claim == queue.Duplicate {
		e.duplicate(r, received, "seen before")
		return
	}
	r.claimed.Store(true)
	e.finish(r, e.claimed(r, claim, received, t, perr, auth))
}

// duplicate drops a second copy of an id: it is not run again and gets no
// second done, which would mislead whoever waits on the first.
func (e *Executor) duplicate(r *run, received audit.Record, why string) {
	e.log.Warn("duplicate task id: "+why+"; not run again, no second done", "id", r.id)
	_ = e.record(received)
	_ = e.record(audit.Record{Kind: audit.KindDecision, ID: r.id, Decision: audit.DecisionRejected,
		Reason: "duplicate id: " + why + "; not run again, no second done"})
	e.drop(r.d)
}

// claimed runs a claimed task to its ending.
func (e *Executor) claimed(r *run, claim queue.Claim, received audit.Record, t *task.Task, perr error, auth authenticated) ending {
	if perr == nil && t.Sig != nil {
		received.KeyID = t.Sig.Key
	}
	if perr == nil {
		r.tube = t.Tube
	}
	e.opt.Observer.TaskReceived(r.tube)
	if err := e.record(received); err != nil {
		return refused(auditRefusal(err))
	}
	if claim == queue.CancelledWhileQueued {
		return ending{state: task.Killed, reason: task.KilledBeforeStart}
	}
	p, end := e.prepare(r, t, perr, auth)
	if end != nil {
		return *end
	}
	if p.timeout > 0 {
		timer := time.AfterFunc(p.timeout, func() { r.cancel(ErrTimeout) })
		defer timer.Stop()
	}
	if cause := context.Cause(r.ctx); cause != nil {
		return beforeStart(cause)
	}
	return e.execute(r, p)
}

// beforeStart is the ending of a task whose context ended before its
// process started, said as what ended it: a shutdown or a fence is not a
// kill message, and the done must not claim one was sent.
func beforeStart(cause error) ending {
	switch {
	case errors.Is(cause, ErrShutdown):
		return ending{state: task.Killed, reason: "killed: the executor shut down before the task started"}
	case errors.Is(cause, ErrFenced):
		return ending{state: task.Lost, reason: "lost: " + ErrFenced.Error() + "; it was not started"}
	case errors.Is(cause, ErrRegistrationLost):
		return ending{state: task.Lost, reason: "lost: " + ErrRegistrationLost.Error() + "; it was not started"}
	case errors.Is(cause, ErrTimeout):
		return ending{state: task.Timeout, reason: "timeout: its timeout ran out before it started"}
	}
	return ending{state: task.Killed, reason: task.KilledBeforeStart}
}

// prepared is a task admitted and resolved, ready to start.
type prepared struct {
	admission
	cmd *jail.Command
}

// prepare checks a claimed task — parse, signature, policy, jail — and
// records the decision. A non-nil ending means it does not run.
func (e *Executor) prepare(r *run, t *task.Task, perr error, auth authenticated) (prepared, *ending) {
	reject := func(reason string) (prepared, *ending) {
		decision := audit.DecisionRejected
		if strings.HasPrefix(reason, "policy:") {
			decision = audit.DecisionDenied
		}
		if err := e.record(audit.Record{Kind: audit.KindDecision, ID: r.id, Decision: decision, Reason: reason}); err != nil {
			reason = auditRefusal(err)
		}
		end := refused(reason)
		return prepared{}, &end
	}
	if perr != nil {
		return reject(perr.Error())
	}
	r.typ, r.tube = t.Type, t.Tube
	adm, why := e.admit(r.ctx, t, auth)
	if why != "" {
		return reject(why)
	}
	r.rule = adm.rule
	cmd, err := e.opt.Jail.ResolveAllowed(t.Task.Cmdline, t.Task.CmdArgs, adm.rule != "")
	if err != nil {
		return reject(err.Error())
	}
	if err := e.record(audit.Record{
		Kind: audit.KindDecision, ID: r.id, Decision: audit.DecisionAllowed, Rule: adm.rule, KeyID: adm.keyID,
		Reason: strings.Join(adm.notes, "; "),
	}); err != nil {
		end := refused(auditRefusal(err))
		return prepared{}, &end
	}
	return prepared{admission: adm, cmd: cmd}, nil
}

// execute starts the task's process, streams its output, obeys its
// context, and says how it ended.
func (e *Executor) execute(r *run, pr prepared) ending {
	stdout := &lineWriter{e: e, r: r, msgType: task.MsgStdout}
	stderr := &lineWriter{e: e, r: r, msgType: task.MsgStderr}
	env := append(append([]string(nil), e.opt.Env...), pr.env...)
	env = append(env, "TASK_ID="+r.id, "TASK_TYPE="+r.typ, "TASK_TUBE="+r.tube)
	started := time.Now()
	guardDisk := false
	if pr.limits.CmdDirWritable {
		if free, ok := freeBytes(e.opt.Jail.Dir()); ok {
			if free < e.opt.CmdDirMinFree {
				return ending{state: task.Failed, reason: "could not start: " + strings.TrimPrefix(diskLow(free, e.opt.CmdDirMinFree).Error(), "executor: ") +
					"; a task that may write cmd_dir does not start below it", started: started}
			}
			guardDisk = true
		}
	}
	p, err := e.opt.Runner.Start(sandbox.Spec{
		Path: pr.cmd.Path, Args: pr.cmd.Args, Dir: pr.cmd.Dir, Env: env, Confine: e.opt.Jail.Dir(),
		Name: r.id, Limits: pr.limits,
		Stdout: stdout, Stderr: stderr,
	})
	if err != nil {
		if cause := context.Cause(r.ctx); cause != nil {
			// Ended while it was being started (a shutdown closing the
			// sandbox, a kill): that, not the start's failure, is what
			// happened to it.
			return beforeStart(cause)
		}
		return ending{state: task.Failed, reason: "could not start: " + err.Error(), started: started}
	}
	e.opt.Observer.TaskStarted(r.tube, started.Sub(queuedSince(r.d)), time.Since(started))
	e.log.Debug("task started", "id", r.id, "pid", p.Pid(), "program", pr.cmd.Path)
	enforced := p.Limits()
	if err := e.record(audit.Record{
		Kind: audit.KindStart, ID: r.id, Rule: pr.rule, User: enforced.User,
		Limits: auditLimits(enforced, pr.timeout), Cgroup: p.Cgroup(), PID: p.Pid(),
	}); err != nil {
		// Fail closed: what cannot be recorded does not run.
		p.Stop(0)
		_, _ = p.Wait()
		return refused(auditRefusal(err))
	}
	e.noteRule(r, pr.rule, pr.envShown)
	stopWatch := context.AfterFunc(r.ctx, func() {
		grace := e.opt.KillGrace
		switch cause := context.Cause(r.ctx); {
		case errors.Is(cause, ErrFenced):
			grace = 0 // its peers already reported it lost: end it now
		case errors.Is(cause, ErrDiskLow):
			grace = 0 // a grace would be more disk filled
		}
		p.Stop(grace)
	})
	if guardDisk {
		defer e.watchDisk(r)()
	}
	res, werr := p.Wait()
	// Only a task we actually stopped ended for the context's cause; one
	// that exited on its own just before a timeout or kill keeps its status.
	stopped := !stopWatch()
	stdout.flush()
	stderr.flush()
	state, reason := outcome(res, werr, context.Cause(r.ctx), stopped)
	return ending{state: state, reason: reason, res: &res, started: started}
}

// diskPoll is how often the free space of cmd_dir's file system is read
// while a task may write it. Nothing tells of a write, so it is polled: at
// the attack pass's 475 MB/s a writer passes the floor by about 100 MB.
const diskPoll = 200 * time.Millisecond

// diskLow is the cause that stops a task for the space left on cmd_dir's
// file system.
func diskLow(free, floor int64) error {
	return fmt.Errorf("%w (%d MiB free, under %d MiB)", ErrDiskLow, free>>20, floor>>20)
}

// watchDisk stops r once cmd_dir's file system has less than
// CmdDirMinFree free. The returned stop ends the watch and waits for it.
func (e *Executor) watchDisk(r *run) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(diskPoll)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-r.ctx.Done():
				return
			case <-tick.C:
			}
			if free, ok := freeBytes(e.opt.Jail.Dir()); ok && free < e.opt.CmdDirMinFree {
				r.cancel(diskLow(free, e.opt.CmdDirMinFree))
				return
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// noteRule shows the rule that allowed a started task in its status, for
// the management API's view of running tasks (the done carries it at the
// end), with the env the rule gave it, secret values already masked: no
// secret reaches Redis. It runs once the process has started, so it costs
// the start nothing; a failure only leaves the rule to the done.
func (e *Executor) noteRule(r *run, rule string, env []string) {
	n, ok := e.opt.Broker.(queue.RuleNoter)
	if !ok || rule == "" {
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, 2*time.Second)
	defer cancel()
	if err := n.NoteRule(ctx, r.d, r.id, rule, env); err != nil && r.ctx.Err() == nil {
		e.log.Debug("could not show the rule of a running task", "id", r.id, "error", err)
	}
}

// auditRefusal is the reason given for a task not run because its audit
// record could not be written.
func auditRefusal(err error) string {
	return "not started: the executor's audit log cannot be written (" + err.Error() + "); it takes no tasks until it can"
}

// outcome turns how the process ended, and why its context ended if it did,
// into a state and a reason a person understands.
//
// OOM: the sandbox ends the whole task at the first OOM kill in its cgroup
// (v2 memory.oom.group; v1 the executor kills the group on the OOM event).
// A task that ended that way — killed by a signal after an OOM kill — is
// failed with an "oom:" reason. A task whose main process exited on its own
// although the kernel had OOM-killed one of its processes (it won the race
// with the group kill on v1) keeps the status of its exit, and the reason
// says a process was OOM-killed; it is never reported as killed for memory.
func outcome(res sandbox.Result, werr, cause error, stopped bool) (task.State, string) {
	if stopped {
		switch {
		case errors.Is(cause, ErrFenced):
			return task.Lost, "lost: " + ErrFenced.Error() + "; it was stopped"
		case errors.Is(cause, ErrRegistrationLost):
			return task.Lost, "lost: " + ErrRegistrationLost.Error() + "; it was stopped so that it does not run beside a replacement"
		case errors.Is(cause, ErrTimeout):
			return task.Timeout, "timeout: stopped after its timeout ran out"
		case errors.Is(cause, ErrShutdown):
			return task.Killed, "killed: the executor shut down before the task finished"
		case errors.Is(cause, ErrKilled):
			return task.Killed, "killed by a kill message"
		case errors.Is(cause, ErrDiskLow):
			return task.Failed, "disk: " + strings.TrimPrefix(cause.Error(), "executor: ") + "; the task could write cmd_dir and was stopped"
		}
	}
	oomNote := ""
	if res.OOMKilled {
		oomNote = fmt.Sprintf("; the kernel killed a process of the task for going over its memory limit of %d MiB", res.Limits.MemoryBytes>>20)
	}
	switch {
	case werr != nil:
		return task.Failed, werr.Error() + oomNote
	case res.OOMKilled && res.Signal != "":
		return task.Failed, fmt.Sprintf("oom: a process of the task went over its memory limit of %d MiB and the whole task was killed (%s)",
			res.Limits.MemoryBytes>>20, res.Signal)
	case res.Signal != "":
		return task.Failed, "terminated by signal " + res.Signal
	case res.ExitCode == 0:
		return task.Succeeded, "exited with status 0" + oomNote
	default:
		return task.Failed, fmt.Sprintf("exited with status %d", res.ExitCode) + oomNote
	}
}

// finish is the one way a claimed task ends: it records the end in the
// audit log and queues the task's one done behind its output lines. The
// outbox delivers it in order whatever happens to Redis meanwhile; the
// "task ended" line is logged once the done is published (applied).
func (e *Executor) finish(r *run, end ending) {
	nowT := time.Now()
	result := task.Result{
		Status: end.state, ExitCode: -1, Reason: end.reason,
		OutputBytes: r.written.Load(), OutputDropped: r.meter.dropped.Load(), OutputDroppedLines: r.meter.droppedLines.Load(),
		Isolation: e.isolation, Rule: r.rule,
	}
	if res := end.res; res != nil {
		if res.Signal == "" && !res.Ended.IsZero() {
			result.ExitCode = res.ExitCode
		}
		result.Signal = res.Signal
		result.CPUMS = res.CPU.Milliseconds()
		result.MaxRSSBytes = res.MaxRSS
	}
	if !end.started.IsZero() {
		result.StartedAt = end.started.UTC().Format(task.TimeFormat)
		result.EndedAt = nowT.UTC().Format(task.TimeFormat)
		result.DurationMS = nowT.Sub(end.started).Milliseconds()
	}
	done := task.Done(task.Ending{ID: r.id, Type: r.typ, Tube: r.tube, Executor: e.opt.ExecutorID,
		Seq: r.seq.Add(1), Time: nowT, Result: result})
	rec := audit.Record{Kind: audit.KindEnd, ID: r.id, Status: string(end.state), Reason: end.reason,
		Signal: result.Signal, CPUMs: result.CPUMS, PeakMemoryBytes: result.MaxRSSBytes, OutputBytes: result.OutputBytes}
	if result.ExitCode >= 0 {
		rec.ExitCode = audit.IntPtr(result.ExitCode)
	}
	_ = e.record(rec) // a failure stops the next tasks; this one has ended either way
	e.opt.Observer.TaskEnded(TaskEnd{Tube: r.tube, State: end.state, Reason: end.reason, Started: end.res != nil, Ran: nowT.Sub(end.started),
		OOMKilled: end.res != nil && end.res.OOMKilled, DroppedBytes: result.OutputDropped})
	e.out.finish(&queue.Finish{ID: r.id, State: end.state, Done: done, Raw: r.d.Raw, Claimed: r.claimed.Load(), Token: r.d.Token})
	e.log.Debug("task finished; its done is queued for delivery", "id", r.id, "status", end.state)
}

// applied hears from the outbox how the transport handled a finish.
func (e *Executor) applied(f *queue.Finish, published bool) {
	e.held.release(f.Raw)
	e.lease.unfence(f.ID)
	reason := ""
	var d task.Log
	if json.Unmarshal(f.Done, &d) == nil && d.Result != nil {
		reason = d.Reason
	}
	switch {
	case !published:
		e.log.Error("task ended here, but its done was NOT published: the id is no longer this executor's "+
			"(a peer reported it lost while this executor was paused or cut off past its TTL)", "id", f.ID, "status", f.State, "reason", reason)
	case f.State == task.Succeeded:
		e.log.Info("task ended", "id", f.ID, "status", f.State, "reason", reason)
	default:
		e.log.Warn("task ended", "id", f.ID, "status", f.State, "reason", reason)
	}
}

func (e *Executor) drop(d *queue.Delivery) {
	if _, err := retry(e.taskCtx, e.log, "drop a task", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, e.opt.Broker.Drop(ctx, d)
	}); err == nil {
		e.held.release(d.Raw)
	}
}

func (e *Executor) register(r *run) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, dup := e.tasks[r.id]; dup {
		return false
	}
	e.tasks[r.id] = r
	return true
}

func (e *Executor) unregister(r *run) {
	e.mu.Lock()
	delete(e.tasks, r.id)
	e.mu.Unlock()
	if e.onFinished != nil {
		e.onFinished(r.id)
	}
}

// kill cancels a task of this executor; it reports whether it had it. by
// says where the kill came from, for the audit record written first. A kill
// is carried out even when the record cannot be written: refusing to stop
// a task would be the unsafe side of failing closed.
func (e *Executor) kill(id, by string) bool {
	e.mu.Lock()
	r := e.tasks[id]
	e.mu.Unlock()
	if r == nil {
		return false
	}
	_ = e.record(audit.Record{Kind: audit.KindControl, ID: id, Action: task.ControlKill, By: by})
	r.cancel(ErrKilled)
	return true
}

// queuedSince is when d's task started waiting: when it entered the queue
// where the transport knows it, else when this executor took it (a plain
// RPUSH carries no time). A queue time after the take (clocks apart) is
// not believed.
func queuedSince(d *queue.Delivery) time.Time {
	if !d.Queued.IsZero() && !d.Queued.After(d.Taken) {
		return d.Queued
	}
	return d.Taken
}
