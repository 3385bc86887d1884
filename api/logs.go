package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
)

// sseHeartbeat keeps idle streams (and the proxies between) open.
const sseHeartbeat = 15 * time.Second

// sse writes Server-Sent Events.
type sse struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func startSSE(w http.ResponseWriter) *sse {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, rc: http.NewResponseController(w)}
	fmt.Fprint(w, "retry: 1000\n\n")
	_ = s.rc.Flush()
	return s
}

// event writes one event; id 0 writes none (a lost task's done has no seq).
func (s *sse) event(id uint64, name string, data []byte) error {
	if id > 0 {
		fmt.Fprintf(s.w, "id: %d\n", id)
	}
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", name, data); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s *sse) ping() error {
	if _, err := fmt.Fprint(s.w, ": ping\n\n"); err != nil {
		return err
	}
	return s.rc.Flush()
}

// logLine is the part of a TaskLog a stream needs.
type logLine struct {
	ID      string `json:"id"`
	MsgType string `json:"msg_type"`
	Seq     uint64 `json:"seq"`
}

// taskLogs is GET /api/v1/tasks/{id}/logs: the task's messages as events
// named stdout, stderr and done, each with id = its seq. A client that
// reconnects with Last-Event-ID (or ?after=SEQ) gets only what came after:
// nothing lost, nothing repeated. The stream ends after the done; asked
// again after it, the answer is 204, which tells an EventSource to stop.
func (s *Server) taskLogs(w http.ResponseWriter, r *http.Request, id *Identity) {
	taskID := r.PathValue("id")
	if err := checkID(taskID); err != nil {
		s.fail(w, err)
		return
	}
	var after uint64
	if v := r.Header.Get("Last-Event-ID"); v != "" || r.URL.Query().Get("after") != "" {
		if v == "" {
			v = r.URL.Query().Get("after")
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			s.fail(w, errorf(http.StatusBadRequest, "Last-Event-ID %q: want the seq of the last message received", v))
			return
		}
		after = n
	}
	ctx := r.Context()
	// Watch first, then read what is already there: a message published in
	// between arrives both ways, and seq drops the repeat.
	var wt *watcher
	if s.reader == nil {
		if wt = s.hub.watch(taskID); wt == nil {
			s.fail(w, errorf(http.StatusServiceUnavailable, "the logs feed is not subscribed yet (Redis unreachable?); try again"))
			return
		}
		defer s.hub.unwatch(taskID, wt)
	}
	v, err := s.Task(ctx, taskID)
	if err != nil {
		s.fail(w, err)
		return
	}
	if v != nil && !id.CanSee(v.Tube) || v == nil && id.Tubes != nil {
		s.fail(w, errorf(http.StatusNotFound, "no task %q known", taskID))
		return
	}
	ended := v != nil && v.State.Terminal() && len(v.Done) > 0
	if ended {
		var d logLine
		_ = json.Unmarshal(v.Done, &d)
		if d.Seq > 0 && d.Seq <= after {
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	// The task's earlier messages come from its own log stream (the one
	// task-job logs reads), not the shared logs list: that list is
	// trimmed at logs_max_len, so a busy deployment would lose a long
	// task's first lines, and reading it costs every task's lines.
	// The stream's headers go out with the first message, so that a
	// failed first read is still answered with an error status.
	var out *sse
	emit := func(raw []byte) (done bool, err error) {
		var l logLine
		if json.Unmarshal(raw, &l) != nil || l.ID != taskID {
			return false, nil
		}
		if l.Seq != 0 && l.Seq <= after {
			return false, nil
		}
		if l.Seq != 0 {
			after = l.Seq
		}
		name := l.MsgType
		if name != task.MsgStdout && name != task.MsgStderr && name != task.MsgDone {
			name = "message"
		}
		return l.MsgType == task.MsgDone, out.event(l.Seq, name, raw)
	}
	stop := false
	fromHistory := func(raw []byte) bool {
		if out == nil {
			out = startSSE(w)
		}
		done, err := emit(raw)
		stop = done || err != nil
		return !stop
	}
	cursor, err := s.historyFrom(ctx, taskID, "", fromHistory)
	if err != nil && out == nil {
		s.fail(w, err)
		return
	}
	if err != nil || stop {
		return
	}
	if out == nil {
		out = startSSE(w)
	}
	if ended {
		// The done was read before the stream, so every line before it
		// is in what was just sent; the done itself is not in the stream
		// when a peer reported the task lost.
		_, _ = emit(v.Done)
		return
	}
	if s.reader != nil {
		s.followLogs(ctx, out, taskID, cursor, fromHistory, func() bool { return stop }, emit)
		return
	}
	beat := time.NewTicker(sseHeartbeat)
	defer beat.Stop()
	poll := time.NewTicker(2 * time.Second)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wt.closed:
			return // fell behind, or the feed was re-subscribed: the client resumes
		case raw := <-wt.ch:
			if done, err := emit(raw); done || err != nil {
				return
			}
		case <-beat.C:
			if out.ping() != nil {
				return
			}
		case <-poll.C:
			// A done the feed did not bring (published while the feed
			// was re-subscribing, or not yet here: the feed lags the
			// task) still ends the stream, but only after every line
			// before it. The task's log stream has them all: what it
			// holds past the first read is sent (seq drops what the
			// feed brought meanwhile), then the done.
			if v, err := s.Task(ctx, taskID); err == nil && v != nil && v.State.Terminal() && len(v.Done) > 0 {
				if _, err := s.historyFrom(ctx, taskID, cursor, fromHistory); err != nil || stop {
					return
				}
				_, _ = emit(v.Done)
				return
			}
		}
	}
}

