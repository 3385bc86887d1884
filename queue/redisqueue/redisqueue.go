// Package redisqueue is the Redis transport of task-job: the original
// tool's lists, plus the keys that make hand-off reliable, kills routable and
// results exactly-once.
//
// Keys, for queue_name Q (see the README's key table):
//
//	Q                        task list (clients RPUSH)
//	Q_control                shared control list (clients RPUSH kills)
//	Q_logs                   TaskLog messages (logs_channel), trimmed; also a pub/sub channel
//	Q:logs:<id>              one task's TaskLog messages (stream), kept for the retention time
//	Q:processing:<executor>  tasks an executor took and has not finished
//	Q:control-taken:<exec>   control messages an executor took and has not handled
//	Q:control:<executor>     kills forwarded to the executor that runs the task
//	Q:status:<id>            state of a task id (hash), kept for the retention time
//	Q:submitted:<id>         an id reserved by a submit through task-job's clients (submit.go), kept for the retention time
//	Q:kills-ahead            kills for ids not yet taken (sorted set id → expiry), at most MaxKillsAhead
//	Q:executors              set of registered executors
//	Q:executor:<executor>    liveness key, renewed every TTL/3
//	Q:recovering:<executor>  lock held while a peer recovers a dead executor
//	Q:tube:<tube>            a tube's task list (clients RPUSH tasks with that tube)
//	Q:tubes                  hash executor → the tubes it serves (JSON list), for status
//	Q:assigned:<executor>    tasks a dispatcher gave a dispatched executor, not yet taken
//	Q:dispatch:epoch         the highest dispatcher leader token seen (fences a deposed leader)
//	Q:dispatch:refused       how many writes of deposed leaders the epoch refused
package redisqueue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
)

// BlockTimeout is how long a blocking pop waits before returning empty. go-redis
// rounds anything shorter up to a second and warns on every call, so a second
// it is; shutdown waits at most this long for a pop to return.
const BlockTimeout = time.Second

// Names are the list names users configure.
type Names struct {
	Tasks   string // queue_name
	Control string // queue_control_name
	Logs    string // logs_channel
}

// Options configure a Queue.
type Options struct {
	Names      Names
	ExecutorID string
	// Retention is how long the status of an ended task (and so its
	// duplicate-id protection) is kept.
	Retention time.Duration
	// TTL is how long an executor counts as alive after its last heartbeat.
	TTL time.Duration
	// ScanLimit bounds how many queued tasks a kill looks through to cancel a
	// queued task at once (beyond it the kill still takes effect when the task
	// is taken). Default 10,000.
	ScanLimit int
	// MaxKillsAhead bounds how many kills for ids that have not been taken
	// yet are remembered (for the retention time), so that they cancel the
	// task when it comes: beyond it, the ones closest to expiry are
	// forgotten first. Default DefaultMaxKillsAhead.
	MaxKillsAhead int
	// MaxTaskBytes is max_task_bytes: a task message longer than this is
	// never sent to the executor whole (see Take). Default 1 MiB.
	MaxTaskBytes int
	// LogsMaxLen bounds the shared logs list (logs_max_len): each publish
	// trims it to its newest LogsMaxLen messages. 0 means
	// DefaultLogsMaxLen, negative unbounded.
	LogsMaxLen int
	// Logger, if set, hears why Join waits.
	Logger hclog.Logger
	// Tubes are the lists Take serves, in priority order (tubes.go); ""
	// is the untubed task list. Default: that list alone.
	Tubes []string
	// Dispatched: Take serves only this executor's assigned list,
	// Q:assigned:<executor>, which a dispatcher fills (dispatch.go);
	// Tubes then only say what it serves, for the registry and status.
	Dispatched bool
}

// DefaultMaxKillsAhead is the default Options.MaxKillsAhead: 10,000 ids of
// at most 256 bytes, a few MB of Redis memory at the very most.
const DefaultMaxKillsAhead = 10000

