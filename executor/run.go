package executor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
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
	claimed       bool

	ctx    context.Context
	cancel context.CancelCauseFunc

	seq     atomic.Uint64
	written atomic.Int64 // bytes the task wrote, all of them
	meter   meter        // what its output lines shipped, against the caps
}

// handle takes one delivery to its end. It never panics on bad input and
// always leaves the delivery finished, dropped or put back.
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
		e.log.Warn("duplicate task id: already running here; not run again, no second done", "id", id)
		_ = e.record(received)
		_ = e.record(audit.Record{Kind: audit.KindDecision, ID: id, Decision: audit.DecisionRejected, Reason: "duplicate id: already running here; not run again"})
		e.drop(d)
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
		e.log.Warn("duplicate task id: seen before; not run again, no second done", "id", id)
		_ = e.record(received)
		_ = e.record(audit.Record{Kind: audit.KindDecision, ID: id, Decision: audit.DecisionRejected, Reason: "duplicate id: seen before; not run again, no second done"})
		e.drop(d)
		return
	}
	// A task cancelled while queued was never claimed: its done is
	// published as for a task that never ran.
	r.claimed = claim != queue.CancelledWhileQueued

	if perr == nil && t.Sig != nil {
		received.KeyID = t.Sig.Key
	}
	if perr == nil {
		r.tube = t.Tube
	}
	e.opt.Observer.TaskReceived(r.tube)
	if err := e.record(received); err != nil {
		e.finish(r, task.Rejected, auditRefusal(err), nil, time.Time{})
		return
	}
	if claim == queue.CancelledWhileQueued {
		e.finish(r, task.Killed, "killed before it started", nil, time.Time{})
		return
	}
	reject := func(reason string) {
		decision := audit.DecisionRejected
		if strings.HasPrefix(reason, "policy:") {
			decision = audit.DecisionDenied
		}
		if err := e.record(audit.Record{Kind: audit.KindDecision, ID: id, Decision: decision, Reason: reason}); err != nil {
			reason = auditRefusal(err)
		}
		e.finish(r, task.Rejected, reason, nil, time.Time{})
	}
	if perr != nil {
		reject(perr.Error())
		return
	}
	r.typ, r.tube = t.Type, t.Tube
	adm, refused := e.admit(r.ctx, t, auth)
	if refused != "" {
		reject(refused)
		return
	}
	r.rule = adm.rule
	resolve := e.opt.Jail.Resolve
	if adm.rule != "" && systemProgram(t.Task.Cmdline) {
		// A rule named this absolute path word for word (SPEC §3.4).
		resolve = e.opt.Jail.ResolveSystem
	}
	cmd, err := resolve(t.Task.Cmdline, t.Task.CmdArgs)
	if err != nil {
		reject(err.Error())
		return
	}
	if err := e.record(audit.Record{
		Kind: audit.KindDecision, ID: id, Decision: audit.DecisionAllowed, Rule: adm.rule, KeyID: adm.keyID,
		Reason: strings.Join(adm.notes, "; "),
	}); err != nil {
		e.finish(r, task.Rejected, auditRefusal(err), nil, time.Time{})
		return
	}
	if adm.timeout > 0 {
		timer := time.AfterFunc(adm.timeout, func() { r.cancel(ErrTimeout) })
		defer timer.Stop()
	}
	if r.ctx.Err() != nil {
		e.finish(r, task.Killed, "killed before it started", nil, time.Time{})
		return
	}

	stdout := &lineWriter{e: e, r: r, msgType: task.MsgStdout}
	stderr := &lineWriter{e: e, r: r, msgType: task.MsgStderr}
	env := append(append([]string(nil), e.opt.Env...), adm.env...)
	env = append(env, "TASK_ID="+id, "TASK_TYPE="+r.typ, "TASK_TUBE="+r.tube)
	started := time.Now()
	p, err := e.opt.Runner.Start(sandbox.Spec{
		Path: cmd.Path, Args: cmd.Args, Dir: cmd.Dir, Env: env, Confine: e.opt.Jail.Dir(),
		Name: id, Limits: adm.limits,
		Stdout: stdout, Stderr: stderr,
	})
	if err != nil {
		e.finish(r, task.Failed, "could not start: "+err.Error(), nil, started)
		return
	}
	e.opt.Observer.TaskStarted(r.tube, started.Sub(d.Taken), time.Since(started))
	e.log.Debug("task started", "id", id, "pid", p.Pid(), "program", cmd.Path)
	enforced := p.Limits()
	if err := e.record(audit.Record{
		Kind: audit.KindStart, ID: id, Rule: adm.rule, User: enforced.User,
		Limits: auditLimits(enforced, adm.timeout), Cgroup: p.Cgroup(), PID: p.Pid(),
	}); err != nil {
		// Fail closed: what cannot be recorded does not run.
		p.Stop(0)
		_, _ = p.Wait()
		e.finish(r, task.Rejected, auditRefusal(err), nil, time.Time{})
		return
	}
	stopWatch := context.AfterFunc(r.ctx, func() { p.Stop(e.opt.KillGrace) })
	res, werr := p.Wait()
	// Only a task we actually stopped ended for the context's cause; one
	// that exited on its own just before a timeout or kill keeps its status.
	stopped := !stopWatch()
	stdout.flush()
	stderr.flush()

	state, reason := outcome(res, werr, context.Cause(r.ctx), stopped)
	e.finish(r, state, reason, &res, started)
}

