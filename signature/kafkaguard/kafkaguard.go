// Package kafkaguard is a signature.ReplayGuard on a Kafka topic, for
// deployments on the Kafka transport: executors sharing the brokers share
// its memory, so a signed task replayed to any of them is refused by all.
//
// Kafka has no set-if-absent, so the topic's order decides. Each call
// produces one record keyed "<key id>:<mac>" (one key, one partition)
// holding a random token for this call and the time the use expires;
// every guard reads the whole topic in no group and folds it the same
// way: the first record of a key wins until its expiry, later ones lose.
// A call reads its partition up to its own record's offset and is the
// first use exactly when the fold holds its token. A produce retried
// after a lost reply carries the same token, so it cannot turn a first
// use into a false replay.
package kafkaguard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/signature"
)

// DefaultTimeout bounds one FirstUse: a guard that cannot reach the
// brokers says so (and the task is refused) instead of holding it.
const DefaultTimeout = 10 * time.Second

// pruneSlack is how long after its expiry, by the newest record's clock,
// an entry is still kept: records written by a clock that lags within
// this are still judged as every other reader judges them.
const pruneSlack = time.Minute

// Guard implements signature.ReplayGuard.
type Guard struct {
	topic   string
	timeout time.Duration
	prod    *kgo.Client
	cons    *kgo.Client
	cancel  context.CancelFunc
	done    chan struct{}

	mu      sync.Mutex
	uses    map[string]use
	next    map[int32]int64 // next offset to fold, per partition
	newest  int64           // the newest record's time, ms
	changed chan struct{}   // closed and replaced after each fetch is folded
	err     error           // why the reader stopped
	pruneAt int             // prune when this many uses are remembered
}

var _ signature.ReplayGuard = (*Guard)(nil)

// use is the first use of a signature in force.
type use struct {
	token   string
	expires int64 // ms
}

// record is one record's value.
type record struct {
	Token   string `json:"token"`
	T       int64  `json:"t"`       // the writer's clock, ms
	Expires int64  `json:"expires"` // ms
}

// New starts a guard on topic, which must exist (the Kafka transport
// creates it: its Topics().Signatures). base holds the seed brokers and
// the connection options (TLS, SASL).
func New(base []kgo.Opt, topic string) (*Guard, error) {
	prod, err := kgo.NewClient(append(base,
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
	)...)
	if err != nil {
		return nil, fmt.Errorf("signature: kafka replay guard: %w", err)
	}
	cons, err := kgo.NewClient(append(base,
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(250*time.Millisecond),
	)...)
	if err != nil {
		prod.Close()
		return nil, fmt.Errorf("signature: kafka replay guard: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Guard{topic: topic, timeout: DefaultTimeout, prod: prod, cons: cons, cancel: cancel, done: make(chan struct{}),
		uses: map[string]use{}, next: map[int32]int64{}, changed: make(chan struct{}), pruneAt: 1024}
	go g.read(ctx)
	return g, nil
}

// Close stops the guard.
func (g *Guard) Close() {
	g.cancel()
	g.cons.Close()
	<-g.done
	g.prod.Close()
}

// Key is the record key that stands for (keyID, mac). A key id holds no
// ':' (signature.LoadKeys refuses one), so the pair maps to one key.
func Key(keyID, mac string) string { return keyID + ":" + mac }

// FirstUse implements signature.ReplayGuard.
func (g *Guard) FirstUse(ctx context.Context, keyID, mac string, ttl time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	var tok [16]byte
	_, _ = rand.Read(tok[:]) // crypto/rand.Read never fails
	now := time.Now().UnixMilli()
	val, _ := json.Marshal(record{Token: hex.EncodeToString(tok[:]), T: now, Expires: now + max(ttl.Milliseconds(), 1)})
	key := Key(keyID, mac)
	res := g.prod.ProduceSync(ctx, &kgo.Record{Topic: g.topic, Key: []byte(key), Value: val})
	if err := res.FirstErr(); err != nil {
		return false, fmt.Errorf("signature: replay check in Kafka (topic %s): %w", g.topic, err)
	}
	r := res[0].Record
	for {
		g.mu.Lock()
		folded, changed, rerr := g.next[r.Partition] > r.Offset, g.changed, g.err
		u := g.uses[key]
		g.mu.Unlock()
		if folded {
			return u.token == hex.EncodeToString(tok[:]), nil
		}
		if rerr != nil {
			return false, fmt.Errorf("signature: replay check in Kafka (topic %s): %w", g.topic, rerr)
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("signature: replay check in Kafka (topic %s): reading back the check: %w", g.topic, ctx.Err())
		case <-changed:
		}
	}
}

// read folds the topic until Close.
func (g *Guard) read(ctx context.Context) {
	defer close(g.done)
	for ctx.Err() == nil {
		fs := g.cons.PollFetches(ctx)
		if fs.IsClientClosed() || ctx.Err() != nil {
			break
		}
		g.mu.Lock()
		fs.EachRecord(g.apply)
		if len(g.uses) >= g.pruneAt {
			g.prune()
			g.pruneAt = max(2*len(g.uses), 1024)
		}
		close(g.changed)
		g.changed = make(chan struct{})
		g.mu.Unlock()
	}
	g.mu.Lock()
	g.err = errors.New("the guard is closed")
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

// apply is the fold: a record takes its key when the key is free or its
// use has expired by the record's own time. It depends on the records
// alone, so every reader reaches the same verdicts.
func (g *Guard) apply(r *kgo.Record) {
	if n := r.Offset + 1; n > g.next[r.Partition] {
		g.next[r.Partition] = n
	}
	var rec record
	if json.Unmarshal(r.Value, &rec) != nil || rec.Token == "" {
		return // not a guard's record: nothing else should write here
	}
	g.newest = max(g.newest, rec.T)
	k := string(r.Key)
	if u, ok := g.uses[k]; ok && rec.T < u.expires {
		return
	}
	g.uses[k] = use{token: rec.Token, expires: rec.Expires}
}

// prune forgets uses that expired well before the newest record.
func (g *Guard) prune() {
	cut := g.newest - pruneSlack.Milliseconds()
	for k, u := range g.uses {
		if u.expires < cut {
			delete(g.uses, k)
		}
	}
}

// Len returns the number of signatures remembered.
func (g *Guard) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.uses)
}
