package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/policy"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/task"
)

// TaskView is what the API says about one task: its status record, the
// fields of its message, and its done once it has ended.
type TaskView struct {
	ID       string     `json:"id"`
	State    task.State `json:"state"`
	Executor string     `json:"executor,omitempty"`
	// Claimed is when an executor took it; Updated the last state change.
	Claimed string   `json:"claimed,omitempty"`
	Updated string   `json:"updated,omitempty"`
	Type    string   `json:"type"`
	Tube    string   `json:"tube"`
	Cmdline string   `json:"cmdline,omitempty"`
	Args    []string `json:"cmd_args,omitempty"`
	Timeout float64  `json:"timeout,omitempty"`
	KeyID   string   `json:"key_id,omitempty"`
	Rule    string   `json:"rule,omitempty"`
	// Env is what the rule added to the task's environment, "NAME=value",
	// as the executor recorded it when the task started: the value of a
	// name that looks secret, or that the rule lists in secret_env, is
	// policy.Masked (it was masked before it reached Redis).
	Env     []string `json:"env,omitempty"`
	RetryOf string   `json:"retry_of,omitempty"`
	// Waiting is why a dispatcher has not assigned the task yet (while
	// it is queued).
	Waiting string `json:"waiting,omitempty"`
	// Done is the done message, as published.
	Done json.RawMessage `json:"done,omitempty"`

	result *task.Result
	signed bool
}

// Result is the done's result, for the page.
func (v *TaskView) Result() *task.Result {
	if v.result == nil && len(v.Done) > 0 {
		var l task.Log
		if json.Unmarshal(v.Done, &l) == nil {
			v.result = l.Result
		}
	}
	return v.result
}

// TaskList is a page of tasks, newest first. Next continues it ("" = the
// end).
type TaskList struct {
	Tasks []*TaskView `json:"tasks"`
	Next  string      `json:"next,omitempty"`
}

// TaskFilter selects tasks for a list. Empty fields select everything.
type TaskFilter struct {
	State, Tube, Rule, KeyID, Executor string
	Since, Until                       time.Time
	Limit                              int
	Cursor                             string
}

func (f *TaskFilter) match(v *TaskView) bool {
	return (f.State == "" || string(v.State) == f.State) &&
		(f.Tube == "" || v.Tube == f.Tube || f.Tube == "-" && v.Tube == "") &&
		(f.Rule == "" || v.Rule == f.Rule) &&
		(f.KeyID == "" || v.KeyID == f.KeyID) &&
		(f.Executor == "" || v.Executor == f.Executor)
}

// ParseTaskFilter reads a filter from a query string (state, tube, rule,
// key, executor, since, until, limit, cursor): GET /api/v1/tasks's, and
// task-job ps's flags.
func ParseTaskFilter(q map[string][]string) (TaskFilter, error) { return parseTaskFilter(q) }

func parseTaskFilter(q map[string][]string) (TaskFilter, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	f := TaskFilter{State: get("state"), Tube: get("tube"), Rule: get("rule"), KeyID: get("key"), Executor: get("executor"), Cursor: get("cursor"), Limit: 50}
	if f.State != "" && !task.State(f.State).Valid() {
		return f, errorf(http.StatusBadRequest, "state=%q: want queued, running, succeeded, failed, timeout, killed, lost or rejected", f.State)
	}
	if l := get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return f, errorf(http.StatusBadRequest, "limit=%q: want 1 to 1000", l)
		}
		f.Limit = n
	}
	now := time.Now()
	var err error
	if f.Since, err = parseWhen(get("since"), now); err != nil {
		return f, errorf(http.StatusBadRequest, "since: %v", err)
	}
	if f.Until, err = parseWhen(get("until"), now); err != nil {
		return f, errorf(http.StatusBadRequest, "until: %v", err)
	}
	return f, nil
}

