package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/task"
)

const (
	// warmup iterations are run and thrown away before each latency series:
	// the first runs pay for cold page caches and fresh connections.
	warmup = 5
	// gap separates one-at-a-time submissions, so each task finds its
	// consumer idle and blocked, as a task that arrives on its own does,
	// instead of racing the previous task's clean-up.
	gap = 5 * time.Millisecond
	// taskTimeout bounds the wait for one task's done.
	taskTimeout = 30 * time.Second
)

// latencies are the rows 1 and 2 figures for task-job.
type latencies struct {
	dispatch samples // RPUSH → the task's first instruction
	done     samples // RPUSH → its done in the consumer's hands
}

// taskJobLatency submits tasks one at a time to an executor with one slot.
func (b *bench) taskJobLatency(ctx context.Context, v variant, iters int) (latencies, error) {
	var res latencies
	ex, err := b.startExecutor("latency"+v.suffix, 1, v.runner)
	if err != nil {
		return res, err
	}
	col := b.collect(ex.names.Logs)
	defer col.stop()
	defer ex.stop()

	if res.dispatch, err = b.dispatchSeries(ctx, ex, col, "dispatch"+v.suffix, iters); err != nil {
		return res, err
	}

	for i := -warmup; i < iters; i++ {
		id := fmt.Sprintf("done%s-%d", v.suffix, i)
		t0 := time.Now()
		if err := b.submit(ctx, ex.names.Tasks, id, trueScript); err != nil {
			return res, err
		}
		_, at, err := col.waitDone(id, taskTimeout)
		if err != nil {
			return res, err
		}
		if i >= 0 {
			res.done = append(res.done, at.Sub(t0))
		}
		time.Sleep(gap)
	}
	return res, nil
}

// dispatchSeries submits stamp to ex's task list one at a time, gap
// apart, and returns RPUSH → its first instruction for each.
func (b *bench) dispatchSeries(ctx context.Context, ex *runningExecutor, col *collector, prefix string, iters int) (samples, error) {
	var s samples
	for i := -warmup; i < iters; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		t0 := time.Now()
		if err := b.submit(ctx, ex.names.Tasks, id, stampProgram); err != nil {
			return nil, err
		}
		msgs, _, err := col.waitDone(id, taskTimeout)
		if err != nil {
			return nil, err
		}
		stamp, err := stampOf(msgs)
		if err != nil {
			return nil, err
		}
		if i >= 0 {
			s = append(s, time.Duration(stamp-t0.UnixNano()))
		}
		time.Sleep(gap)
	}
	return s, nil
}

// stampOf returns the time stamp in the task's first stdout line.
func stampOf(msgs []task.Log) (int64, error) {
	for _, l := range msgs {
		if l.MsgType == task.MsgStdout {
			return strconv.ParseInt(strings.TrimSpace(l.Data), 10, 64)
		}
	}
	return 0, fmt.Errorf("stamp printed nothing: %d messages", len(msgs))
}

// rawExecStamp is the floor of dispatch: a plain fork/exec of the same
// program, from just before Start to the stamp it prints.
func (b *bench) rawExecStamp(iters int) (samples, error) {
	var s samples
	for i := -warmup; i < iters; i++ {
		var out bytes.Buffer
		cmd := exec.Command(b.path(stampProgram))
		cmd.Env, cmd.Dir, cmd.Stdout = taskEnv, b.cmdDir, &out
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		if err := cmd.Wait(); err != nil {
			return nil, err
		}
		stamp, err := strconv.ParseInt(strings.TrimSpace(out.String()), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("stamp printed %q: %w", out.String(), err)
		}
		if i >= 0 {
			s = append(s, time.Duration(stamp-t0.UnixNano()))
		}
		time.Sleep(gap)
	}
	return s, nil
}

