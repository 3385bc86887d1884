// Package memqueue is an in-memory transport: one Hub stands for the
// server (the task, control and logs lists, the status of every id, the
// membership), and each executor talks to it through its own Queue, which
// implements queue.Broker with the same semantics as the Redis transport
// (queue/queuetest checks both against one contract).
//
// It is for tests of the executor's logic that do not test the transport
// itself: nothing leaves the process, nothing survives it. A Hub can be
// made to fail every call for a while (SetDown), to stand for an outage.
package memqueue

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
)

// BlockTimeout is how long a blocking take waits before returning empty.
const BlockTimeout = time.Second

// ErrDown is returned by every call while the Hub is down.
var ErrDown = errors.New("memqueue: transport down")

// Hub is the shared state of one transport instance.
type Hub struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	down    bool

	tasks, control, logs [][]byte
	processing           map[string][][]byte // executor → deliveries
	controlTaken         map[string][][]byte
	forwarded            map[string][][]byte
	status               map[string]*status
	killsAhead           map[string]time.Time // id → expiry
	executors            map[string]bool
	liveness             map[string]liveness
	recovering           map[string]time.Time // dead executor → lock expiry
}

type status struct {
	state     string // a task.State, or "cancelled" (killed while queued)
	executor  string
	token     string
	cancelled bool // claimed after a kill while queued
	updated   time.Time
	done      []byte
	expires   time.Time // zero: kept
}

type liveness struct {
	holder  string
	expires time.Time
}

// NewHub returns an empty transport.
func NewHub() *Hub {
	return &Hub{
		changed:      make(chan struct{}),
		processing:   map[string][][]byte{},
		controlTaken: map[string][][]byte{},
		forwarded:    map[string][][]byte{},
		status:       map[string]*status{},
		killsAhead:   map[string]time.Time{},
		executors:    map[string]bool{},
		liveness:     map[string]liveness{},
		recovering:   map[string]time.Time{},
	}
}

// notify wakes every waiter; call with mu held.
func (h *Hub) notify() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// Changed returns a channel closed at the next change of the Hub.
func (h *Hub) Changed() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changed
}

// SetDown makes every call of every Queue fail with ErrDown (down) or work
// again.
func (h *Hub) SetDown(down bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down = down
	h.notify()
}

// Push appends a task message to the task list, as a client does.
func (h *Hub) Push(raw []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tasks = append(h.tasks, slices.Clone(raw))
	h.notify()
}

// PushControl appends a control message to the shared control list.
func (h *Hub) PushControl(raw []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.control = append(h.control, slices.Clone(raw))
	h.notify()
}

// Published returns every message published so far, in order.
func (h *Hub) Published() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.logs)
}

// Queued returns the task list, head first.
func (h *Hub) Queued() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.tasks)
}

// Expire ends an executor's liveness now, as if it had been paused past
// its TTL.
func (h *Hub) Expire(executor string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.liveness, executor)
	h.notify()
}

// Options configure a Queue.
type Options struct {
	ExecutorID string
	// Retention is how long an ended id's status is kept. Default 24h.
	Retention time.Duration
	// TTL is how long an executor counts as alive after its last
	// heartbeat. Default 5s.
	TTL time.Duration
	// ScanLimit bounds RemoveQueued's look through the task list. Default
	// 10,000.
	ScanLimit int
	// MaxKillsAhead bounds the kills remembered for ids not yet taken.
	// Default 10,000.
	MaxKillsAhead int
	// MaxTaskBytes is max_task_bytes. Default 1 MiB.
	MaxTaskBytes int
}

// Queue is one executor's broker on a Hub.
type Queue struct {
	h      *Hub
	opt    Options
	holder string
	mu     sync.Mutex
	takes  uint64
	closed bool
}

var _ queue.Broker = (*Queue)(nil)

