package task

import "time"

// Ending says how one task ended, for its done message. Every done of
// task-job — a task that ran, one refused, one killed before it started,
// one a peer reports lost — is built from one by Done, so they all carry
// the same fields.
type Ending struct {
	ID, Type, Tube string
	// Executor ran the task, or reports it (lost).
	Executor string
	// Seq is the done's place after the task's output lines; 0 when the
	// reporter cannot know it (lost).
	Seq    uint64
	Time   time.Time
	Result Result
}

// Done is the task's one done message. Data repeats the reason, as the
// original tool's consumers read data.
func Done(e Ending) []byte {
	r := e.Result
	if r.Reason == "" {
		r.Reason = string(r.Status)
	}
	return (&Log{
		ID: e.ID, Type: e.Type, Tube: e.Tube, MsgType: MsgDone, Data: r.Reason,
		Seq: e.Seq, Time: e.Time.UTC().Format(TimeFormat), Executor: e.Executor,
		Result: &r,
	}).Marshal()
}

// LostDone is the done a peer publishes for a task whose executor died (or was
// paused or cut off past its TTL) while it ran.
func LostDone(id, typ, deadExecutor, reporter string, now time.Time) []byte {
	return Done(Ending{
		ID: id, Type: typ, Executor: reporter, Time: now,
		Result: Result{Status: Lost, ExitCode: -1,
			Reason: "lost: executor " + deadExecutor + " died (or was paused or cut off past its TTL) while the task ran; " +
				"its outcome is unknown and it was not re-run"},
	})
}

// KilledBeforeStart is the reason of a task a kill reached before it ran.
const KilledBeforeStart = "killed before it started"
