package kafkaqueue

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
)

// BlockTimeout is how long Take waits for a task before returning empty.
const BlockTimeout = time.Second

// pending tracks the task records this executor polled and has not yet
// resolved (claimed, dropped, put back or finished unclaimed). A
// partition's offset is committed up to its first unresolved record only,
// so that no record is marked consumed before its claim is durable, and no
// offset stays uncommitted once its task runs.
type pending struct {
	mu      sync.Mutex
	parts   map[tp][]*entry
	byToken map[string]*entry
	// held is what Taken lists, as in the Redis processing list: every
	// delivery from its take until it is dropped, put back or finished
	// (oversized ones never), by token.
	held map[string][]byte
}

type tp struct {
	topic     string
	partition int32
}

type entry struct {
	rec      *kgo.Record
	raw      []byte
	token    string
	resolved bool
	gone     bool // its partition was revoked: nothing to commit
}

func (p *pending) init() {
	p.parts = map[tp][]*entry{}
	p.byToken = map[string]*entry{}
	p.held = map[string][]byte{}
}

func (p *pending) hold(token string, raw []byte) {
	p.mu.Lock()
	p.held[token] = raw
	p.mu.Unlock()
}

// release ends the holding of the delivery with token or, without one, of
// one holding raw.
func (p *pending) release(token string, raw []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.held[token]; ok || token != "" {
		delete(p.held, token)
		return
	}
	for t, r := range p.held {
		if string(r) == string(raw) {
			delete(p.held, t)
			return
		}
	}
}

func (p *pending) add(e *entry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := tp{e.rec.Topic, e.rec.Partition}
	p.parts[k] = append(p.parts[k], e)
	p.byToken[e.token] = e
}

// resolve marks the delivery with token (or, without one, the first
// unresolved one holding raw) resolved and returns the record to commit up
// to, if the partition's resolved prefix grew.
func (p *pending) resolve(token string, raw []byte) *kgo.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.byToken[token]
	if e == nil && token == "" {
		for _, es := range p.parts {
			for _, c := range es {
				if !c.resolved && string(c.raw) == string(raw) {
					e = c
					break
				}
			}
			if e != nil {
				break
			}
		}
	}
	if e == nil || e.resolved {
		return nil
	}
	e.resolved = true
	delete(p.byToken, e.token)
	if e.gone {
		return nil
	}
	k := tp{e.rec.Topic, e.rec.Partition}
	es := p.parts[k]
	var last *kgo.Record
	for len(es) > 0 && es[0].resolved {
		last = es[0].rec
		es = es[1:]
	}
	if len(es) == 0 {
		delete(p.parts, k)
	} else {
		p.parts[k] = es
	}
	return last
}

func (p *pending) revoke(topic string, partitions []int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range partitions {
		k := tp{topic, n}
		for _, e := range p.parts[k] {
			e.gone = true
		}
		delete(p.parts, k)
	}
}

// raws lists the held deliveries in the order they were taken.
func (p *pending) raws() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	type tr struct {
		n   uint64
		raw []byte
	}
	var l []tr
	for t, r := range p.held {
		n, _ := strconv.ParseUint(t[strings.LastIndexByte(t, '/')+1:], 10, 64)
		l = append(l, tr{n, r})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].n < l[j].n })
	out := make([][]byte, len(l))
	for i, x := range l {
		out[i] = x.raw
	}
	return out
}

// revoked is called by the group client when partitions go to a peer:
// records of theirs still held here are claimed as usual (the status
// topic's first claim decides who runs them), but not committed.
func (q *Queue) revoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	for t, ps := range lost {
		q.pend.revoke(t, ps)
	}
}