// Queue implements queue.Broker on Redis.
type Queue struct {
	rdb redis.UniversalClient
	opt Options
	// holder is stored in the liveness key: it tells this process from an
	// earlier (or a second) one with the same executor id, and says who it
	// is ("host H pid N, <random>") to whoever finds the id taken.
	holder string
	takes  atomic.Uint64 // numbers deliveries: their tokens are holder/N
	watch  *watcher      // tells Take when an empty task list changes
	// ctlWatch does the same for TakeControl and the control list.
	ctlWatch *watcher
	// announced is when Take last wrote the tubes it serves (UnixNano).
	announced atomic.Int64
	// beforeScan, in tests, runs before RemoveQueued scans a list.
	beforeScan func(list string)
}

var _ queue.Broker = (*Queue)(nil)

// New wraps a connected client. The client is closed by Close.
func New(rdb redis.UniversalClient, opt Options) *Queue {
	if opt.Retention <= 0 {
		opt.Retention = queue.DefaultRetention
	}
	if opt.TTL <= 0 {
		opt.TTL = queue.DefaultTTL
	}
	if opt.ScanLimit <= 0 {
		opt.ScanLimit = 10000
	}
	if opt.MaxTaskBytes <= 0 {
		opt.MaxTaskBytes = queue.DefaultMaxTaskBytes
	}
	if opt.MaxKillsAhead <= 0 {
		opt.MaxKillsAhead = DefaultMaxKillsAhead
	}
	if len(opt.Tubes) == 0 {
		opt.Tubes = []string{""}
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	host, _ := os.Hostname()
	return &Queue{rdb: rdb, opt: opt, holder: fmt.Sprintf("host %s pid %d, %s", host, os.Getpid(), hex.EncodeToString(b[:])),
		watch: newWatcher(rdb), ctlWatch: newWatcher(rdb)}
}

// Client returns the underlying client (for the CLI and tests).
func (q *Queue) Client() redis.UniversalClient { return q.rdb }

// Close stops the watch and closes the client.
func (q *Queue) Close() error {
	q.watch.close()
	q.ctlWatch.close()
	return q.rdb.Close()
}

func (q *Queue) key(parts ...string) string {
	k := q.opt.Names.Tasks
	for _, p := range parts {
		k += ":" + p
	}
	return k
}

// scan iterates over the keys matching pattern. SCAN on a Cluster client
// asks one node of its choice; every key of a deployment is in its queue
// name's slot (its hash tag), so the node that owns that slot is asked.
func (q *Queue) scan(ctx context.Context, pattern string) (*redis.ScanIterator, error) {
	var node redis.Cmdable = q.rdb
	if cc, ok := q.rdb.(*redis.ClusterClient); ok {
		m, err := cc.MasterForKey(ctx, q.opt.Names.Tasks)
		if err != nil {
			return nil, err
		}
		node = m
	}
	return node.Scan(ctx, 0, pattern, 1000).Iterator(), nil
}

func (q *Queue) processing(executor string) string { return q.key("processing", executor) }
func (q *Queue) controlTaken(executor string) string {
	return q.key("control-taken", executor)
}
func (q *Queue) forwarded(executor string) string { return q.key("control", executor) }
func (q *Queue) liveness(executor string) string  { return q.key("executor", executor) }

// StatusKey is the key of id's status hash.
func (q *Queue) StatusKey(id string) string { return q.key("status", id) }

func now() string { return strconv.FormatInt(time.Now().UnixMilli(), 10) }

// Take implements queue.Tasks. The move into this executor's processing
// list is atomic (the task is never only in flight), and the message's
// length is checked in Redis first, so that one huge RPUSH cannot make the
// executor read it whole (takeScript). No blocking pop can do that check —
// BLMOVE returns the element, whatever its size — so while the lists are
// empty Take waits for Redis to report a push (watch.go): an idle executor
// sends nothing but a look every RecheckInterval, and wakes within a round
// trip of an RPUSH. Without that report (a Redis that cannot send it, a
// broken watch connection, Cluster) it polls: at once after a task, then
// every 1, 2, 4, 8 and at most PollInterval ms, for up to BlockTimeout.
func (q *Queue) Take(ctx context.Context) (*queue.Delivery, error) {
	var d *queue.Delivery
	err := q.block(ctx, q.watch, q.takeKeys, func() (bool, error) {
		var err error
		d, err = q.takeOnce(ctx)
		return d != nil, err
	})
	return d, err
}

// block calls once until it takes something (true), fails, ctx ends or
// BlockTimeout passes, waiting between two calls for w to report a change
// of keys (or polling, as Take's comment says).
func (q *Queue) block(ctx context.Context, w *watcher, keys func() []string, once func() (bool, error)) error {
	w.ensure(q.logWatch)
	deadline := time.Now().Add(BlockTimeout)
	wait := time.Millisecond
	for {
		if ch, until := w.quiet(); ch != nil {
			t := time.NewTimer(min(time.Until(until), time.Until(deadline)))
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-ch:
				t.Stop()
			case <-t.C:
			}
			if !time.Now().Before(deadline) {
				return nil
			}
			continue
		}
		got, err := once()
		if got || err != nil || ctx.Err() != nil {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		switch w.arm(ctx, keys()) {
		case armed, armNotEmpty:
			wait = time.Millisecond
			continue
		}
		t := time.NewTimer(min(wait, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, PollInterval)
	}
}

// PollInterval is the longest Take waits between two looks at an empty
// task list when it cannot wait for a push.
const PollInterval = 16 * time.Millisecond

func (q *Queue) logWatch(msg string, args ...any) {
	if q.opt.Logger != nil {
		q.opt.Logger.Warn(msg, args...)
	}
}

func (q *Queue) takeOnce(ctx context.Context) (*queue.Delivery, error) {
	q.announceTubes(ctx)
	keys := append([]string{q.processing(q.opt.ExecutorID)}, q.takeKeys()...)
	main := 0
	for i, t := range q.opt.Tubes {
		if t == "" && !q.opt.Dispatched {
			main = i + 1
		}
	}
	for {
		res, err := takeScript.Run(ctx, q.rdb, keys, q.opt.MaxTaskBytes, task.PeekBytes, main, q.tubePrefix()).Slice()
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("queue: take from %s: %w", q.describeLists(), err)
		}
		tube := func(v any) string {
			if q.opt.Dispatched {
				return "" // see deliveryTube
			}
			i, _ := v.(int64)
			if i < 1 || int(i) > len(q.opt.Tubes) {
				return ""
			}
			return q.opt.Tubes[i-1]
		}
		token := q.holder + "/" + strconv.FormatUint(q.takes.Add(1), 10)
		switch {
		case len(res) == 1 && res[0] == "again":
			if ctx.Err() != nil {
				return nil, nil
			}
			continue
		case len(res) == 3 && res[0] == "ok":
			raw, _ := res[1].(string)
			d := &queue.Delivery{Raw: []byte(raw), Taken: time.Now(), Token: token, Tube: tube(res[2])}
			if q.opt.Dispatched {
				d.Tube = q.deliveryTube(d.Raw)
			}
			return d, nil
		case len(res) == 5 && res[0] == "oversized":
			n, _ := res[1].(int64)
			prefix, _ := res[2].(string)
			sum, _ := res[3].(string)
			return &queue.Delivery{Raw: []byte(prefix), Taken: time.Now(), Size: int(n), Digest: "sha1:" + sum, Token: token, Tube: tube(res[4])}, nil
		}
		return nil, fmt.Errorf("queue: take from %s: unexpected reply %v", q.describeLists(), res)
	}
}

// Claim implements queue.Tasks: the claim script records the delivery's
// token with the claim, so a per-delivery claim costs no extra round trip.
func (q *Queue) Claim(ctx context.Context, d *queue.Delivery, id string) (queue.Claim, error) {
	if d.Token == "" {
		return 0, fmt.Errorf("queue: claim %q: the delivery has no token (not taken by Take)", id)
	}
	// The recent-task index rides in the same round trip (recent.go); a
	// server that lost its script cache answers NOSCRIPT, then Run loads it.
	// So does the read of when the task was submitted (Delivery.Queued,
	// for the wait metric), set by Submit only.
	keys := []string{q.StatusKey(id), q.key("kills-ahead")}
	var res *redis.Cmd
	var submitted *redis.StringCmd
	_, _ = q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		res = claimScript.EvalSha(ctx, p, keys, q.opt.ExecutorID, now(), d.Token, id)
		q.noteRecent(ctx, p, id, d.Raw, false)
		submitted = p.Get(ctx, q.SubmittedKey(id))
		return nil
	})
	if ms, err := submitted.Int64(); err == nil {
		d.Queued = time.UnixMilli(ms)
	}
	if err := res.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		res = claimScript.Run(ctx, q.rdb, keys, q.opt.ExecutorID, now(), d.Token, id)
	}
	n, err := res.Int()
	if err != nil {
		return 0, fmt.Errorf("queue: claim %q: %w", id, err)
	}
	return queue.Claim(n), nil
}

