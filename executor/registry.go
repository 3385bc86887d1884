package executor

import (
	"context"
	"errors"
	"time"
)

// Hooks for a fleet registry (registry.Hooks): when the executor loses its
// registration it stops taking work at once, and after the grace it stops
// its running tasks, which end as lost.

// ErrRegistrationLost is the cause of a task stopped because its executor
// lost its registry lease: the fleet counts the executor dead, and may
// have given its work to another.
var ErrRegistrationLost = errors.New("executor: this executor lost its registry lease (cut off from the registry past its TTL)")

// PauseTaking stops the executor taking tasks until ResumeTaking; a task
// taken while it pauses is put back.
func (e *Executor) PauseTaking() { e.paused.Store(true) }

// ResumeTaking lets the executor take tasks again.
func (e *Executor) ResumeTaking() { e.paused.Store(false) }

// StopAllLost stops every task of this executor; each ends as lost, with
// its own done. It returns how many it stopped.
func (e *Executor) StopAllLost() int {
	e.mu.Lock()
	runs := make([]*run, 0, len(e.tasks))
	for _, r := range e.tasks {
		runs = append(runs, r)
	}
	e.mu.Unlock()
	for _, r := range runs {
		r.cancel(ErrRegistrationLost)
	}
	if len(runs) > 0 {
		e.log.Error("lost the registry lease past its grace: stopped this executor's tasks; they end as lost", "tasks", len(runs))
	}
	return len(runs)
}

// waitTaking waits while taking is paused; false when ctx ended.
func (e *Executor) waitTaking(ctx context.Context) bool {
	for e.paused.Load() {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return ctx.Err() == nil
}
