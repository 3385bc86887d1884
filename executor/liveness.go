package executor

import (
	"context"
	"errors"
	"time"

	"github.com/taskjob/task-job/queue"
)

// heartbeatLoop renews this executor's liveness every TTL/3, or at once
// when the outbox finds the lease expired. A renewal that finds the
// liveness had expired fences the executor first (fenceLost): peers may
// have declared it dead meanwhile. Another process holding the id ends
// this executor (stop).
func (e *Executor) heartbeatLoop(ctx context.Context, stop func(error)) {
	t := time.NewTicker(e.opt.TTL / 3)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.lease.kick:
		}
		sent := time.Now()
		away := e.lease.expired()
		err := e.opt.Broker.Heartbeat(ctx)
		switch {
		case errors.Is(err, queue.ErrIdentityTaken):
			e.log.Error("another process now holds this executor's id; stopping", "error", err)
			if ferr := e.fenceLost(ctx); ferr != nil {
				e.log.Warn("could not check which tasks are still this executor's", "error", ferr)
			}
			stop(err)
			return
		case errors.Is(err, queue.ErrLivenessLost):
			if ferr := e.fenceLost(ctx); ferr != nil {
				if ctx.Err() == nil {
					e.log.Warn("could not check which tasks are still this executor's; publishing waits", "error", ferr)
				}
				continue
			}
			e.lease.renewed(sent)
			e.log.Info("liveness renewed after it had expired", "fence_ms", time.Since(sent).Milliseconds())
			failing = false
		case err != nil:
			if !failing && ctx.Err() == nil {
				failing = true
				e.log.Warn("cannot renew liveness; tasks keep running and their messages are kept", "error", err)
			}
		default:
			// The key was still ours: it never expired since the last
			// renewal, so no peer can have recovered anything.
			e.lease.renewed(sent)
			if failing || away {
				e.log.Info("liveness renewed again")
			}
			failing = false
		}
	}
}

// recoverLoop watches the other executors. One whose liveness key has been
// missing for a whole TTL, observed while this executor could reach Redis
// the whole time, is dead: its started tasks are reported lost and the rest
// go back to the queue. Requiring an unbroken view matters after a Redis
// outage: every executor's key expired meanwhile, and each gets a TTL to
// renew it before anyone judges.
func (e *Executor) recoverLoop(ctx context.Context) {
	t := time.NewTicker(e.opt.TTL / 4)
	defer t.Stop()
	missingSince := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		execs, err := e.opt.Broker.Executors(ctx)
		if err != nil {
			clear(missingSince)
			continue
		}
		now := time.Now()
		for id, alive := range execs {
			if id == e.opt.ExecutorID {
				continue
			}
			if alive {
				delete(missingSince, id)
				continue
			}
			since, seen := missingSince[id]
			if !seen {
				missingSince[id] = now
				continue
			}
			if now.Sub(since) < e.opt.TTL {
				continue
			}
			r, err := e.opt.Broker.Recover(ctx, id)
			if err != nil {
				e.log.Warn("could not recover a dead executor's work; will retry", "executor", id, "error", err)
				continue
			}
			delete(missingSince, id)
			e.log.Warn("executor is dead: recovered its work", "executor", id,
				"lost", r.Lost, "requeued", r.Requeued, "controls", r.Controls, "republished", r.Republished)
		}
		for id := range missingSince {
			if _, ok := execs[id]; !ok {
				delete(missingSince, id)
			}
		}
	}
}