// NoteRule implements queue.RuleNoter: the status hash's rule field, for
// a running task, and its env field, the masked env as a JSON array ("" =
// none).
func (q *Queue) NoteRule(ctx context.Context, d *queue.Delivery, id, rule string, env []string) error {
	envJSON := ""
	if len(env) > 0 {
		b, _ := json.Marshal(env)
		envJSON = string(b)
	}
	if err := noteRuleScript.Run(ctx, q.rdb, []string{q.StatusKey(id)}, q.opt.ExecutorID, d.Token, rule, envJSON).Err(); err != nil {
		return fmt.Errorf("queue: note the rule of %q: %w", id, err)
	}
	return nil
}

// Drop implements queue.Tasks.
func (q *Queue) Drop(ctx context.Context, d *queue.Delivery) error {
	if err := q.rdb.LRem(ctx, q.processing(q.opt.ExecutorID), 1, d.Raw).Err(); err != nil {
		return fmt.Errorf("queue: drop: %w", err)
	}
	return nil
}

// Requeue implements queue.Tasks: back to the head of the list it was
// taken from.
func (q *Queue) Requeue(ctx context.Context, d *queue.Delivery) error {
	if d.Size > 0 {
		return nil // an oversized message was removed, not taken: it is not put back
	}
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LRem(ctx, q.processing(q.opt.ExecutorID), 1, d.Raw)
		p.LPush(ctx, q.TubeKey(d.Tube), d.Raw)
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: requeue: %w", err)
	}
	return nil
}

