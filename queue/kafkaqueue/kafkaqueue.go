// Package kafkaqueue is the Kafka transport of task-job, beside the Redis
// one and behind the same queue interfaces.
//
// Topics, for queue_name Q (see the README's Kafka section):
//
//	Q            tasks; clients produce, executors consume in the group Q-executors
//	Q_control    kill messages (queue_control_name); every executor reads all of it, in no group
//	Q_logs       TaskLog messages keyed by task id (logs_channel): output lines, then the done
//	Q_status     the decisions about each task id, keyed by id: claims, kills ahead, finishes, lost
//	Q_executors  liveness: heartbeat and leave records keyed by executor id (compacted)
//	Q_signatures the replay memory of signed tasks (signature/kafkaguard)
//	Q_audit      the executors' audit logs, mirrored, keyed by executor id (audit/kafkamirror)
//
// Kafka has no compare-and-set, so every decision about an id is a record
// in its partition of Q_status, and every executor folds that partition in
// offset order into the same state: the first claim of an id wins, a kill
// ahead before the claim cancels it, the first terminal record ends it and
// later ones lose. A writer learns what its record decided by reading the
// partition up to its own record's offset. See status.go. Client
// (client.go) is the client commands' side: it reads only the partitions
// that hold one id.
package kafkaqueue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/queue"
)

// Names are the names users configure; the topics follow from them.
type Names struct {
	Tasks   string // queue_name: the tasks topic, and the prefix of the others
	Control string // queue_control_name
	Logs    string // logs_channel
}

// Topics are the topic names of one deployment.
type Topics struct {
	Tasks, Control, Logs, Status, Executors string
	// Signatures and Audit belong to the guards beside the transport: the
	// replay memory of signed tasks and the audit logs' mirror.
	Signatures, Audit string
}

// TopicsFor derives the topic names from the configured names.
func TopicsFor(n Names) Topics {
	t := Topics{Tasks: n.Tasks, Control: n.Control, Logs: n.Logs,
		Status: n.Tasks + "_status", Executors: n.Tasks + "_executors",
		Signatures: n.Tasks + "_signatures", Audit: n.Tasks + "_audit"}
	if t.Control == "" {
		t.Control = n.Tasks + "_control"
	}
	if t.Logs == "" {
		t.Logs = n.Tasks + "_logs"
	}
	return t
}

func (t Topics) all() []string {
	return []string{t.Tasks, t.Control, t.Logs, t.Status, t.Executors, t.Signatures, t.Audit}
}