// systemProgram reports whether a cmdline names its program by absolute
// path, which only a policy rule can allow.
func systemProgram(cmdline string) bool {
	words, err := jail.Split(cmdline)
	return err == nil && len(words) > 0 && filepath.IsAbs(words[0])
}

// auditRefusal is the reason given for a task not run because its audit
// record could not be written.
func auditRefusal(err error) string {
	return "not started: the executor's audit log cannot be written (" + err.Error() + "); it takes no tasks until it can"
}

// outcome turns how the process ended, and why its context ended if it did,
// into a state and a reason a person understands.
func outcome(res sandbox.Result, werr, cause error, stopped bool) (task.State, string) {
	if stopped {
		switch {
		case errors.Is(cause, ErrTimeout):
			return task.Timeout, "timeout: stopped after its timeout ran out"
		case errors.Is(cause, ErrShutdown):
			return task.Killed, "killed: the executor shut down before the task finished"
		case errors.Is(cause, ErrKilled):
			return task.Killed, "killed by a kill message"
		}
	}
	switch {
	case werr != nil:
		return task.Failed, werr.Error()
	case res.OOMKilled:
		return task.Failed, fmt.Sprintf("oom: killed for going over its memory limit of %d MiB", res.Limits.MemoryBytes>>20)
	case res.Signal != "":
		return task.Failed, "terminated by signal " + res.Signal
	case res.ExitCode == 0:
		return task.Succeeded, "exited with status 0"
	default:
		return task.Failed, fmt.Sprintf("exited with status %d", res.ExitCode)
	}
}

// finish queues the task's one done behind its output lines.
func (e *Executor) finish(r *run, state task.State, reason string, res *sandbox.Result, started time.Time) {
	nowT := time.Now()
	result := &task.Result{
		Status: state, ExitCode: -1, Reason: reason,
		OutputBytes: r.written.Load(), OutputDropped: r.meter.dropped.Load(), OutputDroppedLines: r.meter.droppedLines.Load(),
		Isolation: e.isolation, Rule: r.rule,
	}
	if res != nil {
		if res.Signal == "" && !res.Ended.IsZero() {
			result.ExitCode = res.ExitCode
		}
		result.Signal = res.Signal
		result.CPUMS = res.CPU.Milliseconds()
		result.MaxRSSBytes = res.MaxRSS
	}
	if !started.IsZero() {
		result.StartedAt = started.UTC().Format(task.TimeFormat)
		result.EndedAt = nowT.UTC().Format(task.TimeFormat)
		result.DurationMS = nowT.Sub(started).Milliseconds()
	}
	done := (&task.Log{
		ID: r.id, Type: r.typ, Tube: r.tube, MsgType: task.MsgDone, Data: reason,
		Seq: r.seq.Add(1), Time: nowT.UTC().Format(task.TimeFormat), Executor: e.opt.ExecutorID,
		Result: result,
	}).Marshal()
	end := audit.Record{Kind: audit.KindEnd, ID: r.id, Status: string(state), Reason: reason,
		Signal: result.Signal, CPUMs: result.CPUMS, PeakMemoryBytes: result.MaxRSSBytes, OutputBytes: result.OutputBytes}
	if result.ExitCode >= 0 {
		end.ExitCode = audit.IntPtr(result.ExitCode)
	}
	_ = e.record(end) // a failure stops the next tasks; this one has ended either way
	e.opt.Observer.TaskEnded(TaskEnd{Tube: r.tube, State: state, Reason: reason, Started: res != nil, Ran: nowT.Sub(started),
		OOMKilled: res != nil && res.OOMKilled, DroppedBytes: result.OutputDropped})
	e.out.finish(&queue.Finish{ID: r.id, State: state, Done: done, Raw: r.d.Raw, Claimed: r.claimed})
	lvl := e.log.Info
	if state != task.Succeeded {
		lvl = e.log.Warn
	}
	lvl("task ended", "id", r.id, "status", state, "reason", reason)
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