// New returns executor opt.ExecutorID's broker on h.
func (h *Hub) New(opt Options) *Queue {
	if opt.Retention <= 0 {
		opt.Retention = queue.DefaultRetention
	}
	if opt.TTL <= 0 {
		opt.TTL = queue.DefaultTTL
	}
	if opt.ScanLimit <= 0 {
		opt.ScanLimit = 10000
	}
	if opt.MaxKillsAhead <= 0 {
		opt.MaxKillsAhead = 10000
	}
	if opt.MaxTaskBytes <= 0 {
		opt.MaxTaskBytes = queue.DefaultMaxTaskBytes
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	host, _ := os.Hostname()
	return &Queue{h: h, opt: opt, holder: fmt.Sprintf("host %s pid %d, %s", host, os.Getpid(), hex.EncodeToString(b[:]))}
}

// Close implements queue.Broker: later calls fail with queue.ErrClosed.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	return nil
}

// lock takes the Hub's lock, or fails when the Queue is closed, the Hub is
// down or ctx has ended.
func (q *Queue) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q.mu.Lock()
	closed := q.closed
	q.mu.Unlock()
	if closed {
		return queue.ErrClosed
	}
	q.h.mu.Lock()
	if q.h.down {
		q.h.mu.Unlock()
		return ErrDown
	}
	return nil
}

func (q *Queue) unlock() { q.h.mu.Unlock() }

// wait blocks until f (called with the Hub locked) returns true, about
// BlockTimeout passes (false, nil) or ctx ends (false, nil).
func (q *Queue) wait(ctx context.Context, f func() bool) (bool, error) {
	deadline := time.NewTimer(BlockTimeout)
	defer deadline.Stop()
	for {
		if err := q.lock(ctx); err != nil {
			if ctx.Err() != nil {
				return false, nil
			}
			return false, err
		}
		ok, ch := f(), q.h.changed
		q.unlock()
		if ok {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, nil
		case <-deadline.C:
			return false, nil
		case <-ch:
		}
	}
}

// get returns id's status, dropping it once past its retention; call with
// the Hub locked.
func (h *Hub) get(id string) *status {
	st := h.status[id]
	if st != nil && !st.expires.IsZero() && time.Now().After(st.expires) {
		delete(h.status, id)
		return nil
	}
	return st
}

// remove deletes the first element equal to raw from *list, reporting
// whether there was one.
func remove(list *[][]byte, raw []byte) bool {
	for i, it := range *list {
		if string(it) == string(raw) {
			*list = slices.Delete(*list, i, i+1)
			return true
		}
	}
	return false
}

// Take implements queue.Tasks: the head of the task list moves to this
// executor's processing list; a message over MaxTaskBytes is removed and
// only its prefix, length and digest are returned.
func (q *Queue) Take(ctx context.Context) (*queue.Delivery, error) {
	var d *queue.Delivery
	_, err := q.wait(ctx, func() bool {
		h := q.h
		if len(h.tasks) == 0 {
			return false
		}
		v := h.tasks[0]
		h.tasks = h.tasks[1:]
		d = &queue.Delivery{Taken: time.Now(), Token: q.token()}
		if len(v) > q.opt.MaxTaskBytes {
			sum := sha1.Sum(v)
			d.Raw, d.Size, d.Digest = slices.Clone(v[:min(len(v), task.PeekBytes)]), len(v), "sha1:"+hex.EncodeToString(sum[:])
		} else {
			d.Raw = v
			h.processing[q.opt.ExecutorID] = append(h.processing[q.opt.ExecutorID], v)
		}
		h.notify()
		return true
	})
	return d, err
}

func (q *Queue) token() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.takes++
	return q.holder + "/" + strconv.FormatUint(q.takes, 10)
}