// parseWhen reads an RFC 3339 time or a duration back from now ("1h").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, errors.New("want an RFC 3339 time (2026-11-24T00:00:00Z) or a duration back from now (24h)")
	}
	return t, nil
}

// cursor is a position in the recent index: entries older than Score, or
// as old and sorting before ID.
type cursor struct {
	Score int64
	ID    string
}

func (c cursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.Score, 10) + "\x00" + c.ID))
}

func decodeCursor(s string) (cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		if sc, id, ok := strings.Cut(string(b), "\x00"); ok {
			if n, err := strconv.ParseInt(sc, 10, 64); err == nil {
				return cursor{Score: n, ID: id}, nil
			}
		}
	}
	return cursor{}, errorf(http.StatusBadRequest, "bad cursor: pass back the \"next\" of the previous page unchanged")
}

// ListTasks is GET /api/v1/tasks: the recent index newest first, filtered,
// one page. It reads at most scanMax index entries per page, so a filter
// that matches little returns a short page with a cursor to go on.
func (s *Server) ListTasks(ctx context.Context, f TaskFilter, id *Identity) (*TaskList, error) {
	if s.reader != nil {
		l, ok := s.reader.(TaskLister)
		if !ok {
			return nil, errorf(http.StatusNotFound, "this transport cannot list tasks")
		}
		return listStatuses(ctx, l, f)
	}
	if f.State == string(task.Queued) {
		return s.listQueued(ctx, f, id)
	}
	const batch, scanMax = 200, 5000
	maxS, minS := "+inf", "-inf"
	if !f.Until.IsZero() {
		maxS = "(" + strconv.FormatInt(f.Until.UnixMilli(), 10)
	}
	if !f.Since.IsZero() {
		minS = strconv.FormatInt(f.Since.UnixMilli(), 10)
	}
	var after *cursor
	if f.Cursor != "" {
		c, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, err
		}
		after = &c
		if maxS == "+inf" || c.Score < f.Until.UnixMilli() {
			maxS = strconv.FormatInt(c.Score, 10)
		}
	}
	out := &TaskList{Tasks: []*TaskView{}}
	var last cursor
	scanned := 0
	for offset := int64(0); scanned < scanMax; offset += batch {
		zs, err := s.rdb.ZRevRangeByScoreWithScores(ctx, s.q.RecentKey(), &redis.ZRangeBy{Max: maxS, Min: minS, Offset: offset, Count: batch}).Result()
		if err != nil {
			return nil, err
		}
		ids := make([]string, 0, len(zs))
		scores := make([]int64, 0, len(zs))
		for _, z := range zs {
			m, _ := z.Member.(string)
			sc := int64(z.Score)
			if after != nil && sc == after.Score && m >= after.ID {
				continue // on the previous page
			}
			ids, scores = append(ids, m), append(scores, sc)
		}
		views, err := s.loadTasks(ctx, ids, scores)
		if err != nil {
			return nil, err
		}
		for i, v := range views {
			scanned++
			last = cursor{Score: scores[i], ID: ids[i]}
			if v == nil || !f.match(v) || !id.CanSee(v.Tube) {
				continue
			}
			out.Tasks = append(out.Tasks, v)
			if len(out.Tasks) == f.Limit {
				out.Next = last.encode()
				return out, nil
			}
		}
		if len(zs) < batch {
			return out, nil
		}
	}
	out.Next = last.encode()
	return out, nil
}

// loadTasks reads the views of ids in one round trip; an id whose status
// has expired gets nil.
func (s *Server) loadTasks(ctx context.Context, ids []string, scores []int64) ([]*TaskView, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	type cmds struct {
		st       *redis.MapStringStringCmd
		raw, rof *redis.StringCmd
	}
	cs := make([]cmds, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cs[i] = cmds{p.HGetAll(ctx, s.q.StatusKey(id)), p.Get(ctx, s.q.TaskKey(id)), p.Get(ctx, s.q.RetryOfKey(id))}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]*TaskView, len(ids))
	for i, id := range ids {
		var sc int64
		if scores != nil {
			sc = scores[i]
		}
		out[i] = buildView(id, cs[i].st.Val(), []byte(cs[i].raw.Val()), cs[i].rof.Val(), sc)
	}
	return out, nil
}

