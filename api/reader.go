package api

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
)

// TaskReader is what the read-only endpoints need from a transport that
// has no Redis keys (a *kafkaqueue.Client): a task's status as the
// executors agree on it, and its messages from a position.
type TaskReader interface {
	Status(ctx context.Context, id string) (*queue.Status, error)
	ReadLogs(ctx context.Context, id, from string, block time.Duration) (queue.LogBatch, error)
}

// readerPoll is how often an open log stream reads its task's messages
// when there is no feed to wake it.
const readerPoll = 500 * time.Millisecond

// readerRoutes are the endpoints served over a TaskReader: one task's
// status and its log stream, the task list when it is a TaskLister, and
// whoami. The rest (queues, executors, writes, the page, metrics) read or
// write Redis keys, and answer 404 saying so.
func (s *Server) readerRoutes() {
	s.mux = http.NewServeMux()
	api := func(pattern string, h func(w http.ResponseWriter, r *http.Request, id *Identity)) {
		s.handle(pattern, RoleRead, false, func(w http.ResponseWriter, r *http.Request, id *Identity) {
			// The status topic does not record a task's tube, so a token
			// limited to tubes could not be kept to them.
			if id.Tubes != nil {
				writeError(w, http.StatusForbidden, "token %q is limited to tubes, which this transport cannot check (its status has no tube); use a token for all tubes", id.Name)
				return
			}
			h(w, r, id)
		})
	}
	if l, ok := s.reader.(TaskLister); ok {
		api("GET /api/v1/tasks", s.readerList(l))
	}
	api("GET /api/v1/tasks/{id}", s.getTask)
	api("GET /api/v1/tasks/{id}/logs", s.taskLogs)
	api("GET /api/v1/whoami", func(w http.ResponseWriter, r *http.Request, id *Identity) {
		writeJSON(w, http.StatusOK, map[string]any{"name": id.Name, "role": id.Role.String(), "tubes": id.Tubes})
	})
	s.handlePublic("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint on this transport: %s %s (over Kafka the management server serves GET /api/v1/tasks, /api/v1/tasks/{id} and its /logs only; README, Kafka section)", r.Method, r.URL.Path)
	}))
}

// readerTask is a task's view from its status: what the transport's
// status records hold (no message fields, no tube).
func (s *Server) readerTask(ctx context.Context, id string) (*TaskView, error) {
	st, err := s.reader.Status(ctx, id)
	if err != nil || st == nil {
		return nil, err
	}
	return readerView(st), nil
}

// readerView is the view of a status; Updated in the Redis views' form.
func readerView(st *queue.Status) *TaskView {
	ms, _ := strconv.ParseInt(st.Updated, 10, 64)
	return &TaskView{ID: st.ID, State: st.State, Executor: st.Executor, Updated: msTime(ms), Done: st.Done}
}

// TaskLister is a TaskReader that can also list every task its status
// holds (kafkaqueue.Client.List).
type TaskLister interface {
	List(ctx context.Context) ([]queue.Status, error)
}

// readerList is GET /api/v1/tasks over a TaskLister.
func (s *Server) readerList(lister TaskLister) func(w http.ResponseWriter, r *http.Request, id *Identity) {
	return func(w http.ResponseWriter, r *http.Request, id *Identity) {
		f, err := parseTaskFilter(r.URL.Query())
		if err != nil {
			s.fail(w, err)
			return
		}
		list, err := listStatuses(r.Context(), lister, f)
		if err != nil {
			s.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, list)
	}
}

// listStatuses lists what a TaskLister holds: newest change first, the
// filters the status holds (state, executor, since, until), paged by a
// cursor "updated-ms:id" past the last one sent.
func listStatuses(ctx context.Context, lister TaskLister, f TaskFilter) (*TaskList, error) {
	if f.Tube != "" || f.Rule != "" || f.KeyID != "" {
		return nil, errorf(http.StatusBadRequest, "tube, rule and key cannot be filtered on this transport: its status does not record them")
	}
	if f.State == string(task.Queued) {
		return nil, errorf(http.StatusBadRequest, "state=queued cannot be listed on this transport: a task waiting in its topic is not looked up by id (README, Kafka section)")
	}
	var after struct {
		ms int64
		id string
	}
	if f.Cursor != "" {
		ms, rest, ok := strings.Cut(f.Cursor, ":")
		n, err := strconv.ParseInt(ms, 10, 64)
		if !ok || err != nil {
			return nil, errorf(http.StatusBadRequest, "cursor=%q: not one this server gave", f.Cursor)
		}
		after.ms, after.id = n, rest
	}
	all, err := lister.List(ctx)
	if err != nil {
		return nil, err
	}
	type entry struct {
		ms int64
		st *queue.Status
	}
	var es []entry
	for i := range all {
		st := &all[i]
		ms, _ := strconv.ParseInt(st.Updated, 10, 64)
		at := time.UnixMilli(ms)
		if f.State != "" && string(st.State) != f.State || f.Executor != "" && st.Executor != f.Executor ||
			!f.Since.IsZero() && at.Before(f.Since) || !f.Until.IsZero() && at.After(f.Until) {
			continue
		}
		if f.Cursor != "" && (ms > after.ms || ms == after.ms && st.ID <= after.id) {
			continue
		}
		es = append(es, entry{ms, st})
	}
	slices.SortFunc(es, func(a, b entry) int {
		if a.ms != b.ms {
			return cmp.Compare(b.ms, a.ms)
		}
		return strings.Compare(a.st.ID, b.st.ID)
	})
	list := &TaskList{Tasks: []*TaskView{}}
	for i, e := range es {
		if i == f.Limit {
			last := es[i-1]
			list.Next = fmt.Sprintf("%d:%s", last.ms, last.st.ID)
			break
		}
		list.Tasks = append(list.Tasks, readerView(e.st))
	}
	return list, nil
}

// followLogs goes on with a log stream after its history, reading the
// task's messages every readerPoll from cursor until emit has sent the
// done (stopped reports it), the client goes, or the status shows an end
// whose done the messages do not hold (it is then sent last).
func (s *Server) followLogs(ctx context.Context, out *sse, taskID, cursor string, each func([]byte) bool, stopped func() bool,
	emit func([]byte) (bool, error)) {
	beat := time.NewTicker(sseHeartbeat)
	defer beat.Stop()
	poll := time.NewTicker(readerPoll)
	defer poll.Stop()
	checks := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			if out.ping() != nil {
				return
			}
			continue
		case <-poll.C:
		}
		// The status is read before the messages: a done it shows is in
		// the messages read after, unless it never reached them.
		var ended *TaskView
		if checks++; checks%4 == 0 {
			if v, err := s.Task(ctx, taskID); err == nil && v != nil && v.State.Terminal() && len(v.Done) > 0 {
				ended = v
			}
		}
		next, err := s.historyFrom(ctx, taskID, cursor, each)
		if err != nil || stopped() {
			return
		}
		cursor = next
		if ended != nil {
			_, _ = emit(ended.Done)
			return
		}
	}
}
