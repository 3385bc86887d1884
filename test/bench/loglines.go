package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/taskjob/task-job/executor"
	"github.com/taskjob/task-job/task"
)

// rawBatch is the baseline's lines per RPUSH, the batching FACTS measured.
const rawBatch = 256

// lineRun is what a consumer saw of one chatty task.
type lineRun struct {
	lines   int           // stdout lines received
	elapsed time.Duration // first RPUSH → done in hand
}

func (r lineRun) perSec() float64 { return float64(r.lines) / r.elapsed.Seconds() }

// taskJobLines runs `seq 1 n` as one task and times RPUSH → done, checking
// that every line arrived, once, in order.
func (b *bench) taskJobLines(ctx context.Context, n int) (lineRun, error) {
	// The per-task output caps are for tasks gone wrong; this one is
	// meant to flood.
	ex, err := b.startExecutor("lines", 1, b.runner, func(o *executor.Options) {
		o.MaxOutputRate, o.MaxOutputMessages, o.MaxOutputBytes = 1<<30, 1<<30, 1<<40
	})
	if err != nil {
		return lineRun{}, err
	}
	col := b.collect(ex.names.Logs)
	defer col.stop()
	defer ex.stop()

	const id = "lines-0"
	t0 := time.Now()
	if err := b.submit(ctx, ex.names.Tasks, id, chattyScript, strconv.Itoa(n)); err != nil {
		return lineRun{}, err
	}
	done, at, lines, err := verifyLines(col, id, n)
	if err != nil {
		return lineRun{}, err
	}
	if err := checkSucceeded(done); err != nil {
		return lineRun{}, err
	}
	if done.OutputDropped > 0 {
		return lineRun{}, fmt.Errorf("the executor dropped %d output bytes (output cap)", done.OutputDropped)
	}
	return lineRun{lines: lines, elapsed: at.Sub(t0)}, nil
}

// rawLines is the ceiling of log shipping through Redis: the same number
// of TaskLog-shaped lines, built before the clock starts, pushed in
// multi-value RPUSHes of rawBatch, then a done, read by the same consumer.
func (b *bench) rawLines(ctx context.Context, n int) (lineRun, error) {
	const id = "lines-raw"
	list := names("lines-raw").Logs
	at := time.Now()
	batches := make([][]any, 0, n/rawBatch+1)
	for i := 1; i <= n; i += rawBatch {
		bt := make([]any, 0, rawBatch)
		for j := i; j < min(i+rawBatch, n+1); j++ {
			data := strconv.AppendInt(nil, int64(j), 10)
			bt = append(bt, string(task.AppendLine(nil, id, "bench", "", task.MsgStdout, "bench-raw", uint64(j), at, data)))
		}
		batches = append(batches, bt)
	}
	done := (&task.Log{ID: id, Type: "bench", MsgType: task.MsgDone, Seq: uint64(n + 1), Time: at.Format(task.TimeFormat),
		Result: &task.Result{Status: task.Succeeded, Reason: "exited 0"}}).Marshal()

	col := b.collect(list)
	defer col.stop()
	pushed := make(chan error, 1)
	t0 := time.Now()
	go func() {
		for _, bt := range batches {
			if err := b.rdb.RPush(ctx, list, bt...).Err(); err != nil {
				pushed <- err
				return
			}
		}
		pushed <- b.rdb.RPush(ctx, list, done).Err()
	}()
	_, doneAt, lines, err := verifyLines(col, id, n)
	if err != nil {
		return lineRun{}, err
	}
	if err := <-pushed; err != nil {
		return lineRun{}, err
	}
	return lineRun{lines: lines, elapsed: doneAt.Sub(t0)}, nil
}

// verifyLines reads id's messages up to its done. The stdout lines must be
// 1..n exactly, in order, with increasing sequence numbers; anything lost,
// repeated or reordered is an error, since a fast but lossy pipe is no use.
func verifyLines(col *collector, id string, n int) (done task.Log, at time.Time, lines int, err error) {
	deadline := time.After(2*time.Minute + time.Duration(n)*10*time.Microsecond)
	var lastSeq uint64
	for {
		bt, err := col.next(deadline)
		if err != nil {
			return done, at, lines, fmt.Errorf("after %d of %d lines: %w", lines, n, err)
		}
		for _, raw := range bt.vals {
			var l task.Log
			if err := json.Unmarshal([]byte(raw), &l); err != nil {
				return done, at, lines, fmt.Errorf("malformed TaskLog %q: %w", raw, err)
			}
			if l.ID != id {
				return done, at, lines, fmt.Errorf("message of task %q while reading %q", l.ID, id)
			}
			if l.Seq <= lastSeq {
				return done, at, lines, fmt.Errorf("sequence %d after %d: reordered or repeated", l.Seq, lastSeq)
			}
			lastSeq = l.Seq
			switch l.MsgType {
			case task.MsgDone:
				if lines != n {
					return l, bt.at, lines, fmt.Errorf("done after %d of %d lines", lines, n)
				}
				return l, bt.at, lines, nil
			case task.MsgStdout:
				v, err := strconv.Atoi(l.Data)
				if err != nil || v != lines+1 {
					return done, at, lines, fmt.Errorf("line %d reads %q: lost or out of order", lines+1, l.Data)
				}
				lines++
			default:
				return done, at, lines, fmt.Errorf("unexpected %s message: %q", l.MsgType, l.Data)
			}
		}
	}
}