// buildView combines a status hash, the kept message and the done.
func buildView(id string, st map[string]string, raw []byte, retryOf string, claimed int64) *TaskView {
	if len(st) == 0 && len(raw) == 0 {
		return nil
	}
	// The rule: written by the executor when the task started, and in
	// the done once it ended (also for tasks that never started).
	v := &TaskView{ID: id, State: task.State(st["state"]), Executor: st["executor"], Rule: st["rule"], RetryOf: retryOf, Claimed: msTime(claimed), Waiting: st["waiting"]}
	switch v.State {
	case "cancelled":
		v.State = task.Queued // a kill is waiting for it
	case "":
		v.State = task.Queued
	}
	if e := st["env"]; e != "" {
		var env []string
		if json.Unmarshal([]byte(e), &env) == nil {
			// Masked again by name, in case a writer did not.
			v.Env = policy.MaskEnv(env, nil)
		}
	}
	if u, err := strconv.ParseInt(st["updated"], 10, 64); err == nil {
		v.Updated = msTime(u)
	}
	if len(raw) > 0 {
		var t task.Task
		if json.Unmarshal(raw, &t) == nil {
			v.Type, v.Tube, v.Cmdline, v.Args, v.Timeout = t.Type, t.Tube, t.Task.Cmdline, t.Task.CmdArgs, float64(t.Task.Timeout)
			if t.Sig != nil {
				v.KeyID, v.signed = t.Sig.Key, true
			}
		}
	}
	if d := st["done"]; d != "" {
		v.Done = json.RawMessage(d)
		var l task.Log
		if json.Unmarshal([]byte(d), &l) == nil {
			v.result = l.Result
			if l.Result != nil && l.Rule != "" {
				v.Rule = l.Rule
			}
			if v.Tube == "" {
				v.Tube = l.Tube
			}
			if v.Type == "" {
				v.Type = l.Type
			}
		}
	}
	return v
}

// listQueued pages through the task list from its newest end. The cursor
// is an offset from that end: tasks taken meanwhile shift it, which a
// queue's view can live with.
func (s *Server) listQueued(ctx context.Context, f TaskFilter, id *Identity) (*TaskList, error) {
	off := int64(0)
	if f.Cursor != "" {
		c, err := decodeCursor(f.Cursor)
		if err != nil || c.ID != "queued" || c.Score < 0 {
			return nil, errorf(http.StatusBadRequest, "bad cursor for state=queued")
		}
		off = c.Score
	}
	out := &TaskList{Tasks: []*TaskView{}}
	const batch, scanMax = 500, 10_000
	for scanned := int64(0); scanned < scanMax; scanned += batch {
		items, err := s.rdb.LRange(ctx, s.q.Names().Tasks, -(off + batch), -(off + 1)).Result()
		if err != nil {
			return nil, err
		}
		for i := len(items) - 1; i >= 0; i-- {
			off++
			var t task.Task
			if json.Unmarshal([]byte(items[i]), &t) != nil {
				t.ID, _ = task.PeekID([]byte(items[i]))
			}
			v := &TaskView{ID: t.ID, State: task.Queued, Type: t.Type, Tube: t.Tube, Cmdline: t.Task.Cmdline, Args: t.Task.CmdArgs, Timeout: float64(t.Task.Timeout)}
			if t.Sig != nil {
				v.KeyID = t.Sig.Key
			}
			if !f.match(v) || !id.CanSee(v.Tube) {
				continue
			}
			out.Tasks = append(out.Tasks, v)
			if len(out.Tasks) == f.Limit {
				out.Next = cursor{Score: off, ID: "queued"}.encode()
				return out, nil
			}
		}
		if len(items) < batch {
			return out, nil
		}
	}
	out.Next = cursor{Score: off, ID: "queued"}.encode()
	return out, nil
}

