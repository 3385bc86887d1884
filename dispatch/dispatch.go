// Package dispatch is the fleet's dispatcher: replicas elect one leader in
// etcd, and the leader moves each task from the head of the shared list
// and the tube lists to the assigned list of one dispatched executor,
// chosen among the registered ones that serve its tube (the less loaded of
// two picked at random). Its fencing token is its election key's create
// revision, larger for every new leader; each of its moves in the queue is
// checked against the highest token seen (queue.ErrFenced), so a leader
// that was paused past its lease cannot move a task after its successor
// started. When an executor's registration ends, or it is drained, the
// leader gives its assigned tasks back to the head of the shared list.
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/registry"
)

// Queue is what the dispatcher needs of the transport
// (queue/redisqueue implements it).
type Queue interface {
	// TubeKey is tube's task list ("" is the shared, untubed list).
	TubeKey(tube string) string
	// AssignedKey is a dispatched executor's own list.
	AssignedKey(executor string) string
	// ClaimEpoch makes token the epoch; queue.ErrFenced if a newer one
	// was seen.
	ClaimEpoch(ctx context.Context, token int64) error
	// Peek describes the first n tasks of list, in order.
	Peek(ctx context.Context, list string, n int) ([]queue.Head, error)
	// MoveMany makes each move of ops in turn, from src, fenced by
	// token, in one round trip: queue.Moved, Empty or Changed for each,
	// or queue.ErrFenced and nothing moved.
	MoveMany(ctx context.Context, token int64, src string, ops []queue.MoveOp) ([]string, error)
	// NoteWaiting records why tasks of list wait, fenced by token.
	NoteWaiting(ctx context.Context, token int64, list string, notes []queue.Note) (int, error)
	// ReturnAssigned gives an executor's assigned tasks back to the head
	// of the shared list, in order, fenced by token.
	ReturnAssigned(ctx context.Context, token int64, executor string) (int, error)
	// PeekCounting is Peek, and how many tasks wait in each executor's
	// assigned list, in one round trip.
	PeekCounting(ctx context.Context, list string, n int, executors []string) ([]queue.Head, map[string]int, error)
	AssignedExecutors(ctx context.Context) ([]string, error)
	// WaitForTask blocks until list holds a task (true) or a timeout of
	// its own passes (false), changing nothing.
	WaitForTask(ctx context.Context, list string) (bool, error)
}

// Options configure a Dispatcher.
type Options struct {
	Client *clientv3.Client
	// ExecutorsPrefix and CordonsPrefix are the registry's key prefixes
	// (etcdreg.Registry's); Prefix is the registry's own, under which the
	// election lives (<Prefix>dispatcher/).
	Prefix, ExecutorsPrefix, CordonsPrefix string
	Queue                                  Queue
	// TTL is the leader's lease (whole seconds; default 5 s): a leader
	// that dies is replaced within about that long.
	TTL time.Duration
	// Name is this replica's, stored in its election key.
	Name string
	// Poll is how long the leader waits before looking at its lists
	// again when it moved nothing (default 10 ms); a push to an empty
	// shared list wakes it at once.
	Poll   time.Duration
	Logger hclog.Logger
}

// Dispatcher is one replica.
type Dispatcher struct {
	opt   Options
	token atomic.Int64 // the token while leading, else 0
	moves atomic.Int64
	// noted is, by list, the waiting reasons last written there and
	// when: the leader's alone (one goroutine), reset at each term.
	noted map[string]notedAt
}

type notedAt struct {
	notes string
	at    time.Time
}

// New makes a replica; Run makes it take part.
func New(opt Options) *Dispatcher {
	if opt.TTL <= 0 {
		opt.TTL = 5 * time.Second
	}
	if opt.Poll <= 0 {
		opt.Poll = 10 * time.Millisecond
	}
	if opt.Logger == nil {
		opt.Logger = hclog.NewNullLogger()
	}
	return &Dispatcher{opt: opt}
}

// Token is the fencing token while this replica leads, else 0.
func (d *Dispatcher) Token() int64 { return d.token.Load() }

// Moves counts the tasks this replica moved to an executor.
func (d *Dispatcher) Moves() int64 { return d.moves.Load() }

