package kafkaqueue

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
)

// forwardHeader names the executor a forwarded kill is for.
const forwardHeader = "task-job-forward-to"

// startControl starts reading the control topic in no group: every
// executor reads every kill. It resumes from this executor's own committed
// position (group Q_control-<executor>, committed by AckControl, never
// joined), or, the first time, from status_retention ago: a kill sent
// while no executor ran is still seen.
func (q *Queue) startControl(ctx, runCtx context.Context, base []kgo.Opt) error {
	ends, err := q.adm.ListEndOffsets(ctx, q.topics.Control)
	if err != nil || ends.Error() != nil {
		return fmt.Errorf("queue: kafka: read the control topic %s: %v %v", q.topics.Control, err, ends.Error())
	}
	committed, err := q.adm.FetchOffsets(ctx, q.ctlGroup)
	if err != nil {
		q.opt.Logger.Warn("cannot read this executor's position in the control topic; reading it from status_retention ago", "error", err)
	}
	since := time.Now().Add(-q.opt.Retention).UnixMilli()
	start := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if c, ok := committed.Lookup(q.topics.Control, o.Partition); ok && c.Err == nil && c.At >= 0 {
			start[o.Partition] = kgo.NewOffset().At(c.At)
			return
		}
		start[o.Partition] = kgo.NewOffset().AfterMilli(since)
	})
	q.ctl, err = kgo.NewClient(append(base,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{q.topics.Control: start}),
		kgo.FetchMaxWait(250*time.Millisecond),
	)...)
	if err != nil {
		return fmt.Errorf("queue: kafka: %w", err)
	}
	q.wg.Add(1)
	go func() { defer q.wg.Done(); q.readControl(runCtx) }()
	return nil
}

func (q *Queue) readControl(ctx context.Context) {
	for ctx.Err() == nil {
		fs := q.ctl.PollFetches(ctx)
		if fs.IsClientClosed() {
			return
		}
		for _, r := range fs.Records() {
			ch := q.ctlCh
			for _, h := range r.Headers {
				if h.Key == forwardHeader {
					ch = nil
					if string(h.Value) == q.opt.ExecutorID {
						ch = q.fwdCh
					}
				}
			}
			if ch == nil {
				q.ack(ctx, r)
				continue
			}
			select {
			case ch <- r:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (q *Queue) takeFrom(ctx context.Context, ch chan *kgo.Record, fwd bool) (*queue.ControlDelivery, error) {
	if q.closed.Load() {
		return nil, queue.ErrClosed
	}
	t := time.NewTimer(BlockTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		q.ctlMu.Lock()
		q.ctlInflight = append(q.ctlInflight, r)
		q.ctlMu.Unlock()
		return &queue.ControlDelivery{Raw: r.Value, Forwarded: fwd}, nil
	case <-t.C:
		return nil, nil
	case <-ctx.Done():
		return nil, nil
	}
}

// TakeControl implements queue.Controls.
func (q *Queue) TakeControl(ctx context.Context) (*queue.ControlDelivery, error) {
	return q.takeFrom(ctx, q.ctlCh, false)
}

// TakeForwarded implements queue.Controls: kills a peer forwarded here,
// read from the same control topic.
func (q *Queue) TakeForwarded(ctx context.Context) (*queue.ControlDelivery, error) {
	return q.takeFrom(ctx, q.fwdCh, true)
}

// AckControl implements queue.Controls: this executor's position in the
// control topic moves past the message.
func (q *Queue) AckControl(ctx context.Context, c *queue.ControlDelivery) error {
	q.ctlMu.Lock()
	var r *kgo.Record
	for i, x := range q.ctlInflight {
		if string(x.Value) == string(c.Raw) {
			r = x
			q.ctlInflight = append(q.ctlInflight[:i], q.ctlInflight[i+1:]...)
			break
		}
	}
	q.ctlMu.Unlock()
	if r != nil && !c.Forwarded {
		q.ack(ctx, r)
	}
	return nil
}

// ack commits the position past r (never backwards).
func (q *Queue) ack(ctx context.Context, r *kgo.Record) {
	q.ctlMu.Lock()
	if q.ctlAcked[r.Partition] > r.Offset {
		q.ctlMu.Unlock()
		return
	}
	q.ctlAcked[r.Partition] = r.Offset + 1
	q.ctlMu.Unlock()
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: r.Topic, Partition: r.Partition, At: r.Offset + 1, LeaderEpoch: -1})
	res, err := q.adm.CommitOffsets(ctx, q.ctlGroup, os)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		q.opt.Logger.Debug("cannot commit the control topic position; after a restart some kills are read again (harmless)", "error", err)
	}
}

// RouteKill implements queue.Controls. An id not running yet gets a kill
// ahead (a cancel record in its status partition), read back: if a claim
// came first the kill is routed to the claimer; if not, whoever claims it
// later finishes it as killed.
func (q *Queue) RouteKill(ctx context.Context, id string) (queue.Route, error) {
	if err := q.view.catchUp(ctx, q.topics.Status); err != nil {
		return queue.Route{}, err
	}
	st := q.view.get(id)
	if st == nil {
		var err error
		st, _, err = q.writeStatus(ctx, statusRec{K: kCancel, ID: id, Exec: q.opt.ExecutorID})
		if err != nil {
			return queue.Route{}, err
		}
	}
	switch {
	case st == nil || st.state == stateCancelled:
		return queue.Route{Queued: true}, nil
	case st.state == task.Running:
		return queue.Route{Executor: st.exec}, nil
	}
	return queue.Route{Ended: st.state}, nil
}

// Forward implements queue.Controls: the kill goes back to the control
// topic with a header naming the executor, which alone takes it.
func (q *Queue) Forward(ctx context.Context, executor string, raw []byte) error {
	_, err := q.produce(ctx, &kgo.Record{Topic: q.topics.Control, Value: raw,
		Headers: []kgo.RecordHeader{{Key: forwardHeader, Value: []byte(executor)}}})
	if err != nil {
		return fmt.Errorf("queue: kafka: forward control to %s: %w", executor, err)
	}
	return nil
}

// RemoveQueued implements queue.Controls. A record cannot be taken out of
// a topic: the kill ahead RouteKill wrote cancels the task when an
// executor takes it, which then publishes its done (killed before it
// started). It reports false.
func (q *Queue) RemoveQueued(context.Context, string, func(raw []byte) *queue.Finish) (bool, error) {
	return false, nil
}