// Taken implements queue.Tasks.
func (q *Queue) Taken(ctx context.Context) ([][]byte, error) {
	items, err := q.rdb.LRange(ctx, q.processing(q.opt.ExecutorID), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("queue: list taken tasks: %w", err)
	}
	out := make([][]byte, len(items))
	for i, it := range items {
		out[i] = []byte(it)
	}
	return out, nil
}

// Publish implements queue.Publisher: runs of output lines go through the
// lines script (one RPUSH, one PUBLISH for followers, one XADD per task,
// fenced per task), finishes run the finish script, all inside MULTI/EXEC
// so a batch applies whole or not at all. The scripts are sent as EVAL,
// not EVALSHA: after a Redis restart the script cache is empty and a
// NOSCRIPT error inside MULTI would apply the rest of the batch without
// them.
func (q *Queue) Publish(ctx context.Context, msgs []queue.Message) ([]bool, error) {
	retention := strconv.FormatInt(q.opt.Retention.Milliseconds(), 10)
	finishes := make([]*redis.Cmd, len(msgs))
	type run struct {
		cmd   *redis.Cmd
		first int // index in msgs of the run's first line
	}
	var runs []run
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		var keys []string
		var args []any
		tasks := map[string]int{}
		first := -1
		flush := func() {
			if first < 0 {
				return
			}
			cmd := p.Eval(ctx, linesSource, append([]string{q.opt.Names.Logs}, keys...), args...)
			runs = append(runs, run{cmd: cmd, first: first})
			keys, args, first = nil, nil, -1
			clear(tasks)
		}
		for i, m := range msgs {
			if m.Finish == nil {
				if first < 0 {
					first = i
					args = append(args, q.opt.ExecutorID, retention, q.opt.Names.Logs)
				}
				k := 0
				if id := lineID(m.Log); id != "" {
					if k = tasks[id]; k == 0 {
						keys = append(keys, q.StatusKey(id), q.TaskLogsKey(id))
						k = len(keys) / 2
						tasks[id] = k
					}
				}
				args = append(args, k, m.Log)
				continue
			}
			flush()
			f := m.Finish
			claimed := "0"
			if f.Claimed {
				claimed = "1"
			}
			finishes[i] = p.Eval(ctx, finishSource,
				[]string{q.StatusKey(f.ID), q.opt.Names.Logs, q.processing(q.opt.ExecutorID)},
				string(f.State), f.Done, f.Raw, retention, q.opt.ExecutorID, claimed, now(), "0", q.opt.Names.Logs, f.Token)
			p.Eval(ctx, doneToStreamScript, []string{q.StatusKey(f.ID), q.TaskLogsKey(f.ID)}, f.Done, retention)
			q.noteRecent(ctx, p, f.ID, f.Raw, true)
		}
		flush()
		if n := q.logsMaxLen(); n > 0 {
			p.LTrim(ctx, q.opt.Names.Logs, -n, -1)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: publish %d messages: %w", len(msgs), err)
	}
	applied := make([]bool, len(msgs))
	for _, r := range runs {
		flags, err := r.cmd.Text()
		if err != nil {
			return nil, fmt.Errorf("queue: publish output lines: %w", err)
		}
		for j := range len(flags) {
			applied[r.first+j] = flags[j] == '1'
		}
	}
	for i := range msgs {
		if finishes[i] == nil {
			continue
		}
		n, err := finishes[i].Int()
		if err != nil {
			return nil, fmt.Errorf("queue: publish the done of %q: %w", msgs[i].Finish.ID, err)
		}
		applied[i] = n != 0
	}
	return applied, nil
}