// history calls each with the task's messages so far, in order, from its
// log stream, a page at a time, until each returns false.
func (s *Server) history(ctx context.Context, taskID string, each func(raw []byte) bool) error {
	_, err := s.historyFrom(ctx, taskID, "", each)
	return err
}

// historyFrom is history from after the stream cursor from ("" = the
// start); it returns the cursor to go on from.
func (s *Server) historyFrom(ctx context.Context, taskID, from string, each func(raw []byte) bool) (string, error) {
	for {
		var b queue.LogBatch
		var err error
		if s.reader != nil {
			b, err = s.reader.ReadLogs(ctx, taskID, from, 0)
		} else {
			b, err = s.q.ReadLogs(ctx, taskID, from, 0)
		}
		if err != nil {
			return from, err
		}
		for _, m := range b.Messages {
			if !each(m) {
				return from, nil
			}
		}
		if b.Next == from || b.Next == "" {
			return from, nil
		}
		from = b.Next
	}
}

// events is GET /api/v1/events: task state changes, as events named task
// carrying the task's view — when it is claimed (from the recent index,
// looked at every second) and when it ends (from the logs feed). Ends are
// gathered for up to eventsCoalesce and their views read in one pipeline:
// at a flood of short tasks a round trip per done is what an open page
// cost the executors sharing the Redis, and a page loses nothing by
// seeing a batch 50 ms late.
func (s *Server) events(w http.ResponseWriter, r *http.Request, id *Identity) {
	ctx := r.Context()
	wt := s.hub.watch("")
	if wt == nil {
		s.fail(w, errorf(http.StatusServiceUnavailable, "the logs feed is not subscribed yet (Redis unreachable?); try again"))
		return
	}
	defer s.hub.unwatch("", wt)
	since := time.Now().UnixMilli()
	out := startSSE(w)
	send := func(v *TaskView) error {
		if v == nil || !id.CanSee(v.Tube) {
			return nil
		}
		b, _ := json.Marshal(v)
		return out.event(0, "task", b)
	}
	var (
		ended []string
		seen  = map[string]bool{}
		flush <-chan time.Time
	)
	sendEnded := func() error {
		vs, err := s.Tasks(ctx, ended)
		ended, flush = ended[:0], nil
		clear(seen)
		if err != nil {
			return nil // the next state change or a reload shows it
		}
		for _, v := range vs {
			if err := send(v); err != nil {
				return err
			}
		}
		return nil
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	beat := time.NewTicker(sseHeartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wt.closed:
			return
		case raw := <-wt.ch:
			tid, _ := task.PeekID(raw)
			if tid == "" || seen[tid] {
				continue
			}
			seen[tid] = true
			ended = append(ended, tid)
			if flush == nil {
				flush = time.After(eventsCoalesce)
			}
			if len(ended) >= eventsBatch && sendEnded() != nil {
				return
			}
		case <-flush:
			if sendEnded() != nil {
				return
			}
		case <-tick.C:
			if s.newClaims(ctx, &since, send) != nil {
				return
			}
		case <-beat.C:
			if out.ping() != nil {
				return
			}
		}
	}
}

// eventsCoalesce and eventsBatch bound how long and how many task ends the
// events stream gathers before it reads their views.
const (
	eventsCoalesce = 50 * time.Millisecond
	eventsBatch    = 256
)

// newClaims sends the tasks claimed since *since and moves it on.
func (s *Server) newClaims(ctx context.Context, since *int64, send func(*TaskView) error) error {
	zs, err := s.rdb.ZRangeByScoreWithScores(ctx, s.q.RecentKey(), &redis.ZRangeBy{Min: strconv.FormatInt(*since, 10), Max: "+inf", Count: 500}).Result()
	if err != nil || len(zs) == 0 {
		return nil
	}
	ids := make([]string, len(zs))
	scores := make([]int64, len(zs))
	for i, z := range zs {
		ids[i], _ = z.Member.(string)
		scores[i] = int64(z.Score)
		*since = max(*since, scores[i]+1)
	}
	vs, err := s.loadTasks(ctx, ids, scores)
	if err != nil {
		return nil
	}
	for _, v := range vs {
		if err := send(v); err != nil {
			return err
		}
	}
	return nil
}
