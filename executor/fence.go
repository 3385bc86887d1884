package executor

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
)

// ErrFenced is the cause of a task stopped because a peer reported it lost:
// this executor had been declared dead (paused or cut off past its TTL).
var ErrFenced = errors.New("executor: a peer reported the task lost while this executor was away past its TTL")

// lease is this executor's own view of its liveness. Peers may declare it
// dead only once its liveness key has expired (at the earliest a TTL after
// the last renewal was sent) and they have then seen it missing for a whole
// TTL more. So until sent+1.5×TTL (half a TTL kept as margin for clocks
// and ticks) nothing can have been recovered, and the outbox may publish;
// past it (a SIGSTOP, a long
// pause, a cut connection) the outbox waits until the heartbeat has renewed
// the liveness and fenced the tasks peers reported lost.
//
// The done itself is fenced in Redis (the finish script checks the
// delivery's claim token, which a recovery removes), so a paused executor
// can never publish a second done. Output lines are fenced by this lease:
// the only gap left is a pause longer than the TTL between the lease check
// and the write of one batch.
type lease struct {
	ttl time.Duration

	mu         sync.Mutex
	validUntil time.Time
	fencing    bool
	changed    chan struct{} // closed and replaced whenever the lease changes
	fenced     map[string]bool

	kick chan struct{} // asks the heartbeat loop to renew now
}

func newLease(ttl time.Duration) *lease {
	return &lease{ttl: ttl, changed: make(chan struct{}), fenced: map[string]bool{}, kick: make(chan struct{}, 1)}
}

// renewed records a successful renewal whose request was sent at sent.
func (l *lease) renewed(sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.validUntil = sent.Add(l.ttl + l.ttl/2)
	l.fencing = false
	close(l.changed)
	l.changed = make(chan struct{})
}

// expired reports whether the lease ran out; it then stays out until renewed.
func (l *lease) expired() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.fencing && time.Now().After(l.validUntil) {
		l.fencing = true
	}
	return l.fencing
}

// wait blocks until the lease is valid, asking the heartbeat loop to renew
// it at once rather than at its next tick.
func (l *lease) wait(ctx context.Context) error {
	for {
		l.mu.Lock()
		ok := !l.fencing && time.Now().Before(l.validUntil)
		ch := l.changed
		l.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case l.kick <- struct{}{}:
		default:
		}
		t := time.NewTimer(l.ttl / 4)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}

func (l *lease) fence(id string) {
	l.mu.Lock()
	l.fenced[id] = true
	l.mu.Unlock()
}

func (l *lease) unfence(id string) {
	l.mu.Lock()
	delete(l.fenced, id)
	l.mu.Unlock()
}

// isFenced reports whether an output line belongs to a fenced task. The
// line is parsed only while some task is fenced.
func (l *lease) isFenced(line []byte) bool {
	l.mu.Lock()
	n := len(l.fenced)
	l.mu.Unlock()
	if n == 0 {
		return false
	}
	id, _ := task.PeekID(line)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fenced[id]
}

// fenceLost runs after a heartbeat found this executor's liveness had
// expired: it asks the transport which claims are still its own, and stops
// every task a peer reported lost, publishing nothing more for it.
func (e *Executor) fenceLost(ctx context.Context) error {
	e.mu.Lock()
	claims := map[string]string{}
	runs := map[string]*run{}
	for id, r := range e.tasks {
		if r.claimed.Load() {
			claims[id], runs[id] = r.d.Token, r
		}
	}
	e.mu.Unlock()
	var owned map[string]bool
	for {
		var err error
		owned, err = e.opt.Broker.Owned(ctx, claims)
		if err == nil {
			break
		}
		if !errors.Is(err, queue.ErrRecovering) {
			return err
		}
		// A peer is recovering this executor right now: its answer is
		// final only once it is done.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(e.opt.TTL / 10):
		}
	}
	n := 0
	for id, r := range runs {
		if owned[id] {
			continue
		}
		n++
		e.lease.fence(id)
		r.fenced.Store(true)
		r.cancel(ErrFenced)
	}
	if n > 0 {
		e.log.Error("this executor was declared dead while it was away past its TTL (paused or cut off): "+
			"stopped the tasks its peers reported lost; they get no second done", "tasks", n)
	} else {
		e.log.Warn("this executor's liveness had expired (paused or cut off past its TTL); no peer had reported its tasks lost")
	}
	return nil
}
