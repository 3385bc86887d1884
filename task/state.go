// Package task holds the wire types of the task-job protocol — the task a
// client submits, the control message that kills it, and the TaskLog
// messages that report its output and its one result — together with their
// parsing, validation and the task state machine. It knows nothing of Redis or
// of processes.
package task

// State is where a task is in its life. The life is short and one-way:
//
//	queued ──▶ running ──▶ succeeded | failed | timeout | killed | lost
//	   │
//	   └─────▶ rejected | killed (a kill arrived while it was still queued)
//
// Every state after running is terminal: a task in one gets exactly one done
// message and never changes again.
type State string

const (
	// Queued: the task is on a list and no executor has claimed it yet.
	// An executor that died before starting a task puts it back in this state.
	Queued State = "queued"

	// Running: one executor has claimed the task id and runs (or is about to
	// run) its process. The status record names that executor.
	Running State = "running"

	// Succeeded: the process exited with status 0.
	Succeeded State = "succeeded"

	// Failed: the process exited non-zero, died of a signal nobody sent on
	// purpose, or could not be started. The done message carries the exit
	// code or signal and a reason.
	Failed State = "failed"

	// Timeout: the task ran longer than its timeout and was stopped
	// (SIGTERM, grace, SIGKILL to its whole process tree).
	Timeout State = "timeout"

	// Killed: a kill message ended the task — while it ran, or before it
	// started — or the executor was shut down and the task did not finish
	// within the shutdown grace time.
	Killed State = "killed"

	// Lost: the executor running the task died. Another executor (or the same
	// one after a restart) reports it. A lost task is never re-run on its own:
	// what it did before the crash is unknown.
	Lost State = "lost"

	// Rejected: the task was never run: malformed JSON, wrong field types,
	// a cmdline refused by the jail, or a payload over the size limit.
	Rejected State = "rejected"
)

// Terminal reports whether s is an end state: one that has had its done
// message and will not change again.
func (s State) Terminal() bool {
	switch s {
	case Succeeded, Failed, Timeout, Killed, Lost, Rejected:
		return true
	}
	return false
}

// Valid reports whether s is one of the states above.
func (s State) Valid() bool { return s == Queued || s == Running || s.Terminal() }
