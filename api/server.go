// Package api is task-job's management server: the /api/v1 JSON handlers,
// live logs and state changes as Server-Sent Events, the web page built on
// the same handlers, and /metrics. It reads what every executor writes to
// Redis, so any one process serves the whole deployment; its writes (submit,
// kill, retry) are the same RPUSHes a client makes, so policy, signatures
// and audit apply to them unchanged, and each is first recorded in the
// audit log with the token's name.
//
// Safe by default: without a tokens file it serves loopback only (see
// ListenAddr) and every caller is trusted; with one, every request needs a
// token and writes need its role. Cross-origin form posts are refused
// (http.CrossOriginProtection), pages carry a strict Content-Security-Policy
// and no inline script, and request bodies are bounded.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/policy"
	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/task"
)

// Auditor records an HTTP write before it takes effect (an *audit.Log).
type Auditor interface {
	Append(audit.Record) error
}

// Options configure a Server.
type Options struct {
	// Queue names the deployment's keys and holds the Redis client.
	Queue *redisqueue.Queue
	// Tasks, instead of Queue, serves a transport without those keys
	// (Kafka): the read-only task endpoints only (see TaskReader).
	Tasks TaskReader
	// MaxTaskBytes bounds a submitted task (max_task_bytes; default 1 MiB).
	MaxTaskBytes int
	// Tokens, when set, are required on every request; nil = everyone is
	// trusted, which is only safe on loopback (ListenAddr enforces it).
	Tokens *Tokens
	// Audit records every write; nil = writes are only logged.
	Audit Auditor
	// AuditFile is the audit log GET /api/v1/audit reads ("" = none), and
	// AuditStream its Redis mirror, compared by audit/verify.
	AuditFile, AuditStream string
	// Policy returns the policy in force (reloads included), for the
	// policy dry run; nil, or a nil result, = none loaded.
	Policy func() *policy.Policy
	// Metrics serves /metrics; nil = not served.
	Metrics http.Handler
	// Fleet, when set, adds the fleet registry's view to the executors.
	Fleet Fleet
	// Secure marks the login cookie Secure (the server speaks TLS).
	Secure  bool
	Logger  hclog.Logger
	Version string
}

// Server is the management server. Create it with New, call Run (which
// follows the logs feed) and serve Handler.
type Server struct {
	opt Options
	rdb redis.UniversalClient
	q   *redisqueue.Queue
	// reader is set instead of rdb and q on a transport without the Redis
	// keys (Options.Tasks).
	reader TaskReader
	log    hclog.Logger
	hub    *hub
	mux    *http.ServeMux
	web    *web
	head   headWatch
	// table is every pattern registered on mux, with the role it needs
	// (0 = served to anyone), so a test can walk them all.
	table []routeEntry

	readyOnce sync.Once
	ready     chan struct{}
}

// New builds a Server.
func New(opt Options) (*Server, error) {
	if opt.Queue == nil && opt.Tasks == nil {
		return nil, errors.New("api: no queue")
	}
	if opt.MaxTaskBytes <= 0 {
		opt.MaxTaskBytes = queue.DefaultMaxTaskBytes
	}
	if opt.Logger == nil {
		opt.Logger = hclog.NewNullLogger()
	}
	s := &Server{opt: opt, log: opt.Logger, ready: make(chan struct{})}
	s.hub = newHub()
	if opt.Queue == nil {
		s.reader = opt.Tasks
		s.readerRoutes()
		return s, nil
	}
	s.rdb, s.q = opt.Queue.Client(), opt.Queue
	w, err := newWeb(s)
	if err != nil {
		return nil, err
	}
	s.web = w
	s.routes()
	return s, nil
}

// Run follows the logs feed for the live streams until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if s.reader != nil {
		// No feed: each log stream reads its task's messages itself.
		s.readyOnce.Do(func() { close(s.ready) })
		<-ctx.Done()
		return nil
	}
	return s.hub.run(ctx, s.rdb, s.q.Names().Logs, func() { s.readyOnce.Do(func() { close(s.ready) }) }, s.log)
}

// Ready is closed once the logs feed is subscribed.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Handler is the whole server: API, page, metrics.
func (s *Server) Handler() http.Handler {
	cop := http.NewCrossOriginProtection()
	return securityHeaders(cop.Handler(s.mux))
}

// routeEntry is one registered pattern and the role it needs.
type routeEntry struct {
	pattern string
	role    Role // 0 = public: no token needed
}

// handle registers h on pattern behind the role check (role 0 = public).
func (s *Server) handle(pattern string, role Role, page bool, h func(w http.ResponseWriter, r *http.Request, id *Identity)) {
	s.table = append(s.table, routeEntry{pattern, role})
	s.mux.Handle(pattern, s.authed(role, page, h))
}

