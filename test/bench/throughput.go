package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskjob/task-job/executor"
	"github.com/taskjob/task-job/task"
)

// pushChunk is how many tasks one pipelined round trip submits when
// flooding: the client side must not be what limits the rate.
const pushChunk = 500

// taskJobThroughput floods n trivial tasks at an executor with the given
// number of slots and returns tasks per second, from the first RPUSH to the
// last done in the consumer's hands. Every id must be done exactly once.
func (b *bench) taskJobThroughput(ctx context.Context, v variant, concurrency, n int) (float64, error) {
	phase := fmt.Sprintf("flood-c%d%s", concurrency, v.suffix)
	var configure []func(*executor.Options)
	if v.configure != nil {
		configure = append(configure, v.configure)
	}
	encode := func(id string) string { return taskJSON(id, trueScript, nil) }
	if v.encode != nil {
		encode = v.encode
	}
	ex, err := b.startExecutor(phase, concurrency, v.runner, configure...)
	if err != nil {
		return 0, err
	}
	col := b.collect(ex.names.Logs)
	defer col.stop()
	defer ex.stop()

	// Messages are encoded (and signed) before the clock starts: that is
	// the clients' work, not the executor's.
	msgs := make([]string, n)
	pending := make(map[string]bool, n)
	for i := range msgs {
		id := fmt.Sprintf("%s-%d", phase, i)
		msgs[i] = encode(id)
		pending[id] = true
	}

	t0 := time.Now()
	for start := 0; start < n; start += pushChunk {
		pipe := b.rdb.Pipeline()
		for _, m := range msgs[start:min(start+pushChunk, n)] {
			pipe.RPush(ctx, ex.names.Tasks, m)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, err
		}
	}

	// Generous: a tenth of the raw exec rate measured here would still pass.
	last, err := waitAllDone(col, pending, time.Minute+time.Duration(n)*10*time.Millisecond)
	if err != nil {
		return 0, err
	}
	return float64(n) / last.Sub(t0).Seconds(), nil
}

// waitAllDone reads col until every pending id has its done, once and
// succeeded, and returns when the last was in hand.
func waitAllDone(col *collector, pending map[string]bool, timeout time.Duration) (time.Time, error) {
	n := len(pending)
	deadline := time.After(timeout)
	var last time.Time
	for len(pending) > 0 {
		bt, err := col.next(deadline)
		if err != nil {
			return last, fmt.Errorf("%d of %d tasks never reported done: %w", len(pending), n, err)
		}
		for _, raw := range bt.vals {
			var l task.Log
			if err := json.Unmarshal([]byte(raw), &l); err != nil {
				return last, fmt.Errorf("malformed TaskLog %q: %w", raw, err)
			}
			if l.MsgType != task.MsgDone {
				continue // true.sh prints nothing, but a stray line is no error
			}
			if !pending[l.ID] {
				return last, fmt.Errorf("a done for %q that was not pending (a second done, or an unknown id)", l.ID)
			}
			if err := checkSucceeded(l); err != nil {
				return last, err
			}
			delete(pending, l.ID)
		}
		last = bt.at
	}
	return last, nil
}

// rawThroughput runs the same script n times with plain exec.Command.Run on
// the given number of goroutines: the most any runner could manage here.
func (b *bench) rawThroughput(concurrency, n int) (float64, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, concurrency)
	t0 := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				cmd := exec.Command(b.path(trueScript))
				cmd.Env, cmd.Dir = taskEnv, b.cmdDir
				if err := cmd.Run(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return float64(n) / elapsed.Seconds(), nil
}

// bareThroughput floods n tasks at `concurrency` bare loops (BLMOVE → exec →
// RPUSH done, see bareLoop) and returns tasks per second until the last done:
// what a Redis-driven runner with no checks, claims or sandbox reaches on the
// same cores, which Redis and the consumer share with the tasks.
func (b *bench) bareThroughput(ctx context.Context, concurrency, n int) (float64, error) {
	nm := names(fmt.Sprintf("bare-flood-c%d", concurrency))
	col := b.collect(nm.Logs)
	defer col.stop()
	lctx, stop := context.WithCancel(ctx)
	errs := make(chan error, concurrency)
	for i := range concurrency {
		go func() { errs <- b.bareLoop(lctx, nm.Tasks, fmt.Sprintf("%s:processing:%d", nm.Tasks, i), nm.Logs) }()
	}
	defer func() {
		stop()
		for range concurrency {
			<-errs
		}
	}()
	t0 := time.Now()
	for start := 0; start < n; start += pushChunk {
		pipe := b.rdb.Pipeline()
		for i := start; i < min(start+pushChunk, n); i++ {
			pipe.RPush(ctx, nm.Tasks, taskJSON(fmt.Sprintf("bare-%d", i), trueScript, nil))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, err
		}
	}
	deadline := time.After(time.Minute + time.Duration(n)*10*time.Millisecond)
	var last time.Time
	for got := 0; got < n; {
		bt, err := col.next(deadline)
		if err != nil {
			return 0, fmt.Errorf("bare loop: %d of %d dones: %w", got, n, err)
		}
		got += len(bt.vals)
		last = bt.at
	}
	return float64(n) / last.Sub(t0).Seconds(), nil
}