var topicName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,249}$`)

// CheckTopicName reports whether s can name a Kafka topic.
func CheckTopicName(s string) error {
	if !topicName.MatchString(s) || s == "." || s == ".." {
		return fmt.Errorf("%q cannot name a Kafka topic: 1 to 249 of A-Z a-z 0-9 . _ -", s)
	}
	return nil
}

// Options configure a Queue.
type Options struct {
	Names      Names
	ExecutorID string
	// Retention is status_retention: how long an ended task's status (and
	// so its duplicate-id protection) and a kill ahead are kept.
	Retention time.Duration
	// TTL is executor_ttl.
	TTL time.Duration
	// MaxTaskBytes is max_task_bytes (default 1 MiB).
	MaxTaskBytes int
	// Partitions is the partition count of the tasks, logs and status
	// topics when this executor creates them (default 6): no more
	// executors than this share the tasks topic's work.
	Partitions int
	// CreateTopics creates missing topics with the documented settings;
	// false only checks that they exist.
	CreateTopics bool
	// SessionTimeout is the tasks consumer group's session timeout
	// (default 10 s): how long a crashed executor's partitions wait before
	// a peer consumes them. It says nothing about liveness.
	SessionTimeout time.Duration
	// Logger hears about topics, commits and waits.
	Logger hclog.Logger
	// group names the tasks consumer group instead of "<tasks>-executors":
	// the contract gives each executor its own, so that a second executor
	// reads a record the first has not committed, as after a rebalance.
	group string
	// crashBeforeDone and crashAfterDone, when they return an error, stop
	// a finish there as a crash would: between its status record and the
	// done's produce, or between that produce and the published record.
	crashBeforeDone, crashAfterDone func(id string) error
}

// Queue implements queue.Broker on Kafka.
type Queue struct {
	opt    Options
	topics Topics
	holder string
	takes  atomic.Uint64

	prod  *kgo.Client // produces everything; also the admin client's connection
	adm   *kadm.Client
	base  []kgo.Opt
	seeds []string
	copts []kgo.Opt // the caller's client options (TLS, SASL)
	grpMu sync.Mutex
	grp   *kgo.Client // the tasks consumer group, joined at the first Take
	ctl   *kgo.Client // the control topic, no group
	view  *view       // Q_status and Q_executors, folded

	pend pending // deliveries taken and not yet resolved (their offsets not committed)

	ctlCh, fwdCh chan *kgo.Record
	ctlGroup     string
	ctlMu        sync.Mutex
	ctlAcked     map[int32]int64
	ctlInflight  []*kgo.Record

	finMu     sync.Mutex
	published map[string]time.Time // id and token of the dones this process published

	beatMu   sync.Mutex
	lastBeat time.Time // the last heartbeat this process wrote, acknowledged

	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

var _ queue.Broker = (*Queue)(nil)

// DefaultPartitions is Options.Partitions' default.
const DefaultPartitions = 6

// New connects to the brokers (ClientOptions gives TLS and SASL), creates
// or checks the topics and starts reading the status, executors and
// control topics.
func New(ctx context.Context, seeds []string, clientOpts []kgo.Opt, opt Options) (*Queue, error) {
	if opt.Retention <= 0 {
		opt.Retention = queue.DefaultRetention
	}
	if opt.TTL <= 0 {
		opt.TTL = queue.DefaultTTL
	}
	if opt.MaxTaskBytes <= 0 {
		opt.MaxTaskBytes = queue.DefaultMaxTaskBytes
	}
	if opt.Partitions <= 0 {
		opt.Partitions = DefaultPartitions
	}
	if opt.SessionTimeout <= 0 {
		opt.SessionTimeout = 10 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = hclog.NewNullLogger()
	}
	if len(seeds) == 0 {
		return nil, errors.New("queue: kafka: no brokers")
	}
	topics := TopicsFor(opt.Names)
	for _, t := range topics.all() {
		if err := CheckTopicName(t); err != nil {
			return nil, fmt.Errorf("queue: kafka: %w", err)
		}
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	host, _ := os.Hostname()
	q := &Queue{
		opt: opt, topics: topics,
		holder:    fmt.Sprintf("host %s pid %d, %s", host, os.Getpid(), hex.EncodeToString(b[:])),
		ctlCh:     make(chan *kgo.Record),
		fwdCh:     make(chan *kgo.Record),
		ctlGroup:  topics.Control + "-" + opt.ExecutorID,
		ctlAcked:  map[int32]int64{},
		published: map[string]time.Time{},
	}
	q.pend.init()
	base := append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, clientOpts...)
	var err error
	q.prod, err = kgo.NewClient(append(base,
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(int32(max(opt.MaxTaskBytes, 1<<20)+64<<10)),
		kgo.ProducerLinger(0),
	)...)
	if err != nil {
		return nil, fmt.Errorf("queue: kafka: %w", err)
	}
	q.adm = kadm.NewClient(q.prod)
	if err := q.setupTopics(ctx); err != nil {
		q.prod.Close()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel
	q.view, err = startView(runCtx, &q.wg, base, topics, opt.Retention)
	if err != nil {
		cancel()
		q.prod.Close()
		return nil, fmt.Errorf("queue: kafka: %w", err)
	}
	q.base, q.seeds, q.copts = base, seeds, clientOpts
	q.wg.Add(1)
	go func() { defer q.wg.Done(); q.renewClaims(runCtx) }()
	if err := q.startControl(ctx, runCtx, base); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

// renewClaims writes the claims of this process's running tasks again
// every half status_retention: the status topic keeps records for twice
// that, so a task that runs for days keeps a claim a newly started reader
// still finds. For readers that were there all along a repeated claim of
// the same token changes nothing.
func (q *Queue) renewClaims(ctx context.Context) {
	t := time.NewTicker(q.opt.Retention / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for id, st := range q.view.running(q.opt.ExecutorID) {
			if !strings.HasPrefix(st.token, q.holder+"/") {
				continue
			}
			if _, _, err := q.writeStatus(ctx, statusRec{K: kClaim, ID: id, Exec: q.opt.ExecutorID, Token: st.token, Type: st.typ}); err != nil && ctx.Err() == nil {
				q.opt.Logger.Warn("cannot renew the claim of a long task; retrying at the next renewal", "id", id, "error", err)
			}
		}
	}
}

// Topics returns the topic names in use.
func (q *Queue) Topics() Topics { return q.topics }

// Client returns the producing client (for the CLI and tests).
func (q *Queue) Client() *kgo.Client { return q.prod }

// ClientOptions returns the options that reach the brokers (seeds, TLS,
// SASL), for the guards that keep topics of their own beside the queue's.
func (q *Queue) ClientOptions() []kgo.Opt { return slices.Clone(q.base) }

// Close stops the readers and closes the clients.
func (q *Queue) Close() error {
	if q.closed.Swap(true) {
		return nil
	}
	if q.cancel != nil {
		q.cancel()
	}
	q.grpMu.Lock()
	if q.grp != nil {
		q.grp.Close()
	}
	q.grpMu.Unlock()
	if q.ctl != nil {
		q.ctl.Close()
	}
	q.wg.Wait()
	if q.view != nil {
		q.view.cl.Close()
	}
	q.prod.Close()
	return nil
}

func (q *Queue) token() string {
	return fmt.Sprintf("%s/%d", q.holder, q.takes.Add(1))
}

// produce writes one record and waits for all in-sync replicas.
func (q *Queue) produce(ctx context.Context, r *kgo.Record) (*kgo.Record, error) {
	if q.closed.Load() {
		return nil, queue.ErrClosed
	}
	res := q.prod.ProduceSync(ctx, r)
	if err := res.FirstErr(); err != nil {
		return nil, err
	}
	return res[0].Record, nil
}

func nowMilli() int64 { return time.Now().UnixMilli() }
