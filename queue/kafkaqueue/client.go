package kafkaqueue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
)

// Client is the client commands' side of the Kafka transport
// (queue.Client): it produces tasks and kills, and answers status and log
// reads from the one partition of the status and logs topics that holds
// the task's id (the topics are keyed by id), folded by the executors'
// own rules. It never joins a group and never writes the status topic, so
// it needs WRITE on the tasks and control topics and READ on the others
// only.
//
// What it cannot check: a duplicate id is found only once an executor has
// claimed (or a kill cancelled) it — a task record still waiting in the
// tasks topic cannot be looked up, and two submits of one id at the same
// moment both pass. The executors still run only the first (its claim
// wins) and give the second no done of its own, so whoever waits on the
// second sees the first one's result.
type Client struct {
	cfg    ClientConfig
	topics Topics
	base   []kgo.Opt
	prod   *kgo.Client
	adm    *kadm.Client
	parts  map[string]int // partition counts, by topic

	statusMu sync.Mutex
	status   map[int32]*folded // by partition of the status topic

	execMu sync.Mutex
	execs  *folded

	logsMu sync.Mutex
	logs   *partReader
	logsID string
}

// ClientConfig configures a Client.
type ClientConfig struct {
	Names Names
	// Retention is status_retention: how long a kill ahead counts (the
	// fold's rule, as the executors apply it).
	Retention time.Duration
	// TTL is executor_ttl: an executor is alive while its newest heartbeat
	// is younger.
	TTL time.Duration
	// MaxTaskBytes is max_task_bytes.
	MaxTaskBytes int
}

var _ queue.Client = (*Client)(nil)

// folded is one partition of the status or executors topic, read so far
// and folded.
type folded struct {
	r *partReader
	v *view
}

// NewClient connects to the brokers and checks that the topics exist: the
// first executor creates them, and a client that created them would make
// them with settings it does not own.
func NewClient(ctx context.Context, seeds []string, clientOpts []kgo.Opt, cfg ClientConfig) (*Client, error) {
	if cfg.Retention <= 0 {
		cfg.Retention = queue.DefaultRetention
	}
	if cfg.TTL <= 0 {
		cfg.TTL = queue.DefaultTTL
	}
	if cfg.MaxTaskBytes <= 0 {
		cfg.MaxTaskBytes = queue.DefaultMaxTaskBytes
	}
	if len(seeds) == 0 {
		return nil, errors.New("queue: kafka: no brokers")
	}
	topics := TopicsFor(cfg.Names)
	for _, t := range topics.all() {
		if err := CheckTopicName(t); err != nil {
			return nil, fmt.Errorf("queue: kafka: %w", err)
		}
	}
	c := &Client{cfg: cfg, topics: topics, base: append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, clientOpts...),
		parts: map[string]int{}, status: map[int32]*folded{}}
	var err error
	c.prod, err = kgo.NewClient(append(slices.Clone(c.base),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(int32(max(cfg.MaxTaskBytes, 1<<20)+64<<10)),
		kgo.ProducerLinger(0),
	)...)
	if err != nil {
		return nil, fmt.Errorf("queue: kafka: %w", err)
	}
	c.adm = kadm.NewClient(c.prod)
	listed, err := c.adm.ListTopics(ctx, topics.all()...)
	if err != nil {
		c.prod.Close()
		return nil, fmt.Errorf("queue: kafka: list topics: %w", err)
	}
	var missing []string
	for _, t := range topics.all() {
		d, ok := listed[t]
		if !ok || d.Err != nil || len(d.Partitions) == 0 {
			missing = append(missing, t)
			continue
		}
		c.parts[t] = len(d.Partitions)
	}
	if len(missing) > 0 {
		c.prod.Close()
		return nil, fmt.Errorf("queue: kafka: missing topics %s: an executor creates them when it starts (kafka_create_topics), "+
			"or create them with the settings of the README's Kafka section", strings.Join(missing, ", "))
	}
	return c, nil
}

// Topics returns the topic names in use.
func (c *Client) Topics() Topics { return c.topics }

// Close implements queue.Client.
func (c *Client) Close() error {
	c.statusMu.Lock()
	for _, f := range c.status {
		f.r.cl.Close()
	}
	c.status = map[int32]*folded{}
	c.statusMu.Unlock()
	c.execMu.Lock()
	if c.execs != nil {
		c.execs.r.cl.Close()
		c.execs = nil
	}
	c.execMu.Unlock()
	c.logsMu.Lock()
	if c.logs != nil {
		c.logs.cl.Close()
		c.logs = nil
	}
	c.logsMu.Unlock()
	c.prod.Close()
	return nil
}