// Task returns one task's view, nil when nothing is known of it.
func (s *Server) Task(ctx context.Context, id string) (*TaskView, error) {
	if s.reader != nil {
		return s.readerTask(ctx, id)
	}
	vs, err := s.Tasks(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	return vs[0], nil
}

// Tasks is the view of each of ids, in order, read in two pipelines
// whatever their number.
func (s *Server) Tasks(ctx context.Context, ids []string) ([]*TaskView, error) {
	scores := make([]*redis.FloatCmd, len(ids))
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			scores[i] = p.ZScore(ctx, s.q.RecentKey(), id)
		}
		return nil
	})
	sc := make([]int64, len(ids))
	for i := range ids {
		sc[i] = int64(scores[i].Val())
	}
	return s.loadTasks(ctx, ids, sc)
}

func (s *Server) listTasks(w http.ResponseWriter, r *http.Request, id *Identity) {
	f, err := parseTaskFilter(r.URL.Query())
	if err != nil {
		s.fail(w, err)
		return
	}
	list, err := s.ListTasks(r.Context(), f, id)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request, id *Identity) {
	v, err := s.visibleTask(r.Context(), r.PathValue("id"), id)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// visibleTask is a task the identity may see, or a 4xx saying why not.
func (s *Server) visibleTask(ctx context.Context, taskID string, id *Identity) (*TaskView, error) {
	if err := checkID(taskID); err != nil {
		return nil, err
	}
	v, err := s.Task(ctx, taskID)
	if err != nil {
		return nil, err
	}
	if v == nil || !id.CanSee(v.Tube) {
		return nil, errorf(http.StatusNotFound, "no task %q known: never taken by an executor (it may still be queued), or ended more than status_retention ago", taskID)
	}
	return v, nil
}

// Submit is POST /api/v1/tasks: the body is the protocol's task JSON. It
// is checked as an executor would check it, then RPUSHed to the task list
// byte for byte, so it meets the same policy, signature check and audit as
// any RPUSH. A missing id is filled in with a random one.
func (s *Server) Submit(ctx context.Context, r *http.Request, id *Identity, raw []byte) (string, error) {
	var t task.Task
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return "", errorf(http.StatusBadRequest, "the body is not a task: %v", err)
	}
	if t.ID == "" {
		t.ID = newID()
		raw, _ = json.Marshal(t)
	}
	if _, err := task.Parse(raw, s.opt.MaxTaskBytes); err != nil {
		return "", errorf(http.StatusBadRequest, "%v", err)
	}
	return t.ID, s.push(ctx, r, id, &t, raw, "submit", "")
}

// push records and RPUSHes a task message.
func (s *Server) push(ctx context.Context, r *http.Request, id *Identity, t *task.Task, raw []byte, action, reason string) error {
	if !id.CanSee(t.Tube) {
		return errorf(http.StatusForbidden, "token %q may not use tube %q", id.Name, t.Tube)
	}
	// A used or reserved id is refused before the audit record is
	// written; the push itself checks again, in the same step as it
	// reserves the id, so of two submits of one id only one is queued.
	st, err := s.q.IDState(ctx, t.ID)
	if err != nil {
		return err
	}
	if st != redisqueue.IDFree {
		return duplicateID(t.ID, st)
	}
	if err := s.record(r, id, action, t.ID, reason); err != nil {
		return err
	}
	st, err = s.q.Submit(ctx, s.q.Names().Tasks, t.ID, raw)
	if err != nil {
		return err
	}
	if st != redisqueue.Pushed {
		return duplicateID(t.ID, st)
	}
	return nil
}

