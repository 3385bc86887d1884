package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/taskjob/task-job/task"
)

// Waiting commands (submit -wait, logs -f) say what they wait for once it
// takes a while, and again whenever that changes, so that a task no
// executor takes is not a silent hang.
var (
	noticeAfter = 5 * time.Second
	// readBlock is how long one read of a task's log stream waits; the
	// status is looked at between reads, for dones that only it holds (a
	// task reported lost, a queued task cancelled).
	readBlock = time.Second
)

// Parts of a running task's description that a follower adjusts: output
// it has printed makes the first untrue, and the second is why a wait
// gone quiet after output is worth a word.
const (
	noOutputYet    = "; no output so far (output is shipped only when the executor's config has \"logs\": true)"
	runnerNotAlive = ", which is not alive"
)

// runnerGone says what becomes of a running task whose executor is not
// alive, given how many executors are.
func runnerGone(alive int) string {
	if alive == 0 {
		return runnerNotAlive + ", nor is any other executor: the task is reported lost when one starts"
	}
	return runnerNotAlive + ": a peer will report the task lost"
}

// follower prints one task's messages from its log stream.
type follower struct {
	c              *client
	cmd, id        string
	timeout        time.Duration
	timeoutFlag    string
	json           bool
	stdout, stderr io.Writer

	next       string // stream position
	lastSeq    uint64
	lines      int // output lines printed
	lastOutput time.Time
	lastNotice string
}

// describe is describeTask, less what the lines printed have made untrue.
func (f *follower) describe(ctx context.Context) string {
	d := f.c.describeTask(ctx, f.id)
	if f.lines > 0 {
		d = strings.Replace(d, noOutputYet, "", 1)
	}
	return d
}

// run prints what the task's stream holds, then (wait) follows it to the
// done. The exit code is the task's (0 succeeded, 1 not), or 3 when the
// wait timed out, 1 when Redis was lost, 130 on a signal.
func (f *follower) run(ctx context.Context, wait bool) int {
	start := time.Now()
	lastStatus := time.Time{}
	for {
		block := time.Duration(0)
		if wait {
			block = readBlock
		}
		b, err := f.c.tr.ReadLogs(ctx, f.id, f.next, block)
		if err != nil {
			return f.lost(ctx, err)
		}
		f.next = b.Next
		for _, m := range b.Messages {
			if done, code := f.print(m); done {
				return code
			}
		}
		if len(b.Messages) > 0 && wait && time.Since(lastStatus) < time.Second {
			continue // output is flowing: read on
		}
		lastStatus = time.Now()
		st, err := f.c.tr.Status(ctx, f.id)
		if err != nil {
			return f.lost(ctx, err)
		}
		if st != nil && st.State.Terminal() && len(st.Done) > 0 {
			// Its lines all came before its done: read what is left, then
			// the done (which the stream may not hold, e.g. for a task
			// reported lost).
			rest, err := f.c.tr.ReadLogs(ctx, f.id, f.next, 0)
			if err != nil {
				return f.lost(ctx, err)
			}
			for _, m := range append(rest.Messages, st.Done) {
				if done, code := f.print(m); done {
					return code
				}
			}
			return exitFailed // a done that does not parse
		}
		if !wait {
			if st == nil && f.lines == 0 {
				fmt.Fprintf(f.stderr, "task-job %s: no output: %s\n", f.cmd, f.c.describeTask(ctx, f.id))
				return exitFailed
			}
			return exitOK
		}
		if ctx.Err() != nil {
			return exitSignal
		}
		waited := time.Since(start)
		if f.timeout > 0 && waited >= f.timeout {
			fmt.Fprintf(f.stderr, "task-job %s: gave up after %s (%s): %s\n", f.cmd, f.timeout, f.timeoutFlag, f.describe(ctx))
			return exitTimeout
		}
		// Before any output, say where the task is; after some, a quiet
		// task is its own business unless its executor is gone.
		if waited >= noticeAfter && (f.lines == 0 || time.Since(f.lastOutput) >= noticeAfter) {
			if d := f.describe(ctx); d != f.lastNotice && (f.lines == 0 || strings.Contains(d, runnerNotAlive)) {
				fmt.Fprintf(f.stderr, "task-job %s: still waiting: %s\n", f.cmd, d)
				f.lastNotice = d
			}
		}
	}
}

// print prints one message of the task; done reports its done.
func (f *follower) print(raw []byte) (done bool, code int) {
	var l task.Log
	if json.Unmarshal(raw, &l) != nil || l.ID != f.id {
		return false, 0
	}
	if f.json {
		if l.Seq != 0 && l.Seq <= f.lastSeq {
			return false, 0
		}
		if l.Seq != 0 {
			f.lastSeq = l.Seq
		}
		fmt.Fprintln(f.stdout, string(raw))
		if l.MsgType != task.MsgDone {
			f.lines++
			f.lastOutput = time.Now()
			return false, 0
		}
		return true, doneCode(&l)
	}
	before := f.lastSeq
	done, code = printLine(raw, f.id, &f.lastSeq, f.stdout, f.stderr)
	if !done && (l.Seq == 0 || l.Seq > before) && (l.MsgType == task.MsgStdout || l.MsgType == task.MsgStderr) {
		f.lines++
		f.lastOutput = time.Now()
	}
	if done && f.lines == 0 && l.Result != nil && l.OutputBytes > 0 {
		fmt.Fprintf(f.stderr, "note: the task wrote %d bytes of output, but none was shipped: the executor's config has \"logs\": false "+
			"(the default); set \"logs\": true there to see output here\n", l.OutputBytes)
	}
	return done, code
}

func doneCode(l *task.Log) int {
	if l.Result != nil && l.Status == task.Succeeded {
		return exitOK
	}
	return exitFailed
}

