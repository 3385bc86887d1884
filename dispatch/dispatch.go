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
	// PeekTube is the tube the head of list names, false if it is empty.
	PeekTube(ctx context.Context, list string) (string, bool, error)
	// MoveHead moves the head of src to the end of dst, fenced by token,
	// if its tube is still expect ("*": any): queue.Moved, Empty or
	// Changed, or queue.ErrFenced.
	MoveHead(ctx context.Context, token int64, src, dst, expect string) (string, error)
	// ReturnAssigned gives an executor's assigned tasks back to the head
	// of the shared list, in order, fenced by token.
	ReturnAssigned(ctx context.Context, token int64, executor string) (int, error)
	AssignedLens(ctx context.Context, executors []string) (map[string]int, error)
	AssignedExecutors(ctx context.Context) ([]string, error)
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
	// Poll is how long the leader waits before looking at empty lists
	// again (default 10 ms).
	Poll   time.Duration
	Logger hclog.Logger
}

// Dispatcher is one replica.
type Dispatcher struct {
	opt   Options
	token atomic.Int64 // the token while leading, else 0
	moves atomic.Int64
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
	sess, err := concurrency.NewSession(d.opt.Client, concurrency.WithTTL(int(max(d.opt.TTL/time.Second, 1))), concurrency.WithContext(ctx))
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
	d.opt.Logger.Info("dispatcher: leading", "token", token, "name", d.opt.Name)
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
	d.token.Store(token)
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
	lastSweep := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		moved, err := d.pass(ctx, token, f)
		if err != nil {
			return err
		}
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
			case resp, ok := <-events:
				if !ok || resp.Err() != nil {
					return nil // load again
				}
				for _, ev := range resp.Events {
					if id := f.apply(d, ev.Kv.Key, ev.Kv.Value, ev.Type == clientv3.EventTypeDelete); id != "" {
						if err := giveBack(id); err != nil {
							return err
						}
					}
				}
			}
		}
	}
}

// passBudget bounds the moves of one pass, so that registry events are
// heard between passes under load.
const passBudget = 1000

// pass moves what it can: true if it moved a task.
func (d *Dispatcher) pass(ctx context.Context, token int64, f *fleet) (bool, error) {
	q := d.opt.Queue
	el := f.eligible()
	if len(el) == 0 {
		return false, nil
	}
	ids := make([]string, len(el))
	tubes := map[string]bool{"": true}
	for i, m := range el {
		ids[i] = m.ID
		for _, t := range m.Tubes {
			tubes[t] = true
		}
	}
	assigned, err := q.AssignedLens(ctx, ids)
	if err != nil {
		return false, err
	}
	moved := false
	budget := passBudget
	for _, tube := range slices.Sorted(func(yield func(string) bool) {
		for t := range tubes {
			if !yield(t) {
				return
			}
		}
	}) {
		src := q.TubeKey(tube)
		for budget > 0 && ctx.Err() == nil {
			budget--
			want, expect := tube, "*"
			if tube == "" {
				// The shared list holds tasks of any tube (an old client,
				// a task given back): its head says which.
				t, ok, err := q.PeekTube(ctx, src)
				if err != nil {
					return moved, err
				}
				if !ok {
					break
				}
				want, expect = t, t
			}
			dst, chosen := "", ""
			if m := pick(el, want, assigned); m != nil {
				dst, chosen = q.AssignedKey(m.ID), m.ID
			} else if tube == "" && want != "" {
				// Nobody can take it now: to its tube's list, which is
				// where it waits, so that it does not hold up the rest.
				dst = q.TubeKey(want)
			} else {
				break // this list waits for a free executor
			}
			res, err := q.MoveHead(ctx, token, src, dst, expect)
			if err != nil {
				return moved, err
			}
			switch res {
			case queue.Moved:
				if chosen != "" {
					assigned[chosen]++
					moved = true
					d.moves.Add(1)
				}
			case queue.Changed:
				continue
			default:
				return moved, nil // emptied under us: next pass
			}
		}
	}
	return moved, nil
}

// pick returns the less loaded of two eligible executors chosen at random
// among those that serve tube and have room (fewer assigned tasks waiting
// than slots), or nil. Load is (running + assigned) / slots.
func pick(el []registry.Member, tube string, assigned map[string]int) *registry.Member {
	var c []*registry.Member
	for i := range el {
		m := &el[i]
		if slices.Contains(m.Tubes, tube) && assigned[m.ID] < slots(m) {
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
