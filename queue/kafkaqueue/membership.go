package kafkaqueue

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
)

// Liveness comes from heartbeat records this transport writes to the
// executors topic every TTL/3, never from the tasks consumer group: a
// rebalance, a slow poll or a long task changes nothing about who is
// alive, and a group session says nothing about whether a task's executor
// still runs it.

func (q *Queue) beat(ctx context.Context, kind string) error {
	b, _ := json.Marshal(beatRec{K: kind, Exec: q.opt.ExecutorID, Holder: q.holder, T: nowMilli()})
	r, err := q.produce(ctx, &kgo.Record{Topic: q.topics.Executors, Key: []byte(q.opt.ExecutorID), Value: b})
	if err != nil {
		return fmt.Errorf("queue: kafka: heartbeat: %w", err)
	}
	return q.view.waitFor(ctx, r.Topic, r.Partition, r.Offset)
}

func (q *Queue) alive(e *execState) bool {
	return e != nil && !e.left && time.Since(e.last) < q.opt.TTL
}

// Join implements queue.Membership: it waits (up to two TTLs) for another
// holder of this executor id to stop beating, and fails if it does not.
func (q *Queue) Join(ctx context.Context) error {
	deadline := time.Now().Add(2 * q.opt.TTL)
	waiting := false
	for {
		if err := q.view.catchUp(ctx, q.topics.Executors); err != nil {
			return err
		}
		q.view.mu.Lock()
		e := q.view.execs[q.opt.ExecutorID]
		var holder string
		if e != nil && e.holder != q.holder && q.alive(e) {
			holder = e.holder
		}
		q.view.mu.Unlock()
		if holder == "" {
			sent := time.Now()
			if err := q.beat(ctx, "beat"); err != nil {
				return err
			}
			q.beatMu.Lock()
			q.lastBeat = sent
			q.beatMu.Unlock()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: executor id %q is held on this Kafka cluster by %s; give each executor its own executor_id",
				queue.ErrIdentityTaken, q.opt.ExecutorID, holder)
		}
		if !waiting {
			q.opt.Logger.Warn("executor id is held on this Kafka cluster; waiting up to two TTLs for it to expire (a previous run that died)",
				"executor_id", q.opt.ExecutorID, "holder", holder)
			waiting = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(q.opt.TTL / 5):
		}
	}
}

// Heartbeat implements queue.Membership. The liveness had expired when the
// last acknowledged heartbeat is a TTL old: peers may have judged this
// executor dead meanwhile.
func (q *Queue) Heartbeat(ctx context.Context) error {
	// Read the executors topic to its end first: a second holder's join
	// written before this beat must be what it answers, not a liveness
	// judged on a view that has not seen that join yet.
	if err := q.view.catchUp(ctx, q.topics.Executors); err != nil {
		return err
	}
	q.view.mu.Lock()
	e := q.view.execs[q.opt.ExecutorID]
	var other string
	if e != nil && e.holder != q.holder && !e.left {
		other = e.holder
	}
	declared := e == nil || !q.alive(e) // as peers see it
	q.view.mu.Unlock()
	if other != "" {
		return fmt.Errorf("%w: executor id %q is now held by %s", queue.ErrIdentityTaken, q.opt.ExecutorID, other)
	}
	sent := time.Now()
	if err := q.beat(ctx, "beat"); err != nil {
		return err
	}
	q.beatMu.Lock()
	expired := declared || sent.Sub(q.lastBeat) >= q.opt.TTL
	q.lastBeat = sent
	q.beatMu.Unlock()
	if expired {
		return queue.ErrLivenessLost
	}
	return nil
}

// Owned implements queue.Membership from the status topic, read to its
// end: a claim is still this executor's while its id runs here with its
// token.
func (q *Queue) Owned(ctx context.Context, claims map[string]string) (map[string]bool, error) {
	if err := q.view.catchUp(ctx, q.topics.Status); err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(claims))
	for id, token := range claims {
		st := q.view.get(id)
		if st == nil {
			out[id] = true // the record aged out or was never read: nobody reported it
			continue
		}
		out[id] = st.state == task.Running && st.exec == q.opt.ExecutorID && st.token == token
	}
	return out, nil
}