// partition is the partition of topic that records keyed by id go to: the
// executors produce with the default partitioner, which hashes keys as
// Kafka's does (murmur2), as this one does.
func (c *Client) partition(topic, id string) int32 {
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic(topic).Partition(&kgo.Record{Key: []byte(id)}, c.parts[topic]))
}

// SubmitTask implements queue.Client. The task is produced keyed by its
// id, so copies of one id reach one partition, in order. The duplicate
// check sees only ids an executor has claimed or a kill cancelled (see
// Client). A tube is carried in the task but routes nothing: there is one
// tasks topic.
func (c *Client) SubmitTask(ctx context.Context, id, _ string, raw []byte) (queue.SubmitResult, error) {
	st, err := c.fold(ctx, id)
	if err != nil {
		return 0, err
	}
	if st != nil {
		return queue.IDUsed, nil
	}
	if err := c.prod.ProduceSync(ctx, &kgo.Record{Topic: c.topics.Tasks, Key: []byte(id), Value: raw}).FirstErr(); err != nil {
		return 0, fmt.Errorf("queue: kafka: submit %q to %s: %w", id, c.topics.Tasks, err)
	}
	return queue.Pushed, nil
}

// SendControl implements queue.Client: the control topic, which every
// executor reads; the one that runs the task kills it, and a kill for a
// task not claimed yet becomes a kill ahead in the status topic, written
// by the first executor that reads it (clients cannot write there).
func (c *Client) SendControl(ctx context.Context, raw []byte) error {
	if err := c.prod.ProduceSync(ctx, &kgo.Record{Topic: c.topics.Control, Value: raw}).FirstErr(); err != nil {
		return fmt.Errorf("queue: kafka: send to %s: %w", c.topics.Control, err)
	}
	return nil
}

// Status implements queue.Statuses, as Queue.Status answers it.
func (c *Client) Status(ctx context.Context, id string) (*queue.Status, error) {
	st, err := c.fold(ctx, id)
	if err != nil || st == nil {
		return nil, err
	}
	s := statusOf(id, st)
	return &s, nil
}

// statusOf is id's state as the clients see it: a task cancelled ahead
// is still queued until an executor reaches its record.
func statusOf(id string, st *idState) queue.Status {
	state := st.state
	if state == stateCancelled {
		state = task.Queued
	}
	return queue.Status{ID: id, State: state, Executor: st.exec,
		Updated: strconv.FormatInt(st.updated, 10), Done: st.done}
}

// State implements queue.Client.
func (c *Client) State(ctx context.Context, id string) (state, executor string, err error) {
	st, err := c.fold(ctx, id)
	if err != nil || st == nil {
		return "", "", err
	}
	return string(st.state), st.exec, nil
}

// fold reads id's partition of the status topic to its current end and
// returns id's state there (nil for none).
func (c *Client) fold(ctx context.Context, id string) (*idState, error) {
	var out *idState
	err := c.foldPartition(ctx, c.partition(c.topics.Status, id), func(v *view) {
		if st := v.ids[id]; st != nil {
			cp := *st
			out = &cp
		}
	})
	return out, err
}

// foldPartition reads partition p of the status topic to its current end
// and hands its fold to fn, which must not keep it.
func (c *Client) foldPartition(ctx context.Context, p int32, fn func(*view)) error {
	end, err := c.endOffset(ctx, c.topics.Status, p)
	if err != nil {
		return err
	}
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	f := c.status[p]
	if f == nil {
		r, err := c.openReader(c.topics.Status, p, 0)
		if err != nil {
			return err
		}
		f = &folded{r: r, v: &view{ids: map[string]*idState{}, execs: map[string]*execState{}, retention: c.cfg.Retention}}
		c.status[p] = f
	}
	if err := f.r.readTo(ctx, end, f.v.applyStatus); err != nil {
		return fmt.Errorf("queue: kafka: read %s: %w", c.topics.Status, err)
	}
	fn(f.v)
	return nil
}