// Claim implements queue.Tasks, as the Redis claim script does.
func (q *Queue) Claim(ctx context.Context, d *queue.Delivery, id string) (queue.Claim, error) {
	if d.Token == "" {
		return 0, fmt.Errorf("queue: claim %q: the delivery has no token (not taken by Take)", id)
	}
	if err := q.lock(ctx); err != nil {
		return 0, fmt.Errorf("queue: claim %q: %w", id, err)
	}
	defer q.unlock()
	h, now := q.h, time.Now()
	st := h.get(id)
	if st != nil && st.state == string(task.Running) && st.executor == q.opt.ExecutorID && st.token == d.Token {
		if st.cancelled {
			return queue.CancelledWhileQueued, nil
		}
		return queue.Claimed, nil
	}
	cancelled := st != nil && st.state == "cancelled"
	if st == nil {
		if exp, ok := h.killsAhead[id]; ok {
			delete(h.killsAhead, id)
			cancelled = exp.After(now)
		}
	}
	if st != nil && st.state != string(task.Queued) && st.state != "cancelled" {
		return queue.Duplicate, nil
	}
	h.status[id] = &status{state: string(task.Running), executor: q.opt.ExecutorID, token: d.Token, cancelled: cancelled, updated: now}
	h.notify()
	if cancelled {
		return queue.CancelledWhileQueued, nil
	}
	return queue.Claimed, nil
}

// Drop implements queue.Tasks.
func (q *Queue) Drop(ctx context.Context, d *queue.Delivery) error {
	if err := q.lock(ctx); err != nil {
		return fmt.Errorf("queue: drop: %w", err)
	}
	defer q.unlock()
	l := q.h.processing[q.opt.ExecutorID]
	remove(&l, d.Raw)
	q.h.processing[q.opt.ExecutorID] = l
	q.h.notify()
	return nil
}

// Requeue implements queue.Tasks: back to the head.
func (q *Queue) Requeue(ctx context.Context, d *queue.Delivery) error {
	if d.Size > 0 {
		return nil
	}
	if err := q.lock(ctx); err != nil {
		return fmt.Errorf("queue: requeue: %w", err)
	}
	defer q.unlock()
	l := q.h.processing[q.opt.ExecutorID]
	remove(&l, d.Raw)
	q.h.processing[q.opt.ExecutorID] = l
	q.h.tasks = append([][]byte{slices.Clone(d.Raw)}, q.h.tasks...)
	q.h.notify()
	return nil
}

// Taken implements queue.Tasks.
func (q *Queue) Taken(ctx context.Context) ([][]byte, error) {
	if err := q.lock(ctx); err != nil {
		return nil, fmt.Errorf("queue: list taken tasks: %w", err)
	}
	defer q.unlock()
	return slices.Clone(q.h.processing[q.opt.ExecutorID]), nil
}

// Publish implements queue.Publisher: the whole batch under one lock, so
// it applies all or none.
func (q *Queue) Publish(ctx context.Context, msgs []queue.Message) ([]bool, error) {
	if err := q.lock(ctx); err != nil {
		return nil, fmt.Errorf("queue: publish %d messages: %w", len(msgs), err)
	}
	defer q.unlock()
	applied := make([]bool, len(msgs))
	for i, m := range msgs {
		if m.Finish == nil {
			if id, _ := task.PeekID(m.Log); id != "" {
				if st := q.h.get(id); st != nil && (st.executor != q.opt.ExecutorID || st.state != string(task.Running)) {
					continue // fenced, or ended: a line now would follow its done
				}
			}
			q.h.logs = append(q.h.logs, slices.Clone(m.Log))
			applied[i] = true
			continue
		}
		applied[i] = q.finish(m.Finish, &q.h.processing, q.opt.ExecutorID, false) != 0
	}
	if len(msgs) > 0 {
		q.h.notify()
	}
	return applied, nil
}

// finish is the Redis finish script: 1 published, 2 published before by
// this same delivery, 0 not this caller's to end. The delivery is removed
// from lists[key]; mustRemove refuses the finish when it was not there.
// Call with the Hub locked.
func (q *Queue) finish(f *queue.Finish, lists *map[string][][]byte, key string, mustRemove bool) int {
	h := q.h
	st := h.get(f.ID)
	l := (*lists)[key]
	var ok bool
	if f.Claimed {
		if st != nil && st.executor == q.opt.ExecutorID && st.token == f.Token && st.state != string(task.Running) {
			remove(&l, f.Raw)
			(*lists)[key] = l
			return 2
		}
		ok = st != nil && st.state == string(task.Running) && st.executor == q.opt.ExecutorID && st.token == f.Token
	} else {
		ok = st == nil || st.state == string(task.Queued) || st.state == "cancelled"
	}
	removed := remove(&l, f.Raw)
	(*lists)[key] = l
	if !ok || (mustRemove && !removed) {
		return 0
	}
	token := ""
	if st != nil {
		token = st.token
	}
	now := time.Now()
	h.status[f.ID] = &status{state: string(f.State), executor: q.opt.ExecutorID, token: token, updated: now,
		done: slices.Clone(f.Done), expires: now.Add(q.opt.Retention)}
	h.logs = append(h.logs, slices.Clone(f.Done))
	return 1
}

