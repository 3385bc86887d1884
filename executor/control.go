package executor

import (
	"context"
	"time"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
)

// controlLoop takes kill messages from the shared control list. Whichever
// executor takes a kill routes it: to itself, to the executor the status
// record names, or — for a task not yet running — marks it cancelled and
// takes it out of the task list.
func (e *Executor) controlLoop(ctx context.Context) {
	e.controls(ctx, "control messages", e.opt.Broker.TakeControl, e.handleControl)
}

// forwardedLoop takes kills other executors routed here.
func (e *Executor) forwardedLoop(ctx context.Context) {
	e.controls(ctx, "forwarded control messages", e.opt.Broker.TakeForwarded, func(_ context.Context, c *queue.ControlDelivery) {
		ctl, err := task.ParseControl(c.Raw)
		if err != nil || e.refuseKill(ctl) {
			return // anyone can RPUSH here too: checked again
		}
		if e.kill(ctl.ID, "kill message, forwarded by the executor that took it") {
			e.log.Info("kill received (forwarded)", "id", ctl.ID)
		} else {
			e.log.Info("forwarded kill for a task no longer running here", "id", ctl.ID)
		}
	})
}

// controls takes control messages with take and hands each to handle until
// ctx ends, riding out transport failures.
func (e *Executor) controls(ctx context.Context, what string,
	take func(context.Context) (*queue.ControlDelivery, error), handle func(context.Context, *queue.ControlDelivery)) {
	var b backoff
	for ctx.Err() == nil {
		c, err := take(ctx)
		if err != nil {
			if ctx.Err() == nil {
				b.fail(ctx, e.log, "cannot take "+what, err)
			}
			continue
		}
		b.ok(e.log, "taking "+what+" again")
		if c != nil {
			handle(ctx, c)
		}
	}
}

func (e *Executor) handleControl(ctx context.Context, c *queue.ControlDelivery) {
	defer func() {
		if _, err := retry(ctx, e.log, "acknowledge control messages", func(ctx context.Context) (struct{}, error) {
			return struct{}{}, e.opt.Broker.AckControl(ctx, c)
		}); err != nil {
			e.log.Warn("control message left unacknowledged; it will be handled again after a restart", "error", err)
		}
	}()
	if c.Size > 0 {
		e.log.Warn("ignoring a control message over the limit, dropped unread", "bytes", c.Size, "limit", task.MaxControlBytes)
		return
	}
	ctl, err := task.ParseControl(c.Raw)
	if err != nil {
		e.log.Warn("ignoring a malformed control message", "reason", err, "bytes", len(c.Raw))
		return
	}
	if e.refuseKill(ctl) {
		return
	}
	if e.kill(ctl.ID, "kill message") {
		e.log.Info("kill received", "id", ctl.ID)
		return
	}
	route, err := retry(ctx, e.log, "route kills", func(ctx context.Context) (queue.Route, error) {
		return e.opt.Broker.RouteKill(ctx, ctl.ID)
	})
	if err != nil {
		return
	}
	switch {
	case route.Executor == e.opt.ExecutorID:
		// Claimed here between our first look and the route: look again.
		if !e.kill(ctl.ID, "kill message") {
			e.log.Info("kill for a task that just ended here", "id", ctl.ID)
		}
	case route.Executor != "":
		if _, err := retry(ctx, e.log, "forward kills", func(ctx context.Context) (struct{}, error) {
			return struct{}{}, e.opt.Broker.Forward(ctx, route.Executor, c.Raw)
		}); err == nil {
			e.log.Info("kill forwarded to the executor running the task", "id", ctl.ID, "executor", route.Executor)
		}
	case route.Queued:
		_ = e.record(audit.Record{Kind: audit.KindControl, ID: ctl.ID, Action: task.ControlKill, By: "kill message",
			Reason: "the task is still queued: cancelled before it starts"})
		removed, err := e.opt.Broker.RemoveQueued(ctx, ctl.ID, func(raw []byte) *queue.Finish {
			_, typ := task.PeekID(raw)
			return e.cancelledFinish(ctl.ID, typ, raw)
		})
		switch {
		case err != nil:
			e.log.Warn("kill for a queued task: it will be cancelled when taken", "id", ctl.ID, "error", err)
		case removed:
			e.log.Info("kill cancelled a queued task", "id", ctl.ID)
		default:
			e.log.Info("kill for a task not (yet) queued: it is cancelled if it arrives within the retention time", "id", ctl.ID)
		}
	default:
		_ = e.record(audit.Record{Kind: audit.KindControl, ID: ctl.ID, Action: task.ControlKill, By: "kill message",
			Reason: "the task already ended: nothing to do"})
		e.log.Info("kill for a task that already ended", "id", ctl.ID, "status", route.Ended)
	}
}

// cancelledFinish is the done of a task killed before it started.
func (e *Executor) cancelledFinish(id, typ string, raw []byte) *queue.Finish {
	done := task.Done(task.Ending{ID: id, Type: typ, Executor: e.opt.ExecutorID, Seq: 1, Time: time.Now(),
		Result: task.Result{Status: task.Killed, ExitCode: -1, Reason: task.KilledBeforeStart}})
	return &queue.Finish{ID: id, State: task.Killed, Done: done, Raw: raw}
}