// ExpireExecutor ends executor's liveness now, as peers see it: they may
// recover its work once they have seen it dead for a TTL. For an operator
// who knows an executor is gone (and for the conformance suite).
func ExpireExecutor(ctx context.Context, cl *kgo.Client, t Topics, executor string) error {
	b, _ := json.Marshal(beatRec{K: "expired", Exec: executor, T: nowMilli()})
	return cl.ProduceSync(ctx, &kgo.Record{Topic: t.Executors, Key: []byte(executor), Value: b}).FirstErr()
}

// Leave implements queue.Membership.
func (q *Queue) Leave(ctx context.Context) error {
	return q.beat(ctx, "left")
}

// Executors implements queue.Membership.
func (q *Queue) Executors(ctx context.Context) (map[string]bool, error) {
	if err := q.view.catchUp(ctx, q.topics.Executors); err != nil {
		return nil, err
	}
	q.view.mu.Lock()
	defer q.view.mu.Unlock()
	out := map[string]bool{}
	for id, e := range q.view.execs {
		if !e.left {
			out[id] = q.alive(e)
		}
	}
	return out, nil
}

// Recover implements queue.Membership: every id the status topic shows
// running on the dead executor gets a lost record; the fold keeps the
// first of racing reports (and none after the task's own finish), and only
// the recoverer whose report won publishes the lost done. Tasks it took
// and never claimed need nothing: their offsets were never committed, so
// the group hands them to a peer. For this executor's own id (at start)
// only claims of earlier processes are lost. Then it produces the dones
// that the dead executor decided and did not get to the logs topic
// (republish).
func (q *Queue) Recover(ctx context.Context, dead string) (queue.Recovered, error) {
	var r queue.Recovered
	if err := q.view.catchUp(ctx, q.topics.Status, q.topics.Executors); err != nil {
		return r, err
	}
	if dead != q.opt.ExecutorID {
		q.view.mu.Lock()
		alive := q.alive(q.view.execs[dead])
		q.view.mu.Unlock()
		if alive {
			return r, nil
		}
	}
	for id, st := range q.view.running(dead) {
		if dead == q.opt.ExecutorID && strings.HasPrefix(st.token, q.holder+"/") {
			continue
		}
		lost := task.LostDone(id, st.typ, dead, q.opt.ExecutorID, time.Now())
		end, off, err := q.writeStatus(ctx, statusRec{K: kLost, ID: id, Exec: q.opt.ExecutorID, Dead: dead, Token: st.token, Done: string(lost)})
		if err != nil {
			return r, fmt.Errorf("queue: kafka: recover %s: %w", dead, err)
		}
		if end == nil || end.endOffset != off || end.state != task.Lost {
			continue // it ended otherwise, or a peer reported it first
		}
		if _, err := q.produce(ctx, &kgo.Record{Topic: q.topics.Logs, Key: []byte(id), Value: lost}); err != nil {
			return r, fmt.Errorf("queue: kafka: publish the lost done of %q: %w", id, err)
		}
		q.markPublished(id, off)
		r.Lost++
	}
	n, err := q.republish(ctx, dead)
	r.Republished = n
	if err != nil {
		return r, fmt.Errorf("queue: kafka: recover %s: %w", dead, err)
	}
	if dead != q.opt.ExecutorID {
		q.view.mu.Lock()
		if e := q.view.execs[dead]; e != nil && !q.alive(e) {
			e.left = true // forgotten here; its next heartbeat brings it back
		}
		q.view.mu.Unlock()
	}
	return r, nil
}

// Status implements queue.Statuses.
func (q *Queue) Status(ctx context.Context, id string) (*queue.Status, error) {
	if err := q.view.catchUp(ctx, q.topics.Status); err != nil {
		return nil, err
	}
	st := q.view.get(id)
	if st == nil {
		return nil, nil
	}
	state := st.state
	if state == stateCancelled {
		state = task.Queued
	}
	return &queue.Status{ID: id, State: state, Executor: st.exec,
		Updated: strconv.FormatInt(st.updated, 10), Done: st.done}, nil
}
