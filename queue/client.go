package queue

import (
	"context"
	"strconv"
	"time"
)

// Client is what task-job's own client commands (submit, kill, status,
// logs) need of a transport. Each transport implements it with what it can
// promise: the checks it cannot make are said by its documentation and by
// the commands, not hidden behind this interface.
type Client interface {
	Statuses
	// SubmitTask queues raw, the task JSON of id, for tube ("" = none),
	// unless the check the transport can make finds id used already; only
	// Pushed queued anything.
	SubmitTask(ctx context.Context, id, tube string, raw []byte) (SubmitResult, error)
	// SendControl sends raw, a control message (a kill), to the executors.
	SendControl(ctx context.Context, raw []byte) error
	// State is id's state as stored, with who holds it: "" for an id not
	// known, "cancelled" for a kill that came before the task (Status
	// shows that as queued), else a task.State.
	State(ctx context.Context, id string) (state, executor string, err error)
	// ReadLogs returns id's TaskLog messages after position from ("" = from
	// its first). With block > 0 it waits up to block for the first new
	// one; an empty batch with a nil error means nothing came.
	ReadLogs(ctx context.Context, id, from string, block time.Duration) (LogBatch, error)
	Close() error
}

// LogBatch is what one read of a task's messages returned.
type LogBatch struct {
	// Messages are TaskLog messages of the task, in order.
	Messages [][]byte
	// Next is the position to read from next time.
	Next string
}

// SubmitResult says what a submit did.
type SubmitResult int

const (
	// IDFree (a look-up only): the id is neither used nor reserved.
	IDFree SubmitResult = iota
	// Pushed: the id was free as far as the transport could tell; the
	// task is queued (and, where the transport can, the id reserved).
	Pushed
	// IDUsed: the id has a status (an executor claimed it, or a kill
	// cancelled it); nothing was queued.
	IDUsed
	// IDReserved: an earlier submit reserved the id and no executor has
	// claimed it yet (it is still queued); nothing was queued.
	IDReserved
)

func (r SubmitResult) String() string {
	switch r {
	case IDFree:
		return "id free"
	case Pushed:
		return "pushed"
	case IDUsed:
		return "id used"
	case IDReserved:
		return "id reserved"
	}
	return "SubmitResult(" + strconv.Itoa(int(r)) + ")"
}
