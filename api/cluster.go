package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/registry"
	"github.com/taskjob/task-job/task"
)

// ExecutorInfo is what an executor publishes about itself at start.
type ExecutorInfo struct {
	Host    string `json:"host"`
	PID     int    `json:"pid"`
	Version string `json:"version"`
	Slots   int    `json:"slots"`
	// Sandbox says what confines its tasks (the start-up line).
	Sandbox string `json:"sandbox"`
	Started string `json:"started"`
	// Serves is the address its management server listens on, if any.
	Serves string `json:"serves,omitempty"`
}

// infoTTL bounds how long a crashed executor's description lingers.
const infoTTL = 7 * 24 * time.Hour

// PublishExecutorInfo writes an executor's description for GET
// /api/v1/executors; the returned func removes it (on a clean stop).
func PublishExecutorInfo(ctx context.Context, q *redisqueue.Queue, executor string, info ExecutorInfo) (func(), error) {
	b, _ := json.Marshal(info)
	key := q.InfoKey(executor)
	if err := q.Client().Set(ctx, key, b, infoTTL).Err(); err != nil {
		return func() {}, err
	}
	return func() { q.Client().Del(context.Background(), key) }, nil
}

// ExecutorView is one executor as GET /api/v1/executors shows it.
type ExecutorView struct {
	ID    string `json:"id"`
	Alive bool   `json:"alive"`
	// Running counts what its processing list holds: tasks taken and not
	// yet finished.
	Running int64 `json:"running"`
	ExecutorInfo
	// Fleet is its entry in the fleet registry, when the server reads one.
	Fleet *FleetView `json:"fleet,omitempty"`
}

// Fleet is what the server reads of the fleet registry (etcd), when the
// config names one.
type Fleet interface {
	Members(ctx context.Context) ([]registry.Member, error)
	Cordons(ctx context.Context) (map[string]registry.Cordon, error)
}

// FleetView is an executor as the fleet registry knows it: registered
// (its lease alive) or only cordoned.
type FleetView struct {
	Registered bool              `json:"registered"`
	Labels     map[string]string `json:"labels,omitempty"`
	Tubes      []string          `json:"tubes,omitempty"`
	Dispatched bool              `json:"dispatched,omitempty"`
	Running    int               `json:"running"`
	// Cordon, when set, keeps the dispatcher from giving it new work.
	Cordon *registry.Cordon `json:"cordon,omitempty"`
}

// fleetTimeout bounds the registry's reads: an etcd outage must not hang
// the executors page.
const fleetTimeout = 2 * time.Second

// withFleet adds the registry's view to ex, and executors that only the
// registry knows (registered before their first Redis heartbeat, or
// cordoned while away). An unreadable registry is returned as the error,
// with ex unchanged.
func (s *Server) withFleet(ctx context.Context, ex []ExecutorView) ([]ExecutorView, error) {
	if s.opt.Fleet == nil {
		return ex, nil
	}
	ctx, cancel := context.WithTimeout(ctx, fleetTimeout)
	defer cancel()
	members, err := s.opt.Fleet.Members(ctx)
	if err != nil {
		return ex, err
	}
	cordons, err := s.opt.Fleet.Cordons(ctx)
	if err != nil {
		return ex, err
	}
	at := map[string]int{}
	for i := range ex {
		at[ex[i].ID] = i
	}
	view := func(id string) *FleetView {
		i, ok := at[id]
		if !ok {
			ex = append(ex, ExecutorView{ID: id})
			i = len(ex) - 1
			at[id] = i
		}
		if ex[i].Fleet == nil {
			ex[i].Fleet = &FleetView{}
		}
		return ex[i].Fleet
	}
	for _, m := range members {
		v := view(m.ID)
		v.Registered, v.Labels, v.Tubes, v.Dispatched, v.Running = true, m.Labels, m.Tubes, m.Dispatched, m.Running
	}
	for id, c := range cordons {
		view(id).Cordon = &c
	}
	sort.Slice(ex, func(i, j int) bool { return ex[i].ID < ex[j].ID })
	return ex, nil
}