// handlePublic registers a handler that needs no token.
func (s *Server) handlePublic(pattern string, h http.Handler) {
	s.table = append(s.table, routeEntry{pattern, 0})
	s.mux.Handle(pattern, h)
}

func (s *Server) routes() {
	m := http.NewServeMux()
	s.mux = m
	api := func(pattern string, role Role, h func(w http.ResponseWriter, r *http.Request, id *Identity)) {
		s.handle(pattern, role, false, h)
	}
	api("GET /api/v1/tasks", RoleRead, s.listTasks)
	api("POST /api/v1/tasks", RoleAdmin, s.submitTask)
	api("GET /api/v1/tasks/{id}", RoleRead, s.getTask)
	api("GET /api/v1/tasks/{id}/logs", RoleRead, s.taskLogs)
	api("POST /api/v1/tasks/{id}/kill", RoleOperate, s.killTask)
	api("POST /api/v1/tasks/{id}/retry", RoleOperate, s.retryTask)
	api("GET /api/v1/executors", RoleRead, s.listExecutors)
	api("GET /api/v1/queues", RoleRead, s.listQueues)
	api("GET /api/v1/audit", RoleRead, s.listAudit)
	api("GET /api/v1/audit/verify", RoleRead, s.verifyAudit)
	api("GET /api/v1/events", RoleRead, s.events)
	// A dry run reads the policy and writes nothing: the read role.
	api("POST /api/v1/policy/check", RoleRead, s.checkPolicy)
	api("GET /api/v1/whoami", RoleRead, func(w http.ResponseWriter, r *http.Request, id *Identity) {
		writeJSON(w, http.StatusOK, map[string]any{"name": id.Name, "role": id.Role.String(), "tubes": id.Tubes})
	})
	s.handlePublic("/api/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: %s %s (see the README's Management section)", r.Method, r.URL.Path)
	}))
	if s.opt.Metrics != nil {
		api("GET /metrics", RoleRead, func(w http.ResponseWriter, r *http.Request, _ *Identity) {
			s.opt.Metrics.ServeHTTP(w, r)
		})
	}
	s.web.routes()
}

// authed wraps h with authentication and the role check. page selects how
// a missing token is answered: the login page, or a JSON 401.
func (s *Server) authed(role Role, page bool, h func(w http.ResponseWriter, r *http.Request, id *Identity)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := s.identify(r)
		switch {
		case id == nil && page:
			s.web.login(w, r, http.StatusUnauthorized, "")
		case id == nil:
			w.Header().Set("WWW-Authenticate", `Bearer realm="task-job"`)
			writeError(w, http.StatusUnauthorized, "a valid bearer token is required (Authorization: Bearer …)")
		case id.Role < role:
			writeError(w, http.StatusForbidden, "token %q has role %s; this needs %s", id.Name, id.Role, role)
		default:
			h(w, r, id)
		}
	})
}

// csp allows the page's own script and style files only: no inline
// script, no eval, nothing from elsewhere, no framing.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, errorBody{Error: fmt.Sprintf(format, args...)})
}

// httpError is an error with the status it is answered with.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

// IsRequestError reports whether err is about the request (a filter
// the transport cannot apply, a bad cursor), not a failure to reach it.
func IsRequestError(err error) bool {
	var he *httpError
	return errors.As(err, &he) && he.code < http.StatusInternalServerError
}

func errorf(code int, format string, args ...any) error {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

// fail answers err: its own status for an httpError, 500 (and a log line)
// for anything else, which is a Redis or file problem, not the caller's.
func (s *Server) fail(w http.ResponseWriter, err error) {
	var he *httpError
	if errors.As(err, &he) {
		writeError(w, he.code, "%s", he.msg)
		return
	}
	s.log.Warn("management request failed", "error", err)
	writeError(w, http.StatusServiceUnavailable, "%v", err)
}

// checkID refuses ids no task can have, before they reach a key name.
func checkID(id string) error {
	if id == "" || len(id) > task.MaxIDBytes || !utf8.ValidString(id) ||
		strings.IndexFunc(id, unicode.IsControl) >= 0 {
		return errorf(http.StatusBadRequest, "bad task id: want 1 to %d bytes of UTF-8 text without control characters", task.MaxIDBytes)
	}
	return nil
}

// record writes the audit record of an HTTP write, before it takes effect.
func (s *Server) record(r *http.Request, id *Identity, action, taskID, reason string) error {
	rec := audit.Record{Kind: audit.KindControl, ID: taskID, Action: action, By: "http:" + id.Name, Reason: reason}
	s.log.Info("management write", "action", action, "id", taskID, "by", id.Name, "remote", r.RemoteAddr, "reason", reason)
	if s.opt.Audit == nil {
		return nil
	}
	if err := s.opt.Audit.Append(rec); err != nil {
		return errorf(http.StatusServiceUnavailable, "not done: the audit log cannot be written (%v)", err)
	}
	return nil
}

func msTime(ms int64) string {
	if ms <= 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}