// TakeControl implements queue.Controls for the shared control list.
// Anyone who may send a kill may push there, so, as with tasks, a message
// is measured in Redis before it is read (takeControlScript) and the wait
// is Take's (its own watch: the two loops wait on different lists).
func (q *Queue) TakeControl(ctx context.Context) (*queue.ControlDelivery, error) {
	var c *queue.ControlDelivery
	keys := []string{q.opt.Names.Control, q.controlTaken(q.opt.ExecutorID)}
	err := q.block(ctx, q.ctlWatch, func() []string { return keys[:1] }, func() (bool, error) {
		res, err := takeControlScript.Run(ctx, q.rdb, keys, task.MaxControlBytes).Slice()
		if errors.Is(err, redis.Nil) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("queue: take from %q: %w", q.opt.Names.Control, err)
		}
		switch {
		case len(res) == 2 && res[0] == "ok":
			raw, _ := res[1].(string)
			c = &queue.ControlDelivery{Raw: []byte(raw)}
		case len(res) == 2 && res[0] == "oversized":
			n, _ := res[1].(int64)
			c = &queue.ControlDelivery{Size: int(n)}
		default:
			return false, fmt.Errorf("queue: take from %q: unexpected reply %v", q.opt.Names.Control, res)
		}
		return true, nil
	})
	return c, err
}

// TakeForwarded returns the next kill another executor routed to this one.
// Only executors push there (the client ACL in examples/redis grants no
// access to it), and only messages TakeControl measured, so a plain
// blocking pop is safe.
func (q *Queue) TakeForwarded(ctx context.Context) (*queue.ControlDelivery, error) {
	res, err := q.rdb.BLPop(ctx, BlockTimeout, q.forwarded(q.opt.ExecutorID)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("queue: take forwarded control: %w", err)
	}
	return &queue.ControlDelivery{Raw: []byte(res[1]), Forwarded: true}, nil
}

// AckControl implements queue.Controls.
func (q *Queue) AckControl(ctx context.Context, c *queue.ControlDelivery) error {
	if c.Forwarded || c.Size > 0 {
		return nil // BLPOP, or the script for an oversized one, removed it
	}
	if err := q.rdb.LRem(ctx, q.controlTaken(q.opt.ExecutorID), 1, c.Raw).Err(); err != nil {
		return fmt.Errorf("queue: ack control: %w", err)
	}
	return nil
}