// Executors lists the registered executors, sorted by id.
func (s *Server) Executors(ctx context.Context) ([]ExecutorView, error) {
	ids, err := s.rdb.SMembers(ctx, s.q.ExecutorsKey()).Result()
	if err != nil {
		return nil, err
	}
	sort.Strings(ids)
	type cmds struct {
		alive, running *redis.IntCmd
		info           *redis.StringCmd
	}
	cs := make([]cmds, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cs[i] = cmds{p.Exists(ctx, s.q.LivenessKey(id)), p.LLen(ctx, s.q.ProcessingKey(id)), p.Get(ctx, s.q.InfoKey(id))}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]ExecutorView, len(ids))
	for i, id := range ids {
		out[i] = ExecutorView{ID: id, Alive: cs[i].alive.Val() == 1, Running: cs[i].running.Val()}
		_ = json.Unmarshal([]byte(cs[i].info.Val()), &out[i].ExecutorInfo)
	}
	return out, nil
}

// ExecutorsAndFleet is Executors with the fleet registry's view of each;
// fleetErr says why that view is missing (the list is still whole).
func (s *Server) ExecutorsAndFleet(ctx context.Context) (ex []ExecutorView, fleetErr, err error) {
	if ex, err = s.Executors(ctx); err != nil {
		return nil, nil, err
	}
	ex, fleetErr = s.withFleet(ctx, ex)
	return ex, fleetErr, nil
}

func (s *Server) listExecutors(w http.ResponseWriter, r *http.Request, _ *Identity) {
	ex, fleetErr, err := s.ExecutorsAndFleet(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	body := map[string]any{"executors": ex}
	if fleetErr != nil {
		body["fleet_error"] = "the fleet registry cannot be read: " + fleetErr.Error()
	}
	writeJSON(w, http.StatusOK, body)
}

// QueueView is one list of the deployment.
type QueueView struct {
	Name   string `json:"name"`
	Role   string `json:"role"` // tasks, control, logs
	Length int64  `json:"length"`
	// OldestAgeSeconds is how long the task at the head has waited: from
	// its signature time when signed, else since this server first saw it
	// at the head (so at least that long). Tasks list only.
	OldestAgeSeconds float64 `json:"oldest_age_seconds,omitempty"`
	OldestAgeFrom    string  `json:"oldest_age_from,omitempty"` // "signature" or "observed"
}

// headWatch remembers since when a message has been at the task list's
// head, for the oldest-age figure of messages that carry no time.
type headWatch struct {
	mu    sync.Mutex
	raw   string
	since time.Time
}

func (h *headWatch) age(raw string, now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if raw != h.raw {
		h.raw, h.since = raw, now
	}
	return now.Sub(h.since)
}

// Queues reports the lengths of the deployment's lists.
func (s *Server) Queues(ctx context.Context) ([]QueueView, error) {
	n := s.q.Names()
	var lens [3]*redis.IntCmd
	var head *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		lens[0], lens[1], lens[2] = p.LLen(ctx, n.Tasks), p.LLen(ctx, n.Control), p.LLen(ctx, n.Logs)
		head = p.LIndex(ctx, n.Tasks, 0)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := []QueueView{
		{Name: n.Tasks, Role: "tasks", Length: lens[0].Val()},
		{Name: n.Control, Role: "control", Length: lens[1].Val()},
		{Name: n.Logs, Role: "logs", Length: lens[2].Val()},
	}
	if raw := head.Val(); raw != "" {
		now := time.Now()
		var t task.Task
		if json.Unmarshal([]byte(raw), &t) == nil && t.Sig != nil && t.Sig.TS > 0 {
			out[0].OldestAgeSeconds = now.Sub(time.Unix(t.Sig.TS, 0)).Seconds()
			out[0].OldestAgeFrom = "signature"
		} else {
			out[0].OldestAgeSeconds = s.head.age(raw, now).Seconds()
			out[0].OldestAgeFrom = "observed"
		}
	}
	return out, nil
}

func (s *Server) listQueues(w http.ResponseWriter, r *http.Request, _ *Identity) {
	qs, err := s.Queues(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"queues": qs})
}