// TakeControl implements queue.Controls.
func (q *Queue) TakeControl(ctx context.Context) (*queue.ControlDelivery, error) {
	var c *queue.ControlDelivery
	_, err := q.wait(ctx, func() bool {
		h := q.h
		if len(h.control) == 0 {
			return false
		}
		v := h.control[0]
		h.control = h.control[1:]
		h.controlTaken[q.opt.ExecutorID] = append(h.controlTaken[q.opt.ExecutorID], v)
		c = &queue.ControlDelivery{Raw: v}
		h.notify()
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("queue: take control: %w", err)
	}
	return c, nil
}

// TakeForwarded implements queue.Controls.
func (q *Queue) TakeForwarded(ctx context.Context) (*queue.ControlDelivery, error) {
	var c *queue.ControlDelivery
	_, err := q.wait(ctx, func() bool {
		h := q.h
		l := h.forwarded[q.opt.ExecutorID]
		if len(l) == 0 {
			return false
		}
		h.forwarded[q.opt.ExecutorID] = l[1:]
		c = &queue.ControlDelivery{Raw: l[0], Forwarded: true}
		h.notify()
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("queue: take forwarded control: %w", err)
	}
	return c, nil
}

// AckControl implements queue.Controls.
func (q *Queue) AckControl(ctx context.Context, c *queue.ControlDelivery) error {
	if c.Forwarded {
		return nil
	}
	if err := q.lock(ctx); err != nil {
		return fmt.Errorf("queue: ack control: %w", err)
	}
	defer q.unlock()
	l := q.h.controlTaken[q.opt.ExecutorID]
	remove(&l, c.Raw)
	q.h.controlTaken[q.opt.ExecutorID] = l
	return nil
}

// RouteKill implements queue.Controls, as the Redis route script does.
func (q *Queue) RouteKill(ctx context.Context, id string) (queue.Route, error) {
	if err := q.lock(ctx); err != nil {
		return queue.Route{}, fmt.Errorf("queue: route kill for %q: %w", id, err)
	}
	defer q.unlock()
	h, now := q.h, time.Now()
	st := h.get(id)
	switch {
	case st != nil && st.state == string(task.Running):
		return queue.Route{Executor: st.executor}, nil
	case st != nil && (st.state == string(task.Queued) || st.state == "cancelled"):
		st.state, st.updated, st.expires = "cancelled", now, now.Add(q.opt.Retention)
		return queue.Route{Queued: true}, nil
	case st == nil:
		for k, exp := range h.killsAhead {
			if !exp.After(now) {
				delete(h.killsAhead, k)
			}
		}
		h.killsAhead[id] = now.Add(q.opt.Retention)
		for len(h.killsAhead) > q.opt.MaxKillsAhead {
			var first string
			var at time.Time
			for k, exp := range h.killsAhead {
				if first == "" || exp.Before(at) {
					first, at = k, exp
				}
			}
			delete(h.killsAhead, first)
		}
		return queue.Route{Queued: true}, nil
	}
	return queue.Route{Ended: task.State(st.state)}, nil
}

// Forward implements queue.Controls.
func (q *Queue) Forward(ctx context.Context, executor string, raw []byte) error {
	if err := q.lock(ctx); err != nil {
		return fmt.Errorf("queue: forward control to %s: %w", executor, err)
	}
	defer q.unlock()
	q.h.forwarded[executor] = append(q.h.forwarded[executor], slices.Clone(raw))
	q.h.notify()
	return nil
}

// RemoveQueued implements queue.Controls.
func (q *Queue) RemoveQueued(ctx context.Context, id string, f func(raw []byte) *queue.Finish) (bool, error) {
	if err := q.lock(ctx); err != nil {
		return false, fmt.Errorf("queue: remove queued %q: %w", id, err)
	}
	var found []byte
	for i, it := range q.h.tasks {
		if i >= q.opt.ScanLimit {
			break
		}
		if got, _ := task.PeekID(it); got == id {
			found = it
			break
		}
	}
	q.unlock()
	if found == nil {
		return false, nil
	}
	fin := f(slices.Clone(found)) // outside the lock, as the Redis transport builds it between two calls
	if err := q.lock(ctx); err != nil {
		return false, fmt.Errorf("queue: remove queued %q: %w", id, err)
	}
	defer q.unlock()
	fin.Claimed, fin.Raw = false, found
	lists := map[string][][]byte{"": q.h.tasks}
	n := q.finish(fin, &lists, "", true)
	q.h.tasks = lists[""]
	q.h.notify()
	return n == 1, nil
}

// Join implements queue.Membership: it waits up to two TTLs for another
// holder of the id to expire.
func (q *Queue) Join(ctx context.Context) error {
	deadline := time.Now().Add(2 * q.opt.TTL)
	for {
		if err := q.lock(ctx); err != nil {
			return fmt.Errorf("queue: register executor %q: %w", q.opt.ExecutorID, err)
		}
		h, now := q.h, time.Now()
		l, ok := h.liveness[q.opt.ExecutorID]
		if !ok || now.After(l.expires) || l.holder == q.holder {
			h.liveness[q.opt.ExecutorID] = liveness{holder: q.holder, expires: now.Add(q.opt.TTL)}
			h.executors[q.opt.ExecutorID] = true
			h.notify()
			q.unlock()
			return nil
		}
		q.unlock()
		if now.After(deadline) {
			return fmt.Errorf("%w: executor id %q is held by %s; give each executor its own executor_id",
				queue.ErrIdentityTaken, q.opt.ExecutorID, l.holder)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(q.opt.TTL / 5):
		}
	}
}

// Heartbeat implements queue.Membership.
func (q *Queue) Heartbeat(ctx context.Context) error {
	if err := q.lock(ctx); err != nil {
		return fmt.Errorf("queue: heartbeat: %w", err)
	}
	defer q.unlock()
	h, now := q.h, time.Now()
	l, ok := h.liveness[q.opt.ExecutorID]
	if ok && now.After(l.expires) {
		ok = false
	}
	if ok && l.holder != q.holder {
		return fmt.Errorf("%w: executor id %q is now held by %s", queue.ErrIdentityTaken, q.opt.ExecutorID, l.holder)
	}
	h.liveness[q.opt.ExecutorID] = liveness{holder: q.holder, expires: now.Add(q.opt.TTL)}
	h.executors[q.opt.ExecutorID] = true
	if !ok {
		return queue.ErrLivenessLost
	}
	return nil
}

// Owned implements queue.Membership.
func (q *Queue) Owned(ctx context.Context, claims map[string]string) (map[string]bool, error) {
	if err := q.lock(ctx); err != nil {
		return nil, fmt.Errorf("queue: check this executor's claims: %w", err)
	}
	defer q.unlock()
	if exp, ok := q.h.recovering[q.opt.ExecutorID]; ok && time.Now().Before(exp) {
		return nil, queue.ErrRecovering
	}
	out := make(map[string]bool, len(claims))
	for id, token := range claims {
		st := q.h.get(id)
		out[id] = st == nil || st.state == string(task.Running) && st.executor == q.opt.ExecutorID && st.token == token
	}
	return out, nil
}

// Leave implements queue.Membership.
func (q *Queue) Leave(ctx context.Context) error {
	if err := q.lock(ctx); err != nil {
		return fmt.Errorf("queue: leave: %w", err)
	}
	defer q.unlock()
	delete(q.h.executors, q.opt.ExecutorID)
	delete(q.h.liveness, q.opt.ExecutorID)
	delete(q.h.forwarded, q.opt.ExecutorID)
	q.h.notify()
	return nil
}

// Executors implements queue.Membership.
func (q *Queue) Executors(ctx context.Context) (map[string]bool, error) {
	if err := q.lock(ctx); err != nil {
		return nil, fmt.Errorf("queue: list executors: %w", err)
	}
	defer q.unlock()
	now := time.Now()
	out := map[string]bool{}
	for id := range q.h.executors {
		l, ok := q.h.liveness[id]
		out[id] = ok && now.Before(l.expires)
	}
	return out, nil
}

// Recover implements queue.Membership. Like the Redis transport it holds a
// recovery lock and handles the dead executor's deliveries one at a time,
// so an executor's own finishes and Owned may interleave with it.
func (q *Queue) Recover(ctx context.Context, dead string) (queue.Recovered, error) {
	var r queue.Recovered
	if err := q.lock(ctx); err != nil {
		return r, fmt.Errorf("queue: recover %s: %w", dead, err)
	}
	h, now := q.h, time.Now()
	if exp, ok := h.recovering[dead]; ok && now.Before(exp) {
		q.unlock()
		return r, nil // another executor is on it
	}
	if l, ok := h.liveness[dead]; dead != q.opt.ExecutorID && ok && now.Before(l.expires) {
		q.unlock()
		return r, nil // it is alive
	}
	h.recovering[dead] = now.Add(time.Minute)
	raws := slices.Clone(h.processing[dead])
	q.unlock()
	defer func() {
		h.mu.Lock()
		delete(h.recovering, dead)
		h.notify()
		h.mu.Unlock()
	}()
	for _, raw := range raws {
		if err := q.lock(ctx); err != nil {
			return r, fmt.Errorf("queue: recover %s: %w", dead, err)
		}
		switch q.recoverOne(dead, raw) {
		case "lost":
			r.Lost++
		case "requeued":
			r.Requeued++
		}
		h.notify()
		q.unlock()
	}
	if err := q.lock(ctx); err != nil {
		return r, fmt.Errorf("queue: recover %s controls: %w", dead, err)
	}
	defer q.unlock()
	taken := h.controlTaken[dead]
	r.Controls = len(taken)
	h.control = append(slices.Clone(taken), h.control...)
	delete(h.controlTaken, dead)
	if dead != q.opt.ExecutorID {
		delete(h.executors, dead)
		delete(h.forwarded, dead)
	}
	h.notify()
	return r, nil
}

// recoverOne is the Redis recover script for one delivery; call with the
// Hub locked.
func (q *Queue) recoverOne(dead string, raw []byte) string {
	h := q.h
	l := h.processing[dead]
	if !remove(&l, raw) {
		return "gone"
	}
	h.processing[dead] = l
	id, typ := task.PeekID(raw)
	var st *status
	if id != "" {
		st = h.get(id)
	}
	now := time.Now()
	if st != nil && st.state == string(task.Running) && st.executor == dead {
		lost := task.LostDone(id, typ, dead, q.opt.ExecutorID, now)
		h.status[id] = &status{state: string(task.Lost), executor: q.opt.ExecutorID, updated: now, done: lost,
			expires: now.Add(q.opt.Retention)}
		h.logs = append(h.logs, lost)
		return "lost"
	}
	if st != nil && st.state != string(task.Queued) && st.state != "cancelled" {
		return "dropped"
	}
	h.tasks = append([][]byte{raw}, h.tasks...)
	return "requeued"
}

// Status implements queue.Statuses.
func (q *Queue) Status(ctx context.Context, id string) (*queue.Status, error) {
	if err := q.lock(ctx); err != nil {
		return nil, fmt.Errorf("queue: status of %q: %w", id, err)
	}
	defer q.unlock()
	st := q.h.get(id)
	if st == nil {
		return nil, nil
	}
	state := task.State(st.state)
	if st.state == "cancelled" {
		state = task.Queued
	}
	return &queue.Status{ID: id, State: state, Executor: st.executor,
		Updated: strconv.FormatInt(st.updated.UnixMilli(), 10), Done: slices.Clone(st.done)}, nil
}