// Run campaigns, leads while elected, and campaigns again when it loses
// the lease, until ctx ends; it then resigns, so a successor leads at once.
func (d *Dispatcher) Run(ctx context.Context) error {
	log := d.opt.Logger
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := d.term(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			log.Warn("dispatcher: not leading", "error", err, "retry_in", wait)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			wait = min(2*wait, d.opt.TTL)
			continue
		}
		wait = 100 * time.Millisecond
	}
	return nil
}

// term is one session: campaign, then lead until the session or ctx ends.
func (d *Dispatcher) term(ctx context.Context) error {
	// The lease is kept alive by a context of its own, not ctx: when ctx
	// ends the replica resigns and revokes it (sess.Close), so that its
	// successor leads at once. Had the session ended with ctx, it would
	// look lost and be left to expire, a whole TTL without a leader.
	// The TTL also bounds how long Close tries to revoke it.
	ttl := int(max(d.opt.TTL/time.Second, 1))
	lease, err := d.opt.Client.Grant(ctx, int64(ttl))
	if err != nil {
		return fmt.Errorf("open a lease: %w", err)
	}
	sess, err := concurrency.NewSession(d.opt.Client, concurrency.WithLease(lease.ID), concurrency.WithTTL(ttl),
		concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return fmt.Errorf("open a lease: %w", err)
	}
	defer sess.Close()
	el := concurrency.NewElection(sess, d.opt.Prefix+"dispatcher")
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-sess.Done():
		case <-cctx.Done():
		}
		cancel()
	}()
	err = el.Campaign(cctx, d.opt.Name)
	if err != nil {
		cancel()
		return fmt.Errorf("campaign: %w", err)
	}
	token := el.Rev()
	err = d.lead(cctx, token)
	d.token.Store(0)
	cancel()
	select {
	case <-sess.Done():
		d.opt.Logger.Warn("dispatcher: lost the leader's lease; no longer leading", "token", token)
	default:
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = el.Resign(rctx)
		rcancel()
		d.opt.Logger.Info("dispatcher: no longer leading", "token", token)
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// fleet is the leader's view of the registry.
type fleet struct {
	members map[string]registry.Member
	cordons map[string]registry.Cordon
}

func (d *Dispatcher) load(ctx context.Context) (*fleet, int64, error) {
	f := &fleet{members: map[string]registry.Member{}, cordons: map[string]registry.Cordon{}}
	resp, err := d.opt.Client.Get(ctx, d.opt.Prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("read the registry: %w", err)
	}
	for _, kv := range resp.Kvs {
		f.apply(d, kv.Key, kv.Value, false)
	}
	return f, resp.Header.Revision, nil
}

// apply records one key's value (or its deletion) and says which executor
// now needs its assigned list given back ("" for none).
func (f *fleet) apply(d *Dispatcher, key, val []byte, deleted bool) string {
	k := string(key)
	if id, ok := strings.CutPrefix(k, d.opt.ExecutorsPrefix); ok {
		if deleted {
			delete(f.members, id)
			return id
		}
		var m registry.Member
		if json.Unmarshal(val, &m) == nil {
			f.members[id] = m
		}
		return ""
	}
	if id, ok := strings.CutPrefix(k, d.opt.CordonsPrefix); ok {
		if deleted {
			delete(f.cordons, id)
			return ""
		}
		var c registry.Cordon
		_ = json.Unmarshal(val, &c)
		f.cordons[id] = c
		if c.Drain {
			return id
		}
	}
	return ""
}

// eligible: registered (its lease is alive), dispatched, not cordoned.
func (f *fleet) eligible() []registry.Member {
	var out []registry.Member
	for id, m := range f.members {
		if _, cordoned := f.cordons[id]; m.Dispatched && !cordoned {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b registry.Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// sweepEvery is how often the leader gives back the assigned lists of
// executors that are no longer registered (or are drained) whatever it
// heard: one that died while nobody led.
const sweepEvery = 5 * time.Second

func (d *Dispatcher) lead(ctx context.Context, token int64) error {
	q := d.opt.Queue
	// First of all, fence every older leader out.
	if err := q.ClaimEpoch(ctx, token); err != nil {
		return err
	}
	// Only now: "leading" in the log means older leaders are fenced.
	d.opt.Logger.Info("dispatcher: leading", "token", token, "name", d.opt.Name)
	d.token.Store(token)
	d.noted = map[string]notedAt{}
	for ctx.Err() == nil {
		f, rev, err := d.load(ctx)
		if err != nil {
			return err
		}
		wctx, wcancel := context.WithCancel(ctx)
		events := d.opt.Client.Watch(wctx, d.opt.Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		err = d.serve(wctx, token, f, events)
		wcancel()
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

// serve dispatches until ctx ends, the watch breaks (nil: load again) or
// the queue fails or fences this leader (the error).
func (d *Dispatcher) serve(ctx context.Context, token int64, f *fleet, events clientv3.WatchChan) error {
	q := d.opt.Queue
	giveBack := func(id string) error {
		n, err := q.ReturnAssigned(ctx, token, id)
		if err != nil {
			return err
		}
		if n > 0 {
			d.opt.Logger.Info("dispatcher: gave an executor's assigned tasks back to the shared list", "executor", id, "tasks", n)
		}
		return nil
	}
	sweep := func() error {
		ids, err := q.AssignedExecutors(ctx)
		if err != nil {
			return err
		}
		for _, id := range ids {
			_, registered := f.members[id]
			if c, cordoned := f.cordons[id]; !registered || cordoned && c.Drain {
				if err := giveBack(id); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := sweep(); err != nil {
		return err
	}
	// While a list is empty, a waiter blocks on it, so that a task pushed
	// there is placed at once instead of at the next poll: the shared
	// list first, then the tubes' lists, at most MaxWaiters in all (each
	// holds a connection while it waits; the rest are polled). A waiter
	// is armed after each pass that found its list empty, and not
	// otherwise: blocking on a list that holds tasks nobody can take
	// would return at once, again and again.
	wake := make(chan struct{}, 1)
	waiters := map[string]chan struct{}{} // by list: its arm
	armEmpty := func(empty []string) {
		for _, list := range empty {
			arm, ok := waiters[list]
			if !ok {
				if len(waiters) >= MaxWaiters {
					continue
				}
				arm = make(chan struct{}, 1)
				waiters[list] = arm
				go d.wait(ctx, list, arm, wake)
			}
			select {
			case arm <- struct{}{}:
			default:
			}
		}
	}
	// apply takes in a batch of registry events; false: the watch broke.
	apply := func(resp clientv3.WatchResponse, ok bool) (bool, error) {
		if !ok || resp.Err() != nil {
			return false, nil // load again
		}
		for _, ev := range resp.Events {
			if id := f.apply(d, ev.Kv.Key, ev.Kv.Value, ev.Type == clientv3.EventTypeDelete); id != "" {
				if err := giveBack(id); err != nil {
					return false, err
				}
			}
		}
		return true, nil
	}
	lastSweep := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		// Registry events already here go first: a cordon that arrived
		// with the push that woke this pass must hold for its tasks.
		for drained := false; !drained; {
			select {
			case resp, ok := <-events:
				if live, err := apply(resp, ok); !live {
					return err
				}
			default:
				drained = true
			}
		}
		moved, empty, err := d.pass(ctx, token, f)
		if err != nil {
			return err
		}
		armEmpty(empty)
		if time.Since(lastSweep) > sweepEvery {
			if err := sweep(); err != nil {
				return err
			}
			lastSweep = time.Now()
		}
		wait := d.opt.Poll
		if moved {
			wait = 0
		}
		timer.Reset(wait)
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
				waiting = false
			case <-wake:
				waiting = false
			case resp, ok := <-events:
				if live, err := apply(resp, ok); !live {
					return err
				}
			}
		}
	}
}

// passBudget bounds the tasks one pass looks at, so that registry
// events are heard between passes under load.
const passBudget = 1000

// window is how far into a list the leader looks for a task it can
// place: a task that no executor can take now (its constraints, or its
// executors cordoned or full) does not hold up the tasks behind it,
// which keep their order, unless a whole window of such tasks is ahead.
const window = 32

// renote is how often the leader writes the same waiting reasons to a
// list again: the tasks at those places may have changed meanwhile.
const renote = time.Second

// MaxWaiters bounds the lists the leader blocks on while they are empty;
// each holds one of its Redis client's connections meanwhile.
const MaxWaiters = 8

// wait blocks on list each time it is armed, and wakes the leader when a
// task arrives there.
func (d *Dispatcher) wait(ctx context.Context, list string, arm <-chan struct{}, wake chan<- struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-arm:
		}
		if got, _ := d.opt.Queue.WaitForTask(ctx, list); got {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	}
}

// pass moves what it can: moved if it moved a task to an executor; empty
// names the lists that held nothing when it looked, the shared list
// first. Of the tasks it cannot place, it writes why in their status
// (waiting).
func (d *Dispatcher) pass(ctx context.Context, token int64, f *fleet) (moved bool, empty []string, err error) {
	q := d.opt.Queue
	el := f.eligible()
	ids := make([]string, len(el))
	for i, m := range el {
		ids[i] = m.ID
	}
	// Every list some registered executor serves, so that the reason
	// is written where only cordoned or not dispatched ones do.
	lists := map[string]bool{"": true}
	for _, m := range f.members {
		for _, t := range m.Tubes {
			lists[t] = true
		}
	}
	// The assigned counts come with the first list's heads: a task pushed
	// to an idle leader waits for two round trips before its move, not
	// three.
	var assigned map[string]int
	budget := passBudget
	for _, tube := range slices.Sorted(maps.Keys(lists)) {
		src := q.TubeKey(tube)
		var heads []queue.Head
		if assigned == nil {
			heads, assigned, err = q.PeekCounting(ctx, src, window, ids)
		} else {
			heads, err = q.Peek(ctx, src, window)
		}
		if err != nil {
			return moved, nil, err
		}
		if len(heads) == 0 {
			empty = append(empty, src)
		}
		var notes []queue.Note
		why := map[string]string{} // by placement key
		for looks := 0; len(heads) > 0 && budget > 0 && ctx.Err() == nil; looks++ {
			// Every head is planned as if the moves before it succeed,
			// and one script makes the moves in turn: a round trip per
			// window, not per task.
			var ops []queue.MoveOp
			var chosen []string // by op: the executor, or "" for a tube's list
			notes = nil
			i := 0 // h's index once the planned moves before it are made
			for _, h := range heads {
				if budget == 0 {
					break
				}
				budget--
				if m := pick(el, h, assigned); m != nil {
					ops = append(ops, queue.MoveOp{Index: i, Dst: q.AssignedKey(m.ID), Expect: h.Key})
					chosen = append(chosen, m.ID)
					assigned[m.ID]++
					continue
				}
				reason, ok := why[h.Key]
				if !ok {
					reason = f.why(h)
					why[h.Key] = reason
				}
				if tube != "" || h.Tube == "" {
					notes = append(notes, queue.Note{Index: i, Key: h.Key, Text: reason})
					i++
					continue
				}
				// A tubed task in the shared list goes on to its tube's
				// list, which is where it waits (as an executor's take
				// does with it).
				ops = append(ops, queue.MoveOp{Index: i, Dst: q.TubeKey(h.Tube), Expect: h.Key, Note: reason})
				chosen = append(chosen, "")
			}
			if len(ops) == 0 {
				break
			}
			res, err := q.MoveMany(ctx, token, src, ops)
			if err != nil {
				return moved, nil, err
			}
			// A move whose task is no longer the one planned for moves
			// nothing, and the moves after it may then find another task
			// at their index: each moves only a task with the placement
			// key it was planned for, so it goes where that key may go.
			// The notes are written under the same check.
			all := true
			for k, r := range res {
				if r == queue.Moved {
					if chosen[k] != "" {
						moved = true
						d.moves.Add(1)
					}
					continue
				}
				all = false
				if chosen[k] != "" {
					assigned[chosen[k]]--
				}
			}
			// The list changed under us: look again, a few times a pass.
			if all || looks >= 2 {
				break
			}
			if heads, err = q.Peek(ctx, src, window); err != nil {
				return moved, nil, err
			}
		}
		if err := d.note(ctx, token, src, notes); err != nil {
			return moved, nil, err
		}
	}
	return moved, empty, nil
}

// note writes the waiting reasons of one list's tasks, unless the same
// were written there within renote.
func (d *Dispatcher) note(ctx context.Context, token int64, list string, notes []queue.Note) error {
	var b strings.Builder
	for _, n := range notes {
		fmt.Fprintf(&b, "%d\x00%s\x00%s\x00", n.Index, n.Key, n.Text)
	}
	if prev, ok := d.noted[list]; ok && prev.notes == b.String() && time.Since(prev.at) < renote {
		return nil
	}
	if _, err := d.opt.Queue.NoteWaiting(ctx, token, list, notes); err != nil {
		return err
	}
	d.noted[list] = notedAt{notes: b.String(), at: time.Now()}
	return nil
}

// why says why no executor can take a task placed as h now, for its
// status: the first of no executor serving its tube, none of those with
// its labels, none of those dispatched, all of those cordoned, all of
// those full. The words depend on the fleet only, not on counts that
// change with every task, so that they are not rewritten all the time.
func (f *fleet) why(h queue.Head) string {
	what := "the untubed list"
	if h.Tube != "" {
		what = fmt.Sprintf("tube %q", h.Tube)
	}
	var serving, matching, dispatched, open []string
	for _, id := range slices.Sorted(maps.Keys(f.members)) {
		m := f.members[id]
		if !slices.Contains(m.Tubes, h.Tube) {
			continue
		}
		serving = append(serving, id)
		if !matches(m.Labels, h.Constraints) {
			continue
		}
		matching = append(matching, id)
		if !m.Dispatched {
			continue
		}
		dispatched = append(dispatched, id)
		if _, cordoned := f.cordons[id]; !cordoned {
			open = append(open, id)
		}
	}
	switch {
	case len(serving) == 0:
		return fmt.Sprintf("no registered executor serves %s", what)
	case len(matching) == 0:
		return fmt.Sprintf("no registered executor serving %s has the labels it asks for (%s); serving it: %s", what, labelsText(h.Constraints), idList(serving))
	case len(dispatched) == 0:
		return fmt.Sprintf("the executors that could take it are not dispatched (they take from the lists themselves): %s", idList(matching))
	case len(open) == 0:
		return fmt.Sprintf("every executor that could take it is cordoned: %s", idList(dispatched))
	}
	return fmt.Sprintf("every executor that could take it has as many tasks assigned as it has slots: %s", idList(open))
}

func labelsText(c map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, k+"="+c[k])
	}
	return strings.Join(parts, ", ")
}

// idList names at most five executors, so that a reason stays short.
func idList(ids []string) string {
	if len(ids) > 5 {
		return strings.Join(ids[:5], ", ") + fmt.Sprintf(" and %d more", len(ids)-5)
	}
	return strings.Join(ids, ", ")
}

// matches: labels has every constraint, with its value.
func matches(labels, constraints map[string]string) bool {
	for k, v := range constraints {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// pick returns the less loaded of two eligible executors chosen at random
// among those that serve h's tube, have the labels its constraints ask
// for and have room (fewer assigned tasks waiting than slots), or nil.
// Load is (running + assigned) / slots.
func pick(el []registry.Member, h queue.Head, assigned map[string]int) *registry.Member {
	var c []*registry.Member
	for i := range el {
		m := &el[i]
		if slices.Contains(m.Tubes, h.Tube) && matches(m.Labels, h.Constraints) && assigned[m.ID] < slots(m) {
			c = append(c, m)
		}
	}
	switch len(c) {
	case 0:
		return nil
	case 1:
		return c[0]
	}
	i := rand.IntN(len(c))
	j := rand.IntN(len(c) - 1)
	if j >= i {
		j++
	}
	a, b := c[i], c[j]
	if load(b, assigned) < load(a, assigned) {
		return b
	}
	return a
}

func slots(m *registry.Member) int { return max(m.Slots, 1) }

func load(m *registry.Member, assigned map[string]int) float64 {
	return float64(m.Running+assigned[m.ID]) / float64(slots(m))
}