// lost reports a failed read: a signal, or Redis gone.
func (f *follower) lost(ctx context.Context, err error) int {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return exitSignal
	}
	fmt.Fprintf(f.stderr, "task-job %s: %v\n  the task may still run: look later with task-job status %s\n", f.cmd, f.c.redisError(err), f.id)
	return exitFailed
}

// describeState says in words where a task is, for people waiting on it.
func (c *client) describeState(ctx context.Context, id string) string {
	if c.kq != nil {
		return c.describeKafka(ctx, id)
	}
	h, err := c.rdb.HMGet(ctx, c.q.StatusKey(id), "state", "executor").Result()
	if err != nil {
		return "its state cannot be read: " + c.redisError(err).Error()
	}
	state, _ := h[0].(string)
	executor, _ := h[1].(string)
	alive, total := c.executorsAlive(ctx)
	switch state {
	case "", string(task.Queued):
		if s, ok := c.describeWaiting(ctx, id, alive, total); ok {
			return s
		}
		queued, _ := c.rdb.LLen(ctx, c.cfg.QueueName).Result()
		tasks := fmt.Sprintf("%d tasks wait", queued)
		if queued == 1 {
			tasks = "1 task waits"
		}
		where := "has not been taken by an executor (not submitted, still queued, or ended more than status_retention ago)"
		if at, err := c.q.SubmittedAt(ctx, id); err == nil && !at.IsZero() {
			where = "was submitted and has not been taken by an executor yet"
		}
		s := fmt.Sprintf("%s; %s in %s; %d of %d executors alive", where, tasks, c.cfg.QueueName, alive, total)
		if alive == 0 {
			s += ": none serves this queue; start one with task-job -config=FILE (its queue_name must be " + c.cfg.QueueName + ")"
		}
		return s
	case "cancelled":
		return "was cancelled by a kill before it ran"
	case string(task.Running):
		s := "is running on executor " + executor
		if live, err := c.q.Executors(ctx); err == nil && !live[executor] {
			s += runnerGone(alive)
		}
		return s + noOutputYet
	}
	return "ended: " + state
}

// describeWaiting says, for a task found in a task list, which list and
// who serves it: a tube that no live executor serves is why it waits.
func (c *client) describeWaiting(ctx context.Context, id string, alive, total int) (string, bool) {
	tubes, err := c.q.TubeStates(ctx)
	if err != nil {
		return "", false
	}
	tube, pos, found, err := c.q.FindQueued(ctx, id, tubes)
	if err != nil || !found {
		return "", false
	}
	list := "the untubed list " + c.q.TubeKey("")
	if tube != "" {
		list = fmt.Sprintf("tube %q (list %s)", tube, c.q.TubeKey(tube))
	}
	ahead := fmt.Sprintf("%d tasks ahead of it", pos)
	if pos == 1 {
		ahead = "1 task ahead of it"
	}
	var servers []string
	for _, ts := range tubes {
		if ts.Tube == tube {
			servers = ts.Servers
		}
	}
	if tube == "" && (alive == 0 || len(servers) > 0) {
		return "", false // the general answer says it
	}
	s := fmt.Sprintf("waits in %s, %s; %d of %d executors alive", list, ahead, alive, total)
	switch {
	case len(servers) > 0:
		return s + fmt.Sprintf("; served by %s", strings.Join(servers, ", ")), true
	case tube == "":
		return s + `: no live executor serves the untubed list: start one whose "tubes" include "" (the default)`, true
	}
	return s + fmt.Sprintf(`: no live executor serves tube %q, so it waits: start one whose config lists it in "tubes"`, tube), true
}

// describeTask is "task "ID" " followed by describeState.
func (c *client) describeTask(ctx context.Context, id string) string {
	return fmt.Sprintf("task %q %s", id, c.describeState(ctx, id))
}

func (c *client) executorsAlive(ctx context.Context) (alive, total int) {
	live, err := c.q.Executors(ctx)
	if err != nil {
		return 0, 0
	}
	for _, ok := range live {
		if ok {
			alive++
		}
	}
	return alive, len(live)
}

// describeKafka is describeState over Kafka: the status topic says whether
// an executor claimed the task; a task record still waiting in the tasks
// topic cannot be found by its id, only counted (the executors' group's
// records not committed yet).
func (c *client) describeKafka(ctx context.Context, id string) string {
	state, executor, err := c.kq.State(ctx, id)
	if err != nil {
		return "its state cannot be read: " + c.redisError(err).Error()
	}
	live, _ := c.kq.Executors(ctx)
	alive := 0
	for _, ok := range live {
		if ok {
			alive++
		}
	}
	topic := c.kq.Topics().Tasks
	switch state {
	case "":
		s := "has not been claimed by an executor (not submitted, still waiting in the topic " + topic +
			", or ended more than status_retention ago: over Kafka a waiting task cannot be looked up by its id)"
		if n, err := c.kq.Waiting(ctx); err == nil {
			tasks := fmt.Sprintf("%d tasks wait", n)
			if n == 1 {
				tasks = "1 task waits"
			}
			s += fmt.Sprintf("; %s in %s", tasks, topic)
		}
		s += fmt.Sprintf("; %d of %d executors alive", alive, len(live))
		if alive == 0 {
			s += ": none serves this queue; start one with task-job -config=FILE (its queue_name must be " + c.cfg.QueueName + ")"
		}
		return s
	case "cancelled":
		return "was cancelled by a kill before it ran (its record, if it comes, ends as killed when an executor reaches it)"
	case string(task.Running):
		s := "is running on executor " + executor
		if !live[executor] {
			s += runnerGone(alive)
		}
		return s + noOutputYet
	}
	return "ended: " + state
}
