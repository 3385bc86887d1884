package kafkaqueue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/task"
)

// Kinds of status records (field "k").
const (
	kClaim  = "claim"  // a delivery claims an id
	kCancel = "cancel" // a kill for an id not running yet (a kill ahead)
	kFinish = "finish" // a terminal state and its done
	kLost   = "lost"   // a peer reports a dead executor's task lost
	// kPublished: the done of the record at offset End is in the logs topic.
	kPublished = "published"
	// kRepublish: an executor takes on producing the done of the record at
	// End, whose writer (or earlier taker, Dead) died before it did.
	kRepublish = "republish"
)

// statusRec is one record of the status topic, keyed by task id.
type statusRec struct {
	K     string     `json:"k"`
	ID    string     `json:"id"`
	Exec  string     `json:"executor,omitempty"`
	Token string     `json:"token,omitempty"`
	Type  string     `json:"type,omitempty"`
	State task.State `json:"state,omitempty"`
	// Claimed: a finish of a claimed delivery (else of one killed queued).
	Claimed bool   `json:"claimed,omitempty"`
	Dead    string `json:"dead,omitempty"`
	Done    string `json:"done,omitempty"`
	End     int64  `json:"end,omitempty"` // published, republish: the ending record's offset
	By      string `json:"by,omitempty"`  // the writing process (Queue.holder)
	T       int64  `json:"t"`             // writer's clock, ms
}

// idState is what the fold knows about an id.
type idState struct {
	state     task.State // "" (unknown), "cancelled", running, or terminal
	exec      string
	token     string
	typ       string
	cancelled bool // claimed after a kill ahead: finish as killed, unrun
	updated   int64
	done      []byte
	// endToken is the token of the claimed delivery whose finish ended
	// the id ("" for a lost report or a finish of a queued task).
	endToken string
	// endOffset is the offset of the record that ended the id.
	endOffset int64
	// endBy is the process that wrote the ending record.
	endBy string
	// published: the done is in the logs topic. Until it is, the done's
	// producer is the ending record's executor, or republisher (in process
	// repBy) once one has taken it on after that executor died.
	published   bool
	republisher string
	repBy       string
	// claimedAt is the winning claim's time (its writer's clock, ms), kept
	// after the end: a task's lines come after it, so a reader of its
	// logs starts there instead of at the start of the logs topic.
	claimedAt int64
}

const stateCancelled task.State = "cancelled"

// heartbeat records (topic executors), keyed by executor id.
type beatRec struct {
	K      string `json:"k"` // "beat", "left" or "expired"
	Exec   string `json:"executor"`
	Holder string `json:"holder"`
	T      int64  `json:"t"`
}

type execState struct {
	holder string
	last   time.Time // when its newest heartbeat was written, as this reader judges it
	left   bool
}

// view folds the status and executors topics, read whole by a client in
// no group, into the state every executor agrees on.
type view struct {
	cl        *kgo.Client
	adm       *kadm.Client
	topics    Topics
	retention time.Duration

	mu      sync.Mutex
	ids     map[string]*idState
	execs   map[string]*execState
	next    map[string]map[int32]int64 // next offset to apply, per topic and partition
	changed chan struct{}
	applied int
}

func startView(ctx context.Context, wg *sync.WaitGroup, base []kgo.Opt, t Topics, retention time.Duration) (*view, error) {
	cl, err := kgo.NewClient(append(base,
		kgo.ConsumeTopics(t.Status, t.Executors),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(250*time.Millisecond),
	)...)
	if err != nil {
		return nil, err
	}
	v := &view{cl: cl, adm: kadm.NewClient(cl), topics: t, retention: retention,
		ids: map[string]*idState{}, execs: map[string]*execState{},
		next: map[string]map[int32]int64{}, changed: make(chan struct{})}
	wg.Add(1)
	go func() { defer wg.Done(); v.run(ctx) }()
	return v, nil
}

func (v *view) run(ctx context.Context) {
	for ctx.Err() == nil {
		fs := v.cl.PollFetches(ctx)
		if fs.IsClientClosed() {
			return
		}
		v.mu.Lock()
		fs.EachRecord(func(r *kgo.Record) {
			switch r.Topic {
			case v.topics.Status:
				v.applyStatus(r)
			case v.topics.Executors:
				v.applyBeat(r)
			}
			m := v.next[r.Topic]
			if m == nil {
				m = map[int32]int64{}
				v.next[r.Topic] = m
			}
			m[r.Partition] = r.Offset + 1
		})
		if v.applied > 10000 {
			v.prune()
		}
		close(v.changed)
		v.changed = make(chan struct{})
		v.mu.Unlock()
	}
}

