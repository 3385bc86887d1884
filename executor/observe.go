package executor

import (
	"time"

	"github.com/taskjob/task-job/task"
)

// Observer is told what happens to tasks, for metrics. Its methods are
// called on the task's goroutine and must not block. Options.Observer nil
// means nobody listens.
type Observer interface {
	// TaskReceived: a task was claimed by this executor.
	TaskReceived(tube string)
	// TaskStarted: its process started; waited is from its entering the
	// queue (Delivery.Queued) to the start, or from its being taken off the
	// task list when the transport does not know when it was queued; setup
	// is the sandbox's start-up alone.
	TaskStarted(tube string, waited, setup time.Duration)
	// TaskEnded: its done was queued.
	TaskEnded(TaskEnd)
	// AuditWriteFailed: an audit record could not be written.
	AuditWriteFailed()
}

// TaskEnd describes a task's end.
type TaskEnd struct {
	Tube   string
	State  task.State
	Reason string
	// Started is true when its process had started; Ran is then how long
	// it ran.
	Started      bool
	Ran          time.Duration
	OOMKilled    bool
	DroppedBytes int64
}

type nopObserver struct{}

func (nopObserver) TaskReceived(string)                              {}
func (nopObserver) TaskStarted(string, time.Duration, time.Duration) {}
func (nopObserver) TaskEnded(TaskEnd)                                {}
func (nopObserver) AuditWriteFailed()                                {}