// RouteKill implements queue.Controls.
func (q *Queue) RouteKill(ctx context.Context, id string) (queue.Route, error) {
	res, err := routeKillScript.Run(ctx, q.rdb, []string{q.StatusKey(id), q.key("kills-ahead")}, now(),
		strconv.FormatInt(q.opt.Retention.Milliseconds(), 10), id, q.opt.MaxKillsAhead).StringSlice()
	if err != nil || len(res) != 2 {
		return queue.Route{}, fmt.Errorf("queue: route kill for %q: %w", id, err)
	}
	switch res[0] {
	case "running":
		return queue.Route{Executor: res[1]}, nil
	case "queued":
		return queue.Route{Queued: true}, nil
	default:
		return queue.Route{Ended: task.State(res[1])}, nil
	}
}

// Forward implements queue.Controls.
func (q *Queue) Forward(ctx context.Context, executor string, raw []byte) error {
	if err := q.rdb.RPush(ctx, q.forwarded(executor), raw).Err(); err != nil {
		return fmt.Errorf("queue: forward control to %s: %w", executor, err)
	}
	return nil
}

// RemoveQueued implements queue.Controls with a bounded scan of every
// list a queued task can wait in: the task list, the tube lists the live
// executors serve, and the executors' assigned lists (where a dispatcher
// put it). Each scan runs in Redis (findQueuedScript), a page at a time,
// and returns only a message that is within max_task_bytes and contains
// the id, so a list holding huge messages is never read whole. A message
// it misses (an id written with JSON escapes, a tube nobody serves) is
// still cancelled, when it is taken: the kill is remembered (RouteKill).
//
// A dispatcher may move the task on while the lists are scanned, from the
// task list to a tube's list or an executor's, and that list may not have
// existed when they were named: after a miss the lists are named again and
// the new ones scanned, until no new one appears (bounded). The scan goes
// the way tasks move (task list, tubes, assigned lists), so a task moving
// on between existing lists is met further along.
func (q *Queue) RemoveQueued(ctx context.Context, id string, f func(raw []byte) *queue.Finish) (bool, error) {
	scanned := map[string]bool{}
	for range 4 {
		lists, err := q.waitingLists(ctx)
		if err != nil {
			return false, err
		}
		fresh := false
		for _, list := range lists {
			if scanned[list] {
				continue
			}
			scanned[list], fresh = true, true
			if q.beforeScan != nil {
				q.beforeScan(list)
			}
			if removed, err := q.removeFrom(ctx, list, id, f); removed || err != nil {
				return removed, err
			}
		}
		if !fresh {
			break
		}
	}
	return false, nil
}

// waitingLists names the lists a task can wait in, the task list first:
// every tube's list (TubeStates, served or not: a killed task must not
// wait for a server to get its done) and the executors' assigned lists.
func (q *Queue) waitingLists(ctx context.Context) ([]string, error) {
	tubes, err := q.TubeStates(ctx)
	if err != nil {
		return nil, err
	}
	execs, err := q.rdb.SMembers(ctx, q.ExecutorsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("queue: list the executors: %w", err)
	}
	lists := []string{q.opt.Names.Tasks}
	for _, t := range tubes {
		if t.Key != q.opt.Names.Tasks {
			lists = append(lists, t.Key)
		}
	}
	sort.Strings(execs)
	for _, e := range execs {
		lists = append(lists, q.AssignedKey(e))
	}
	return lists, nil
}