// applyStatus is the fold. Its rules are the Redis scripts' (scripts.go
// there), decided here by the order of the partition instead of by one
// atomic step.
func (v *view) applyStatus(r *kgo.Record) {
	var s statusRec
	if json.Unmarshal(r.Value, &s) != nil || s.ID == "" {
		return // not ours: nobody but executors writes here
	}
	v.applied++
	st := v.ids[s.ID]
	switch s.K {
	case kCancel:
		if st == nil {
			v.ids[s.ID] = &idState{state: stateCancelled, updated: s.T}
		}
	case kClaim:
		switch {
		case st == nil:
			v.ids[s.ID] = &idState{state: task.Running, exec: s.Exec, token: s.Token, typ: s.Type, updated: s.T, claimedAt: s.T}
		case st.state == stateCancelled:
			// A kill ahead counts for status_retention after it was sent.
			cancelled := s.T-st.updated < v.retention.Milliseconds()
			*st = idState{state: task.Running, exec: s.Exec, token: s.Token, typ: s.Type, updated: s.T, cancelled: cancelled, claimedAt: s.T}
		}
		// Otherwise a duplicate: the id is running or ended already.
	case kFinish:
		var ok bool
		if s.Claimed {
			ok = st != nil && st.state == task.Running && st.exec == s.Exec && st.token == s.Token
		} else {
			ok = st == nil || st.state == stateCancelled
		}
		if !ok {
			return
		}
		end := &idState{state: s.State, exec: s.Exec, updated: s.T, done: []byte(s.Done), endOffset: r.Offset, endBy: s.By}
		if s.Claimed {
			end.token, end.endToken, end.typ, end.claimedAt = s.Token, s.Token, st.typ, st.claimedAt
		}
		v.ids[s.ID] = end
	case kLost:
		if st == nil || st.state != task.Running || st.exec != s.Dead || st.token != s.Token {
			return
		}
		v.ids[s.ID] = &idState{state: task.Lost, exec: s.Exec, typ: st.typ, updated: s.T, done: []byte(s.Done), endOffset: r.Offset, endBy: s.By, claimedAt: st.claimedAt}
	case kPublished:
		if ended(st) && st.endOffset == s.End {
			st.published = true
		}
	case kRepublish:
		// The first taker wins; a later one only replaces a taker it names
		// (one that died before it published).
		if ended(st) && st.endOffset == s.End && !st.published && st.republisher == s.Dead {
			st.republisher, st.repBy = s.Exec, s.By
		}
	}
}

// ended reports whether st is a terminal state with a done.
func ended(st *idState) bool {
	return st != nil && st.state != task.Running && st.state != stateCancelled && st.state != "" && len(st.done) > 0
}

func (v *view) applyBeat(r *kgo.Record) {
	var b beatRec
	if json.Unmarshal(r.Value, &b) != nil || b.Exec == "" {
		return
	}
	// The writer's clock, but never later than this reader's: a fast clock
	// elsewhere must not keep a dead executor alive.
	at := time.UnixMilli(b.T)
	if now := time.Now(); at.After(now) {
		at = now
	}
	if b.K == "expired" {
		// Declared dead (ExpireExecutor): its liveness ends now, whoever holds it.
		if e := v.execs[b.Exec]; e != nil {
			e.last = time.Time{}
		}
		return
	}
	v.execs[b.Exec] = &execState{holder: b.Holder, last: at, left: b.K == "left"}
}

// prune forgets ended ids and kills ahead past the retention.
func (v *view) prune() {
	v.applied = 0
	cut := time.Now().Add(-v.retention).UnixMilli()
	for id, st := range v.ids {
		if st.state != task.Running && st.updated < cut {
			delete(v.ids, id)
		}
	}
}

// waitFor returns once the record at offset in topic/partition is applied.
func (v *view) waitFor(ctx context.Context, topic string, partition int32, offset int64) error {
	for {
		v.mu.Lock()
		n, ch := v.next[topic][partition], v.changed
		v.mu.Unlock()
		if n > offset {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// catchUp returns once everything written to topics before the call is
// applied.
func (v *view) catchUp(ctx context.Context, topics ...string) error {
	ends, err := v.adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("queue: kafka: read the end of %v: %w", topics, err)
	}
	var errs []error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, o.Err)
			return
		}
		if o.Offset > 0 {
			if err := v.waitFor(ctx, o.Topic, o.Partition, o.Offset-1); err != nil {
				errs = append(errs, err)
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("queue: kafka: read %v: %w", topics, err)
	}
	return nil
}

// get returns a copy of id's state (nil for none).
func (v *view) get(id string) *idState {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := v.ids[id]
	if st == nil {
		return nil
	}
	c := *st
	return &c
}

// running lists the ids running on executor, with their states.
func (v *view) running(executor string) map[string]idState {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := map[string]idState{}
	for id, st := range v.ids {
		if st.state == task.Running && st.exec == executor {
			out[id] = *st
		}
	}
	return out
}

// unpublished lists the ended ids whose done executor was to produce
// and the fold has no published record of.
func (v *view) unpublished(executor string) map[string]idState {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := map[string]idState{}
	for id, st := range v.ids {
		if !ended(st) || st.published {
			continue
		}
		if st.republisher == executor || st.republisher == "" && st.exec == executor {
			out[id] = *st
		}
	}
	return out
}

// writeStatus produces s keyed by its id and returns once the fold has
// applied it, with the id's state at that point.
func (q *Queue) writeStatus(ctx context.Context, s statusRec) (*idState, int64, error) {
	s.T, s.By = nowMilli(), q.holder
	b, err := json.Marshal(s)
	if err != nil {
		return nil, 0, err
	}
	r, err := q.produce(ctx, &kgo.Record{Topic: q.topics.Status, Key: []byte(s.ID), Value: b})
	if err != nil {
		return nil, 0, fmt.Errorf("queue: kafka: write %s of %q: %w", s.K, s.ID, err)
	}
	if err := q.view.waitFor(ctx, r.Topic, r.Partition, r.Offset); err != nil {
		return nil, 0, fmt.Errorf("queue: kafka: read back %s of %q: %w", s.K, s.ID, err)
	}
	return q.view.get(s.ID), r.Offset, nil
}

// finishedBy reports whether st ended by the finish f describes (this very
// delivery's, possibly an earlier attempt of the same publish).
func finishedBy(st *idState, offset int64, exec string, claimed bool, token string, done []byte) bool {
	if st == nil || st.state == task.Running || st.state == stateCancelled || st.state == "" {
		return false
	}
	if st.endOffset == offset {
		return true
	}
	if claimed {
		return st.endToken == token && st.exec == exec
	}
	return st.endToken == "" && st.exec == exec && bytes.Equal(st.done, done)
}
