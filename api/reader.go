package api

import (
	"context"
	"net/http"
	"time"

	"github.com/taskjob/task-job/queue"
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
// status and its log stream, and whoami. The rest (lists, writes, the
// page, metrics) read or write Redis keys, and answer 404 saying so.
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
	api("GET /api/v1/tasks/{id}", s.getTask)
	api("GET /api/v1/tasks/{id}/logs", s.taskLogs)
	api("GET /api/v1/whoami", func(w http.ResponseWriter, r *http.Request, id *Identity) {
		writeJSON(w, http.StatusOK, map[string]any{"name": id.Name, "role": id.Role.String(), "tubes": id.Tubes})
	})
	s.handlePublic("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint on this transport: %s %s (over Kafka the management server serves GET /api/v1/tasks/{id} and its /logs only; README, Kafka section)", r.Method, r.URL.Path)
	}))
}

// readerTask is a task's view from its status: what the transport's
// status records hold (no message fields, no tube).
func (s *Server) readerTask(ctx context.Context, id string) (*TaskView, error) {
	st, err := s.reader.Status(ctx, id)
	if err != nil || st == nil {
		return nil, err
	}
	return &TaskView{ID: st.ID, State: st.State, Executor: st.Executor, Updated: st.Updated, Done: st.Done}, nil
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
