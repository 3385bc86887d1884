package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/task"
)

// popBatch is how many messages one LPOP takes. A client reading a million
// lines one BLPOP at a time would be the bottleneck, not task-job.
const popBatch = 4096

// batch is what one pop returned and when it returned it: the time a
// consumer actually had the messages in hand.
type batch struct {
	vals []string
	at   time.Time
}

// collector drains one list as fast as it can, concurrently with whatever
// fills it. It takes everything queued with LPOP COUNT and, only when the
// list is empty, blocks in BLPOP so that it wakes as soon as the next
// message arrives (which is what the latency rows time).
type collector struct {
	out    chan batch
	cancel context.CancelFunc
	done   chan struct{}
}

func (b *bench) collect(list string) *collector {
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{out: make(chan batch, 4096), cancel: cancel, done: make(chan struct{})}
	// Its own client: the blocking pop holds a connection.
	rdb := redis.NewClient(&redis.Options{Addr: b.redis.addr, PoolSize: 1, MaxRetries: -1})
	go func() {
		defer close(c.done)
		defer rdb.Close()
		var lastErr string
		for ctx.Err() == nil {
			vals, err := rdb.LPopCount(ctx, list, popBatch).Result()
			if errors.Is(err, redis.Nil) {
				var res []string
				res, err = rdb.BLPop(ctx, time.Second, list).Result()
				if errors.Is(err, redis.Nil) {
					continue // a second went by with nothing: block again
				}
				if err == nil {
					vals = res[1:]
				}
			}
			if err != nil {
				if ctx.Err() == nil && err.Error() != lastErr {
					fmt.Fprintf(os.Stderr, "bench: reading %s: %v\n", list, err)
					lastErr = err.Error()
				}
				time.Sleep(10 * time.Millisecond) // do not spin on a broken connection
				continue
			}
			select {
			case c.out <- batch{vals: vals, at: time.Now()}:
			case <-ctx.Done():
			}
		}
	}()
	return c
}

// stop ends the collector and waits for it.
func (c *collector) stop() {
	c.cancel()
	<-c.done
}

// next returns the next batch, or an error once deadline passes.
func (c *collector) next(deadline <-chan time.Time) (batch, error) {
	select {
	case bt := <-c.out:
		return bt, nil
	case <-deadline:
		return batch{}, errors.New("timed out waiting for TaskLog messages")
	}
}

// waitDone reads messages until the done of id, and returns id's messages
// (the done last) and when the done was in hand. Only one task is in flight
// in the sequential measurements, so any other id is a bug worth stopping for.
func (c *collector) waitDone(id string, timeout time.Duration) ([]task.Log, time.Time, error) {
	deadline := time.After(timeout)
	var msgs []task.Log
	for {
		bt, err := c.next(deadline)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("task %s: %w", id, err)
		}
		for _, raw := range bt.vals {
			var l task.Log
			if err := json.Unmarshal([]byte(raw), &l); err != nil {
				return nil, time.Time{}, fmt.Errorf("malformed TaskLog %q: %w", raw, err)
			}
			if l.ID != id {
				return nil, time.Time{}, fmt.Errorf("message of task %q while waiting for %q: %s", l.ID, id, raw)
			}
			msgs = append(msgs, l)
			if l.MsgType == task.MsgDone {
				return msgs, bt.at, checkSucceeded(l)
			}
		}
	}
}

// checkSucceeded fails unless the done says the task ran and exited 0: a
// benchmark of tasks that were refused or failed would time the wrong thing.
func checkSucceeded(done task.Log) error {
	if done.Result == nil || done.Status != task.Succeeded {
		return fmt.Errorf("task %s did not succeed: %s", done.ID, done.Marshal())
	}
	return nil
}
