package kafkaqueue

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
)

// logID is the id field of a TaskLog message: its key in the logs topic.
func logID(b []byte) []byte {
	var m struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(b, &m)
	return []byte(m.ID)
}

// Publish implements queue.Publisher. Output lines go to the logs topic
// keyed by task id (a run of them in one produce), each only while its
// task runs here by the fold, read up to the status topic's end first: a
// batch retried after its finish took effect, or a line of a task a peer
// has reported lost, is refused, so no line follows the task's done. (A
// lost report written between that read and the produce can still precede
// the line: Redis checks and appends in one step, a topic cannot.) A finish is first a
// record in the status topic: the fold decides whether it ends the id
// (this delivery still owns it) and only then is its done produced to the
// logs topic, after the task's lines. So a fenced executor's done never
// reaches the logs topic. A retried batch can repeat lines and, when the
// first attempt's reply was lost, the done: every copy carries the same
// seq and the winning delivery's content, and readers keep the first.
func (q *Queue) Publish(ctx context.Context, msgs []queue.Message) ([]bool, error) {
	applied := make([]bool, len(msgs))
	var lines []*kgo.Record
	flush := func() error {
		if len(lines) == 0 {
			return nil
		}
		res := q.prod.ProduceSync(ctx, lines...)
		lines = nil
		if err := res.FirstErr(); err != nil {
			return fmt.Errorf("queue: kafka: publish output lines: %w", err)
		}
		return nil
	}
	caughtUp := false
	for i, m := range msgs {
		if m.Finish == nil {
			if !caughtUp {
				if err := q.view.catchUp(ctx, q.topics.Status); err != nil {
					return nil, err
				}
				caughtUp = true
			}
			id := logID(m.Log)
			if !q.runsHere(string(id)) {
				continue
			}
			lines = append(lines, &kgo.Record{Topic: q.topics.Logs, Key: id, Value: m.Log})
			applied[i] = true
			continue
		}
		if err := flush(); err != nil {
			return nil, err
		}
		ok, err := q.finish(ctx, m.Finish)
		if err != nil {
			return nil, err
		}
		applied[i] = ok
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return applied, nil
}

// runsHere reports whether a line of id may be published: its task runs
// on this executor by the fold, or the fold has no record of it.
func (q *Queue) runsHere(id string) bool {
	st := q.view.get(id)
	return st == nil || st.state == task.Running && st.exec == q.opt.ExecutorID
}

// forgetPublished drops the memory of dones published long ago: a batch
// is retried within minutes, not hours. Called with finMu held.
func (q *Queue) forgetPublished() {
	if len(q.published) < 10000 {
		return
	}
	cut := time.Now().Add(-time.Hour)
	for k, at := range q.published {
		if at.Before(cut) {
			delete(q.published, k)
		}
	}
}

// finish writes f to the status topic and, when it ended the id, its done
// to the logs topic.
func (q *Queue) finish(ctx context.Context, f *queue.Finish) (bool, error) {
	// One finish at a time, so that a retry that overlaps its first attempt
	// does not produce the done twice.
	q.finMu.Lock()
	defer q.finMu.Unlock()
	key := f.ID + "\x00" + f.Token
	if f.Claimed {
		if _, ok := q.published[key]; ok {
			q.pend.release(f.Token, f.Raw)
			return true, nil // a retried batch: the done is out already
		}
	}
	st, off, err := q.writeStatus(ctx, statusRec{K: kFinish, ID: f.ID, Exec: q.opt.ExecutorID, Token: f.Token,
		State: f.State, Claimed: f.Claimed, Done: string(f.Done)})
	if err != nil {
		return false, err
	}
	if !f.Claimed {
		// A task killed while queued: its delivery (if this executor holds
		// it) is resolved now.
		q.commit(ctx, q.pend.resolve(f.Token, f.Raw))
	}
	q.pend.release(f.Token, f.Raw) // ended or not, the delivery is done with
	if !finishedBy(st, off, q.opt.ExecutorID, f.Claimed, f.Token, f.Done) {
		return false, nil
	}
	if h := q.opt.crashBeforeDone; h != nil {
		if err := h(f.ID); err != nil {
			return false, err
		}
	}
	if _, err := q.produce(ctx, &kgo.Record{Topic: q.topics.Logs, Key: []byte(f.ID), Value: f.Done}); err != nil {
		return false, fmt.Errorf("queue: kafka: publish the done of %q: %w", f.ID, err)
	}
	if h := q.opt.crashAfterDone; h != nil {
		if err := h(f.ID); err != nil {
			return false, err
		}
	}
	q.markPublished(f.ID, st.endOffset)
	if f.Claimed {
		q.published[key] = time.Now()
		q.forgetPublished()
	}
	return true, nil
}

// markPublished records that the done of id's ending record (at offset
// end) is in the logs topic, so that no recovery produces it again. It
// does not wait: a record lost with a crash only makes that recovery read
// the logs topic to find the done there.
func (q *Queue) markPublished(id string, end int64) {
	b, _ := json.Marshal(statusRec{K: kPublished, ID: id, End: end, By: q.holder, T: nowMilli()})
	q.prod.Produce(context.Background(), &kgo.Record{Topic: q.topics.Status, Key: []byte(id), Value: b}, func(_ *kgo.Record, err error) {
		if err != nil && !q.closed.Load() {
			q.opt.Logger.Warn("cannot record that a done is published; a recovery will look for it in the logs topic", "id", id, "error", err)
		}
	})
}