// List is every id the status topic holds a decision about (claimed,
// cancelled ahead, ended), as Status answers each: all its partitions
// read to their current ends. The fold keeps an ended id for the
// retention, so this is the last status_retention's tasks and the
// running ones.
func (c *Client) List(ctx context.Context) ([]queue.Status, error) {
	var out []queue.Status
	for p := range int32(c.parts[c.topics.Status]) {
		err := c.foldPartition(ctx, p, func(v *view) {
			for id, st := range v.ids {
				out = append(out, statusOf(id, st))
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Executors says, for each executor that has not left, whether it is
// alive (its heartbeats in the executors topic are younger than the TTL).
func (c *Client) Executors(ctx context.Context) (map[string]bool, error) {
	beats, err := c.Beats(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(beats))
	for _, b := range beats {
		out[b.ID] = b.Alive
	}
	return out, nil
}

// Beat is what the executors topic says of one executor.
type Beat struct {
	ID    string
	Alive bool
	// Holder names the process that beats: "host H pid P, <random>".
	Holder string
	// Last is when its newest heartbeat was read, as this client judges it.
	Last time.Time
}

// Beats lists the executors that have not left, by id.
func (c *Client) Beats(ctx context.Context) ([]Beat, error) {
	end, err := c.endOffset(ctx, c.topics.Executors, 0)
	if err != nil {
		return nil, err
	}
	c.execMu.Lock()
	defer c.execMu.Unlock()
	if c.execs == nil {
		r, err := c.openReader(c.topics.Executors, 0, 0)
		if err != nil {
			return nil, err
		}
		c.execs = &folded{r: r, v: &view{ids: map[string]*idState{}, execs: map[string]*execState{}}}
	}
	if err := c.execs.r.readTo(ctx, end, c.execs.v.applyBeat); err != nil {
		return nil, fmt.Errorf("queue: kafka: read %s: %w", c.topics.Executors, err)
	}
	var out []Beat
	for id, e := range c.execs.v.execs {
		if !e.left {
			out = append(out, Beat{ID: id, Alive: time.Since(e.last) < c.cfg.TTL, Holder: e.holder, Last: e.last})
		}
	}
	slices.SortFunc(out, func(a, b Beat) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Waiting counts the task records the executors' group has not committed
// yet: tasks queued, or taken and not claimed yet.
func (c *Client) Waiting(ctx context.Context) (int64, error) {
	ends, err := c.adm.ListEndOffsets(ctx, c.topics.Tasks)
	if err != nil {
		return 0, err
	}
	starts, err := c.adm.ListStartOffsets(ctx, c.topics.Tasks)
	if err != nil {
		return 0, err
	}
	committed, err := c.adm.FetchOffsets(ctx, c.topics.Tasks+"-executors")
	if err != nil {
		return 0, err
	}
	var n int64
	var errs []error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, o.Err)
			return
		}
		from := int64(0)
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok && s.Err == nil {
			from = s.Offset
		}
		if cm, ok := committed.Lookup(o.Topic, o.Partition); ok && cm.Err == nil && cm.At > from {
			from = cm.At
		}
		n += max(o.Offset-from, 0)
	})
	return n, errors.Join(errs...)
}

// logsSlack is how long before its claim a task's reader starts in the
// logs topic: the claim's time is its executor's clock, the records'
// times that clock or (message.timestamp.type=LogAppendTime) the
// broker's, and either may have been set back a little.
const logsSlack = 5 * time.Minute

// ReadLogs implements queue.Client from id's partition of the logs topic,
// skipping other tasks' records. The position is the offset to read next.
// From the start ("") a finished or running task is read from shortly
// before its claim, not from the start of the topic; a task not claimed
// yet from the end, as its lines all come after its claim.
func (c *Client) ReadLogs(ctx context.Context, id, from string, block time.Duration) (queue.LogBatch, error) {
	c.logsMu.Lock()
	defer c.logsMu.Unlock()
	out := queue.LogBatch{Next: from}
	if c.logs == nil || c.logsID != id || from == "" || from != strconv.FormatInt(c.logs.next, 10) {
		if c.logs != nil {
			c.logs.cl.Close()
			c.logs = nil
		}
		p := c.partition(c.topics.Logs, id)
		var at int64
		if from != "" {
			var err error
			if at, err = strconv.ParseInt(from, 10, 64); err != nil || at < 0 {
				return out, fmt.Errorf("queue: kafka: bad log position %q", from)
			}
		} else {
			var err error
			if at, err = c.logsStart(ctx, id, p); err != nil {
				return out, err
			}
		}
		r, err := c.openReader(c.topics.Logs, p, at)
		if err != nil {
			return out, err
		}
		c.logs, c.logsID = r, id
	}
	keep := func(r *kgo.Record) {
		if string(r.Key) == id {
			out.Messages = append(out.Messages, r.Value)
		}
	}
	var err error
	if block <= 0 {
		var end int64
		if end, err = c.endOffset(ctx, c.topics.Logs, c.logs.part); err == nil {
			err = c.logs.readTo(ctx, end, keep)
		}
	} else {
		bctx, cancel := context.WithTimeout(ctx, block)
		for len(out.Messages) == 0 && bctx.Err() == nil && err == nil {
			err = c.logs.poll(bctx, keep)
		}
		cancel()
		if err == nil {
			err = ctx.Err()
		}
	}
	out.Next = strconv.FormatInt(c.logs.next, 10)
	if err != nil {
		return out, fmt.Errorf("queue: kafka: read the logs of %q from %s: %w", id, c.topics.Logs, err)
	}
	return out, nil
}

// logsStart is the offset of partition p of the logs topic that id's
// messages cannot be before. The end is listed before the status is read:
// if no claim shows there, the claim and so every line come after that end.
func (c *Client) logsStart(ctx context.Context, id string, p int32) (int64, error) {
	end, err := c.endOffset(ctx, c.topics.Logs, p)
	if err != nil {
		return 0, err
	}
	st, err := c.fold(ctx, id)
	if err != nil {
		return 0, err
	}
	if st == nil || st.claimedAt == 0 {
		return end, nil
	}
	listed, err := c.adm.ListOffsetsAfterMilli(ctx, st.claimedAt-logsSlack.Milliseconds(), c.topics.Logs)
	if err != nil {
		return 0, fmt.Errorf("queue: kafka: find the logs of %q in %s: %w", id, c.topics.Logs, err)
	}
	o, ok := listed.Lookup(c.topics.Logs, p)
	if !ok || o.Err != nil || o.Offset < 0 || o.Offset > end {
		return end, nil
	}
	return o.Offset, nil
}

func (c *Client) endOffset(ctx context.Context, topic string, p int32) (int64, error) {
	ends, err := c.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("queue: kafka: read the end of %s: %w", topic, err)
	}
	o, ok := ends.Lookup(topic, p)
	if !ok {
		return 0, fmt.Errorf("queue: kafka: read the end of %s: partition %d not listed", topic, p)
	}
	if o.Err != nil {
		return 0, fmt.Errorf("queue: kafka: read the end of %s: %w", topic, o.Err)
	}
	return o.Offset, nil
}

// partReader reads one partition, in no group, from a given offset.
type partReader struct {
	cl   *kgo.Client
	part int32
	next int64 // the offset to read next
}

func (c *Client) openReader(topic string, p int32, at int64) (*partReader, error) {
	cl, err := kgo.NewClient(append(slices.Clone(c.base),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(at)}}),
		// Records older than the topic's retention are gone: start at the
		// oldest one left.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(250*time.Millisecond),
		kgo.FetchMaxPartitionBytes(int32(max(c.cfg.MaxTaskBytes, 1<<20)+64<<10)),
	)...)
	if err != nil {
		return nil, fmt.Errorf("queue: kafka: %w", err)
	}
	return &partReader{cl: cl, part: p, next: at}, nil
}

// poll hands fn what one fetch brings, waiting within ctx; an ended ctx
// is not an error here.
func (r *partReader) poll(ctx context.Context, fn func(*kgo.Record)) error {
	fs := r.cl.PollFetches(ctx)
	var err error
	fs.EachError(func(_ string, _ int32, e error) {
		if err == nil && !errors.Is(e, context.Canceled) && !errors.Is(e, context.DeadlineExceeded) {
			err = e
		}
	})
	fs.EachRecord(func(rec *kgo.Record) {
		r.next = rec.Offset + 1
		fn(rec)
	})
	return err
}

// readStall bounds a read that gets nothing while records it waits for
// are listed: a broker that lists an end it cannot serve must not hang a
// command.
const readStall = 15 * time.Second

// readTo reads until the offset end.
func (r *partReader) readTo(ctx context.Context, end int64, fn func(*kgo.Record)) error {
	for r.next < end {
		before := r.next
		pctx, cancel := context.WithTimeout(ctx, readStall)
		err := r.poll(pctx, fn)
		stalled := pctx.Err() != nil && r.next == before
		cancel()
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if stalled {
			return fmt.Errorf("nothing read from offset %d in %s, with records listed up to %d", before, readStall, end)
		}
	}
	return nil
}
