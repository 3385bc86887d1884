package executor

import (
	"context"
	"time"
)

// heartbeatLoop renews this executor's liveness every TTL/3.
func (e *Executor) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(e.opt.TTL / 3)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := e.opt.Broker.Heartbeat(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			failing = true
			e.log.Warn("cannot renew liveness; tasks keep running and their messages are kept", "error", err)
		case err == nil && failing:
			failing = false
			e.log.Info("liveness renewed again")
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
				"lost", r.Lost, "requeued", r.Requeued, "controls", r.Controls)
		}
		for id := range missingSince {
			if _, ok := execs[id]; !ok {
				delete(missingSince, id)
			}
		}
	}
}