// removeFrom finds id's message in list and, if found, ends it with f's
// finish and takes it out, in one step.
func (q *Queue) removeFrom(ctx context.Context, list, id string, f func(raw []byte) *queue.Finish) (bool, error) {
	const page = 500
	for start := 0; start < q.opt.ScanLimit; {
		res, err := findQueuedScript.Run(ctx, q.rdb, []string{list}, id, q.opt.MaxTaskBytes, start, page).Slice()
		if err != nil {
			return false, fmt.Errorf("queue: scan %q: %w", list, err)
		}
		if len(res) < 2 {
			return false, nil // the end of the list
		}
		next, _ := res[1].(int64)
		start = int(next)
		if len(res) < 3 {
			continue // nothing in that page
		}
		it, _ := res[2].(string)
		if got, _ := task.PeekID([]byte(it)); got != id {
			continue
		}
		fin := f([]byte(it))
		n, err := finishScript.Run(ctx, q.rdb,
			[]string{q.StatusKey(id), q.opt.Names.Logs, list},
			string(fin.State), fin.Done, it, strconv.FormatInt(q.opt.Retention.Milliseconds(), 10),
			q.opt.ExecutorID, "0", now(), "1", q.opt.Names.Logs, "").Int()
		if err != nil {
			return false, fmt.Errorf("queue: remove queued %q: %w", id, err)
		}
		if n == 1 {
			q.noteRecent(ctx, q.rdb, id, []byte(it), true)
		}
		return n == 1, nil
	}
	return false, nil
}

// Join implements queue.Membership. Joining again from the same process
// is a no-op, so a caller may check the identity early (before it touches
// anything on the host) and the executor join again when it starts.
func (q *Queue) Join(ctx context.Context) error {
	deadline := time.Now().Add(2 * q.opt.TTL)
	ttl := strconv.FormatInt(q.opt.TTL.Milliseconds(), 10)
	waiting := false
	for {
		holder, err := joinScript.Run(ctx, q.rdb, []string{q.liveness(q.opt.ExecutorID)}, q.holder, ttl).Text()
		if err != nil {
			return fmt.Errorf("queue: register executor %q: %w", q.opt.ExecutorID, err)
		}
		if holder == "" {
			return q.rdb.SAdd(ctx, q.key("executors"), q.opt.ExecutorID).Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: executor id %q is held on this Redis by %s; give each executor its own executor_id",
				queue.ErrIdentityTaken, q.opt.ExecutorID, holder)
		}
		if !waiting && q.opt.Logger != nil {
			q.opt.Logger.Warn("executor id is held on this Redis; waiting up to two TTLs for it to expire (a previous run that died)",
				"executor_id", q.opt.ExecutorID, "holder", holder, "wait", 2*q.opt.TTL)
		}
		waiting = true
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(q.opt.TTL / 5):
		}
	}
}

// Heartbeat implements queue.Membership.
func (q *Queue) Heartbeat(ctx context.Context) error {
	res, err := heartbeatScript.Run(ctx, q.rdb, []string{q.liveness(q.opt.ExecutorID), q.key("executors")},
		q.holder, strconv.FormatInt(q.opt.TTL.Milliseconds(), 10), q.opt.ExecutorID).Result()
	if err != nil {
		return fmt.Errorf("queue: heartbeat: %w", err)
	}
	switch v := res.(type) {
	case int64:
		if v == 0 {
			return queue.ErrLivenessLost
		}
		return nil
	case string:
		return fmt.Errorf("%w: executor id %q is now held by %s", queue.ErrIdentityTaken, q.opt.ExecutorID, v)
	}
	return fmt.Errorf("queue: heartbeat: unexpected reply %v", res)
}

// Owned implements queue.Membership with one MULTI: the recovery lock and
// every claim's status, read together. While a peer holds the lock for
// recovering this executor, the answer would not be final: it returns
// queue.ErrRecovering and the caller asks again.
func (q *Queue) Owned(ctx context.Context, claims map[string]string) (map[string]bool, error) {
	var lock *redis.IntCmd
	cmds := map[string]*redis.SliceCmd{}
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		lock = p.Exists(ctx, q.key("recovering", q.opt.ExecutorID))
		for id := range claims {
			cmds[id] = p.HMGet(ctx, q.StatusKey(id), "state", "executor", "token")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: check this executor's claims: %w", err)
	}
	if lock.Val() == 1 {
		return nil, queue.ErrRecovering
	}
	out := make(map[string]bool, len(claims))
	for id, token := range claims {
		v := cmds[id].Val()
		if len(v) != 3 || v[0] == nil {
			// No record at all: Redis lost it (no persistence); no peer
			// reported the task, so it stays this executor's.
			out[id] = true
			continue
		}
		out[id] = v[0] == string(task.Running) && v[1] == q.opt.ExecutorID && v[2] == token
	}
	return out, nil
}