// group returns the tasks topic's consumer group client, joining the
// group at the first Take: a process that only asks for statuses or sends
// kills must not be handed partitions (and buffer their tasks) it never
// takes from.
func (q *Queue) group() (*kgo.Client, error) {
	q.grpMu.Lock()
	defer q.grpMu.Unlock()
	if q.closed.Load() {
		return nil, queue.ErrClosed
	}
	if q.grp != nil {
		return q.grp, nil
	}
	group := q.topics.Tasks + "-executors"
	if q.opt.group != "" {
		group = q.opt.group
	}
	grp, err := kgo.NewClient(append(q.base,
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(q.topics.Tasks),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(q.opt.SessionTimeout),
		kgo.HeartbeatInterval(q.opt.SessionTimeout/5),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.FetchMaxPartitionBytes(int32(max(q.opt.MaxTaskBytes, 1<<20)+64<<10)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsRevoked(q.revoked),
		kgo.OnPartitionsLost(q.revoked),
	)...)
	if err != nil {
		return nil, fmt.Errorf("queue: kafka: %w", err)
	}
	q.grp = grp
	return grp, nil
}

// commit marks the task records up to r consumed. It is called right after
// a claim (or drop) is durable; a failure (a rebalance took the partition)
// only means a peer sees the record again, and its claim is a duplicate.
func (q *Queue) commit(ctx context.Context, r *kgo.Record) {
	if r == nil {
		return
	}
	grp, err := q.group()
	if err != nil {
		return
	}
	if err := grp.CommitRecords(ctx, r); err != nil {
		q.opt.Logger.Warn("cannot commit the tasks topic's offset; a peer may see the record again and treat it as a duplicate",
			"partition", r.Partition, "offset", r.Offset, "error", err)
	}
}

// Take implements queue.Tasks: one record from the tasks topic's group.
// Its offset is committed only once the delivery is resolved (see
// pending). A record over max_task_bytes is handed over as its first
// task.PeekBytes, its length and digest.
func (q *Queue) Take(ctx context.Context) (*queue.Delivery, error) {
	if q.closed.Load() {
		return nil, queue.ErrClosed
	}
	grp, err := q.group()
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, BlockTimeout)
	defer cancel()
	fs := grp.PollRecords(pctx, 1)
	if fs.IsClientClosed() {
		return nil, queue.ErrClosed
	}
	var ferr error
	fs.EachError(func(t string, p int32, err error) {
		if pctx.Err() == nil && ferr == nil {
			ferr = fmt.Errorf("queue: kafka: take from %s/%d: %w", t, p, err)
		}
	})
	recs := fs.Records()
	if len(recs) == 0 {
		return nil, ferr
	}
	r := recs[0]
	d := &queue.Delivery{Raw: r.Value, Taken: time.Now(), Queued: r.Timestamp, Token: q.token()}
	if len(r.Value) > q.opt.MaxTaskBytes {
		sum := sha1.Sum(r.Value)
		d.Raw = append([]byte(nil), r.Value[:min(len(r.Value), task.PeekBytes)]...)
		d.Size, d.Digest = len(r.Value), "sha1:"+hex.EncodeToString(sum[:])
	}
	q.pend.add(&entry{rec: &kgo.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, LeaderEpoch: r.LeaderEpoch},
		raw: d.Raw, token: d.Token})
	if d.Size == 0 {
		q.pend.hold(d.Token, d.Raw)
	}
	return d, nil
}

// Claim implements queue.Tasks: a claim record in the id's partition of
// the status topic, read back to learn whether it came first; then the
// task record's offset is committed. A claim retried with the same token
// finds its own earlier claim and answers the same.
func (q *Queue) Claim(ctx context.Context, d *queue.Delivery, id string) (queue.Claim, error) {
	if d.Token == "" {
		return 0, fmt.Errorf("queue: claim %q: the delivery has no token (not taken by Take)", id)
	}
	if st := q.view.get(id); st != nil && st.token == d.Token {
		return claimOf(st), nil // a retry whose first answer was lost, or a claim of an ended id
	}
	_, typ := task.PeekID(d.Raw)
	st, _, err := q.writeStatus(ctx, statusRec{K: kClaim, ID: id, Exec: q.opt.ExecutorID, Token: d.Token, Type: typ})
	if err != nil {
		return 0, err
	}
	q.commit(ctx, q.pend.resolve(d.Token, nil))
	if st != nil && st.token == d.Token {
		return claimOf(st), nil
	}
	return queue.Duplicate, nil
}

func claimOf(st *idState) queue.Claim {
	if st.state != task.Running {
		return queue.Duplicate // this very delivery ended it already
	}
	if st.cancelled {
		return queue.CancelledWhileQueued
	}
	return queue.Claimed
}

// Drop implements queue.Tasks: the record is marked consumed.
func (q *Queue) Drop(ctx context.Context, d *queue.Delivery) error {
	q.pend.release(d.Token, d.Raw)
	q.commit(ctx, q.pend.resolve(d.Token, d.Raw))
	return nil
}

// Requeue implements queue.Tasks. A topic cannot put a record back at its
// head: the task is produced again to the tasks topic (at its tail), then
// the original is marked consumed. An oversized one is discarded.
func (q *Queue) Requeue(ctx context.Context, d *queue.Delivery) error {
	if d.Size == 0 {
		if _, err := q.produce(ctx, &kgo.Record{Topic: q.topics.Tasks, Value: d.Raw}); err != nil {
			return fmt.Errorf("queue: kafka: requeue: %w", err)
		}
	}
	q.pend.release(d.Token, d.Raw)
	q.commit(ctx, q.pend.resolve(d.Token, d.Raw))
	return nil
}

// Taken implements queue.Tasks: the deliveries taken and not yet finished,
// dropped or put back. A fetch whose reply is lost is fetched again from
// the same offset, so nothing is taken without this process seeing it.
func (q *Queue) Taken(context.Context) ([][]byte, error) {
	return q.pend.raws(), nil
}
