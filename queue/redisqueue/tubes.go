package redisqueue

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/task"
)

// Tubes. A tube is a task list of its own, Q:tube:<tube>, that clients
// RPUSH tasks with that "tube" to; "" names the untubed list Q. An
// executor serves the tubes of Options.Tubes, in that order: it takes from
// a list only while those before it are empty. A task with a tube that was
// pushed to the untubed list is moved to its tube's list by whichever
// executor serving the untubed list looks at it first (takeScript), so
// clients that do not route still reach the right executors, as long as
// one serves the untubed list.
//
// Who serves what is kept, for status, in the hash Q:tubes (executor →
// JSON list of tubes), written by Take; liveness comes from the executor
// keys as for everything else.

// announceEvery is how often Take writes the tubes it serves again (Redis
// may have restarted without persistence).
const announceEvery = 30 * time.Second

// TubeKey is the key of tube's task list ("" is the untubed list).
func (q *Queue) TubeKey(tube string) string {
	if tube == "" {
		return q.opt.Names.Tasks
	}
	return q.tubePrefix() + tube
}

func (q *Queue) tubePrefix() string { return q.opt.Names.Tasks + ":tube:" }

func (q *Queue) tubesKey() string { return q.key("tubes") }

// takeKeys are the lists Take serves, in order.
func (q *Queue) takeKeys() []string {
	if q.opt.Dispatched {
		return []string{q.AssignedKey(q.opt.ExecutorID)}
	}
	keys := make([]string, len(q.opt.Tubes))
	for i, t := range q.opt.Tubes {
		keys[i] = q.TubeKey(t)
	}
	return keys
}

func (q *Queue) describeLists() string {
	return fmt.Sprintf("%q", q.takeKeys())
}

// validTube is the rule of task.Validate and config.ValidTube, repeated
// here (and in takeScript) so that this package needs neither.
func validTube(t string) bool {
	if t == "" || len(t) > 128 {
		return false
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.:", r)) {
			return false
		}
	}
	return true
}

// requeueKey is where a task message that goes back to be taken again
// belongs: its tube's list, or the untubed list.
func (q *Queue) requeueKey(raw []byte) string {
	var t struct {
		Tube string `json:"tube"`
	}
	if json.Unmarshal(raw, &t) == nil && validTube(t.Tube) {
		return q.TubeKey(t.Tube)
	}
	return q.opt.Names.Tasks
}

// announceTubes records, at most every announceEvery, which tubes this
// executor serves. A failure is left to the next take.
func (q *Queue) announceTubes(ctx context.Context) {
	if q.opt.ExecutorID == "" {
		return
	}
	now := time.Now().UnixNano()
	last := q.announced.Load()
	if last != 0 && time.Duration(now-last) < announceEvery {
		return
	}
	if !q.announced.CompareAndSwap(last, now) {
		return
	}
	b, _ := json.Marshal(q.opt.Tubes)
	if err := q.rdb.HSet(ctx, q.tubesKey(), q.opt.ExecutorID, b).Err(); err != nil {
		q.announced.Store(0)
	}
}

// TubeState is what status says about one task list.
type TubeState struct {
	Tube    string `json:"tube"` // "" for the untubed list
	Key     string `json:"key"`
	Waiting int64  `json:"waiting"`
	// Servers are the live executors that serve it.
	Servers []string `json:"servers"`
}

// TubeStates lists the untubed list, every tube a registered executor
// serves and every tube list that exists, with how many tasks wait in each
// and which live executors serve it.
func (q *Queue) TubeStates(ctx context.Context) ([]TubeState, error) {
	live, err := q.Executors(ctx)
	if err != nil {
		return nil, err
	}
	served, err := q.rdb.HGetAll(ctx, q.tubesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("queue: read who serves which tube: %w", err)
	}
	servers := map[string][]string{"": nil}
	for ex, js := range served {
		var tubes []string
		if json.Unmarshal([]byte(js), &tubes) != nil {
			continue
		}
		if _, registered := live[ex]; !registered {
			// Left or recovered: forget it.
			q.rdb.HDel(ctx, q.tubesKey(), ex)
			continue
		}
		for _, t := range tubes {
			if _, ok := servers[t]; !ok {
				servers[t] = nil
			}
			if live[ex] {
				servers[t] = append(servers[t], ex)
			}
		}
	}
	pattern := escapeGlob(q.tubePrefix()) + "*"
	iter, err := q.scan(ctx, pattern)
	if err != nil {
		return nil, fmt.Errorf("queue: list tube lists: %w", err)
	}
	for iter.Next(ctx) {
		t := strings.TrimPrefix(iter.Val(), q.tubePrefix())
		if _, ok := servers[t]; !ok {
			servers[t] = nil
		}
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("queue: list tube lists: %w", err)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for t := range servers {
			if !yield(t) {
				return
			}
		}
	})
	lens := make([]*redis.IntCmd, len(names))
	_, err = q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, t := range names {
			lens[i] = p.LLen(ctx, q.TubeKey(t))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: count waiting tasks: %w", err)
	}
	out := make([]TubeState, len(names))
	for i, t := range names {
		s := servers[t]
		slices.Sort(s)
		out[i] = TubeState{Tube: t, Key: q.TubeKey(t), Waiting: lens[i].Val(), Servers: s}
	}
	return out, nil
}

// FindQueued looks for id among the first ScanLimit tasks of each list of
// tubes and returns the tube that holds it and its position (0 = next).
func (q *Queue) FindQueued(ctx context.Context, id string, tubes []TubeState) (tube string, pos int, found bool, err error) {
	for _, ts := range tubes {
		items, err := q.rdb.LRange(ctx, ts.Key, 0, int64(q.opt.ScanLimit-1)).Result()
		if err != nil {
			return "", 0, false, fmt.Errorf("queue: scan %q: %w", ts.Key, err)
		}
		for i, it := range items {
			if got, _ := task.PeekID([]byte(it)); got == id {
				return ts.Tube, i, true, nil
			}
		}
	}
	return "", 0, false, nil
}

func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