// Leave implements queue.Membership.
func (q *Queue) Leave(ctx context.Context) error {
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SRem(ctx, q.key("executors"), q.opt.ExecutorID)
		p.Del(ctx, q.liveness(q.opt.ExecutorID), q.forwarded(q.opt.ExecutorID))
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: leave: %w", err)
	}
	return nil
}

// Executors implements queue.Membership.
func (q *Queue) Executors(ctx context.Context) (map[string]bool, error) {
	ids, err := q.rdb.SMembers(ctx, q.key("executors")).Result()
	if err != nil {
		return nil, fmt.Errorf("queue: list executors: %w", err)
	}
	cmds := make([]*redis.IntCmd, len(ids))
	_, err = q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Exists(ctx, q.liveness(id))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: check executors: %w", err)
	}
	out := make(map[string]bool, len(ids))
	for i, id := range ids {
		out[id] = cmds[i].Val() == 1
	}
	return out, nil
}

// Recover implements queue.Membership.
func (q *Queue) Recover(ctx context.Context, dead string) (queue.Recovered, error) {
	var r queue.Recovered
	lock := q.key("recovering", dead)
	ok, err := q.rdb.SetNX(ctx, lock, q.opt.ExecutorID, time.Minute).Result()
	if err != nil || !ok {
		return r, err // another executor is on it
	}
	defer q.rdb.Del(context.WithoutCancel(ctx), lock)
	if dead != q.opt.ExecutorID {
		if alive, err := q.rdb.Exists(ctx, q.liveness(dead)).Result(); err != nil || alive == 1 {
			return r, err // it came back
		}
	}
	raws, err := q.rdb.LRange(ctx, q.processing(dead), 0, -1).Result()
	if err != nil {
		return r, fmt.Errorf("queue: recover %s: %w", dead, err)
	}
	retention := strconv.FormatInt(q.opt.Retention.Milliseconds(), 10)
	for _, raw := range raws {
		id, typ := task.PeekID([]byte(raw))
		statusKey := q.key("status-unreadable")
		if id != "" {
			statusKey = q.StatusKey(id)
		}
		lost := task.LostDone(id, typ, dead, q.opt.ExecutorID, time.Now())
		res, err := recoverScript.Run(ctx, q.rdb,
			[]string{statusKey, q.opt.Names.Logs, q.processing(dead), q.requeueKey([]byte(raw))},
			raw, dead, lost, retention, q.opt.ExecutorID, now(), q.opt.Names.Logs).Text()
		if err != nil {
			return r, fmt.Errorf("queue: recover %s: %w", dead, err)
		}
		switch res {
		case "lost":
			r.Lost++
		case "requeued":
			r.Requeued++
		}
	}
	for {
		err := q.rdb.LMove(ctx, q.controlTaken(dead), q.opt.Names.Control, "LEFT", "LEFT").Err()
		if errors.Is(err, redis.Nil) {
			break
		}
		if err != nil {
			return r, fmt.Errorf("queue: recover %s controls: %w", dead, err)
		}
		r.Controls++
	}
	if dead != q.opt.ExecutorID {
		_, err = q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.SRem(ctx, q.key("executors"), dead)
			p.Del(ctx, q.forwarded(dead))
			return nil
		})
	}
	return r, err
}

// Status implements queue.Statuses.
func (q *Queue) Status(ctx context.Context, id string) (*queue.Status, error) {
	h, err := q.rdb.HGetAll(ctx, q.StatusKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("queue: status of %q: %w", id, err)
	}
	if len(h) == 0 {
		return nil, nil
	}
	st := task.State(h["state"])
	if h["state"] == "cancelled" || h["state"] == "" {
		st = task.Queued // a kill waits for it, or only a dispatcher's note is there
	}
	return &queue.Status{ID: id, State: st, Executor: h["executor"], Updated: h["updated"], Waiting: h["waiting"], Done: []byte(h["done"])}, nil
}