// blpopWake is the floor of any Redis-driven dispatch: a client blocked in
// BLPOP, woken by another client's RPUSH.
func (b *bench) blpopWake(ctx context.Context, iters int) (samples, error) {
	const list = "bench:wake"
	waiter := redis.NewClient(&redis.Options{Addr: b.redis.addr, PoolSize: 1})
	defer waiter.Close()
	conn := waiter.Conn()
	defer conn.Close()
	// The waiter's connection id lets the pusher see, in CLIENT LIST, that
	// the waiter really is blocked before it pushes: otherwise some samples
	// would time a pop of an already-waiting element.
	cid, err := conn.ClientID(ctx).Result()
	if err != nil {
		return nil, err
	}

	woke := make(chan time.Duration)
	failed := make(chan error, 1)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for wctx.Err() == nil {
			res, err := conn.BLPop(wctx, time.Second, list).Result()
			at := time.Now()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				if wctx.Err() == nil {
					failed <- err
				}
				return
			}
			t0, _ := strconv.ParseInt(res[1], 10, 64)
			woke <- at.Sub(time.Unix(0, t0))
		}
	}()

	var s samples
	for i := -warmup; i < iters; i++ {
		if err := waitBlocked(ctx, b.rdb, cid); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if err := b.rdb.RPush(ctx, list, t0.UnixNano()).Err(); err != nil {
			return nil, err
		}
		select {
		case d := <-woke:
			if i >= 0 {
				s = append(s, d)
			}
		case err := <-failed:
			return nil, err
		case <-time.After(taskTimeout):
			return nil, errors.New("BLPOP waiter never woke")
		}
		time.Sleep(gap)
	}
	return s, nil
}

// waitBlocked polls until connection cid is blocked in a command.
func waitBlocked(ctx context.Context, rdb *redis.Client, cid int64) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		line, err := rdb.Do(ctx, "CLIENT", "LIST", "ID", cid).Text()
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(line) {
			if flags, ok := strings.CutPrefix(f, "flags="); ok && strings.Contains(flags, "b") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("BLPOP waiter is not blocked: %s", line)
		}
		time.Sleep(100 * time.Microsecond) // blocking takes one round trip
	}
}

// bareLoopDone is the floor of RPUSH → done: the least a Redis job runner
// can do — BLMOVE the task into a processing list, exec the script, RPUSH a
// done, drop the task from the processing list — with none of task-job's
// checks, claims, sandbox or bookkeeping.
func (b *bench) bareLoopDone(ctx context.Context, iters int) (samples, error) {
	n := names("bare")
	processing := n.Tasks + ":processing"
	col := b.collect(n.Logs)
	defer col.stop()

	lctx, stop := context.WithCancel(ctx)
	loopDone := make(chan error, 1)
	go func() { loopDone <- b.bareLoop(lctx, n.Tasks, processing, n.Logs) }()
	defer func() { stop(); <-loopDone }()

	var s samples
	for i := -warmup; i < iters; i++ {
		id := fmt.Sprintf("bare-%d", i)
		t0 := time.Now()
		if err := b.submit(ctx, n.Tasks, id, trueScript); err != nil {
			return nil, err
		}
		_, at, err := col.waitDone(id, taskTimeout)
		if err != nil {
			return nil, err
		}
		if i >= 0 {
			s = append(s, at.Sub(t0))
		}
		time.Sleep(gap)
	}
	return s, nil
}

func (b *bench) bareLoop(ctx context.Context, tasks, processing, logs string) error {
	rdb := redis.NewClient(&redis.Options{Addr: b.redis.addr, PoolSize: 2})
	defer rdb.Close()
	for ctx.Err() == nil {
		raw, err := rdb.BLMove(ctx, tasks, processing, "LEFT", "RIGHT", time.Second).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var t task.Task
		if err := json.Unmarshal([]byte(raw), &t); err != nil {
			return err
		}
		cmd := exec.Command(b.path(trueScript))
		cmd.Env, cmd.Dir = taskEnv, b.cmdDir
		started := time.Now()
		res := &task.Result{Status: task.Succeeded, Reason: "exited 0"}
		if err := cmd.Run(); err != nil {
			res.Status, res.ExitCode, res.Reason = task.Failed, -1, err.Error()
			if cmd.ProcessState != nil {
				res.ExitCode = cmd.ProcessState.ExitCode()
			}
		}
		res.DurationMS = time.Since(started).Milliseconds()
		done := task.Log{ID: t.ID, Type: t.Type, MsgType: task.MsgDone, Time: time.Now().UTC().Format(task.TimeFormat), Result: res}
		if err := rdb.RPush(ctx, logs, done.Marshal()).Err(); err != nil {
			return err
		}
		if err := rdb.LRem(ctx, processing, 1, raw).Err(); err != nil {
			return err
		}
	}
	return nil
}