// duplicateID is the 409 for an id that is used or reserved.
func duplicateID(id string, st redisqueue.SubmitResult) error {
	if st == redisqueue.IDReserved {
		return errorf(http.StatusConflict, "task id %q was already used: a task with it was submitted and is still queued; an executor would drop a second one as a duplicate, so it was not queued", id)
	}
	return errorf(http.StatusConflict, "task id %q was already used within status_retention; an executor would drop it as a duplicate, so it was not queued", id)
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Server) submitTask(w http.ResponseWriter, r *http.Request, id *Identity) {
	raw, err := readBody(w, r, s.opt.MaxTaskBytes)
	if err != nil {
		s.fail(w, err)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		s.fail(w, errorf(http.StatusUnsupportedMediaType, "send the task as application/json"))
		return
	}
	taskID, err := s.Submit(r.Context(), r, id, raw)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"id": taskID})
}

// readBody reads at most max bytes, refusing more with 413.
func readBody(w http.ResponseWriter, r *http.Request, max int) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(max)))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, errorf(http.StatusRequestEntityTooLarge, "the body is over %d bytes (max_task_bytes)", max)
	}
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "reading the body: %v", err)
	}
	return b, nil
}

// Kill is POST /api/v1/tasks/{id}/kill: the kill message any client can
// RPUSH to the control list. A task still queued (not yet known) is
// cancelled before it starts.
func (s *Server) Kill(ctx context.Context, r *http.Request, id *Identity, taskID string) error {
	if err := checkID(taskID); err != nil {
		return err
	}
	v, err := s.Task(ctx, taskID)
	if err != nil {
		return err
	}
	if v != nil && !id.CanSee(v.Tube) || v == nil && id.Tubes != nil {
		return errorf(http.StatusForbidden, "token %q may not act on task %q", id.Name, taskID)
	}
	if v != nil && v.State.Terminal() {
		return errorf(http.StatusConflict, "task %q already ended: %s", taskID, v.State)
	}
	if err := s.record(r, id, task.ControlKill, taskID, ""); err != nil {
		return err
	}
	raw, _ := json.Marshal(task.Control{ID: taskID, Type: task.ControlKill})
	return s.rdb.RPush(ctx, s.q.Names().Control, raw).Err()
}

func (s *Server) killTask(w http.ResponseWriter, r *http.Request, id *Identity) {
	if err := s.Kill(r.Context(), r, id, r.PathValue("id")); err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"id": r.PathValue("id"), "kill": "sent"})
}

// Retry is POST /api/v1/tasks/{id}/retry: the same message under a new id,
// linked to the old one (retry_of).
func (s *Server) Retry(ctx context.Context, r *http.Request, id *Identity, taskID string) (string, error) {
	v, err := s.visibleTask(ctx, taskID, id)
	if err != nil {
		return "", err
	}
	raw, err := s.rdb.Get(ctx, s.q.TaskKey(taskID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return "", errorf(http.StatusConflict, "task %q has no kept message to repeat (it was never claimed, or ended more than status_retention ago)", taskID)
	}
	if err != nil {
		return "", err
	}
	var t task.Task
	if err := json.Unmarshal(raw, &t); err != nil || v.signed || t.Sig != nil {
		return "", errorf(http.StatusConflict, "task %q cannot be repeated by the server: it is signed (its signature is bound to its id) or unreadable; submit it again with its key", taskID)
	}
	t.ID = newID()
	newRaw, _ := json.Marshal(t)
	// The link goes first, so that the retry shows it from its claim on.
	if err := s.rdb.Set(ctx, s.q.RetryOfKey(t.ID), taskID, s.q.Retention()).Err(); err != nil {
		return "", err
	}
	if err := s.push(ctx, r, id, &t, newRaw, "retry", "retry of "+taskID); err != nil {
		s.rdb.Del(context.WithoutCancel(ctx), s.q.RetryOfKey(t.ID))
		return "", err
	}
	return t.ID, nil
}

func (s *Server) retryTask(w http.ResponseWriter, r *http.Request, id *Identity) {
	newID, err := s.Retry(r.Context(), r, id, r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"id": newID, "retry_of": r.PathValue("id")})
}
