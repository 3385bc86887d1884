package kafkaqueue

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/task"
)

// republish produces the dones that executor dead decided (its finish or
// lost record ended the id) and did not get to the logs topic before it
// died: a done only in the status topic is never seen by a reader of the
// logs, where clients wait for it. For each, the first executor whose
// republish record the fold takes does it, so racing peers do not both;
// it looks for the done in the logs topic first (the dead executor may
// have produced it and died before its published record), produces it if
// it is not there, and writes the published record. For this executor's
// own id, only records of earlier processes count: this process publishes
// its own. It returns how many dones it produced.
func (q *Queue) republish(ctx context.Context, dead string) (int, error) {
	todo := q.view.unpublished(dead)
	if len(todo) == 0 {
		return 0, nil
	}
	var logs *Client
	defer func() {
		if logs != nil {
			logs.Close()
		}
	}()
	n := 0
	for id, st := range todo {
		if st.endBy == q.holder || st.repBy == q.holder {
			continue // this process publishes it (or is publishing it now)
		}
		now, _, err := q.writeStatus(ctx, statusRec{K: kRepublish, ID: id, Exec: q.opt.ExecutorID, Dead: st.republisher, End: st.endOffset})
		if err != nil {
			return n, err
		}
		if now == nil || now.published || now.endOffset != st.endOffset || now.repBy != q.holder {
			continue // published meanwhile, or a peer took it on first
		}
		if logs == nil {
			if logs, err = NewClient(ctx, q.seeds, q.copts, ClientConfig{Names: q.opt.Names, Retention: q.opt.Retention,
				TTL: q.opt.TTL, MaxTaskBytes: q.opt.MaxTaskBytes}); err != nil {
				return n, err
			}
		}
		there, err := doneInLogs(ctx, logs, id)
		if err != nil {
			return n, err
		}
		if !there {
			if _, err := q.produce(ctx, &kgo.Record{Topic: q.topics.Logs, Key: []byte(id), Value: st.done}); err != nil {
				return n, fmt.Errorf("queue: kafka: publish the done of %q: %w", id, err)
			}
			n++
		}
		if _, _, err := q.writeStatus(ctx, statusRec{K: kPublished, ID: id, End: st.endOffset}); err != nil {
			return n, err
		}
		if !there {
			q.opt.Logger.Warn("published the done of a task whose executor died after it ended it", "id", id, "executor", st.exec)
		}
	}
	return n, nil
}

// doneInLogs reports whether the logs topic holds a done of id, read as
// `logs` reads it (from shortly before its claim to the end).
func doneInLogs(ctx context.Context, c *Client, id string) (bool, error) {
	b, err := c.ReadLogs(ctx, id, "", 0)
	if err != nil {
		return false, err
	}
	for _, m := range b.Messages {
		var l task.Log
		if json.Unmarshal(m, &l) == nil && l.MsgType == task.MsgDone {
			return true, nil
		}
	}
	return false, nil
}
