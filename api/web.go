package api

import (
	"bufio"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/taskjob/task-job/task"
)

//go:embed web/templates/*.html web/static/*
var webFiles embed.FS

// web is the page: server-rendered templates over the same functions as
// the API, every action a plain form POST.
type web struct {
	s    *Server
	tmpl *template.Template
}

func newWeb(s *Server) (*web, error) {
	t, err := template.New("").Funcs(template.FuncMap{"hasPrefix": strings.HasPrefix}).ParseFS(webFiles, "web/templates/*.html")
	if err != nil {
		return nil, err
	}
	return &web{s: s, tmpl: t}, nil
}

func (wb *web) routes() {
	static, _ := fs.Sub(webFiles, "web/static")
	fileServer := http.StripPrefix("/static/", http.FileServerFS(static))
	wb.s.handlePublic("GET /static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		fileServer.ServeHTTP(w, r)
	}))
	page := func(pattern string, role Role, h func(w http.ResponseWriter, r *http.Request, id *Identity)) {
		wb.s.handle(pattern, role, true, h)
	}
	page("GET /{$}", RoleRead, wb.tasks)
	page("GET /tasks/{id}", RoleRead, wb.task)
	page("GET /tasks/{id}/output.txt", RoleRead, wb.output)
	page("GET /executors", RoleRead, wb.executors)
	page("GET /queues", RoleRead, wb.queues)
	page("GET /audit", RoleRead, wb.audit)
	page("GET /policy", RoleRead, wb.policy)
	page("POST /policy", RoleRead, wb.checkPolicy) // a dry run: writes nothing
	page("POST /tasks", RoleAdmin, wb.submit)
	page("POST /tasks/{id}/kill", RoleOperate, wb.kill)
	page("POST /tasks/{id}/retry", RoleOperate, wb.retry)
	wb.s.handlePublic("GET /login", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { wb.login(w, r, http.StatusOK, "") }))
	wb.s.handlePublic("POST /login", http.HandlerFunc(wb.doLogin))
	wb.s.handlePublic("POST /logout", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: wb.s.opt.Secure, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	}))
}

// view is what every page template gets.
type view struct {
	Title, Nav, Who, Role, Version, Flash string
	LoggedIn, CanOperate, CanSubmit       bool
	// CanAudit is false for a token limited to tubes (see auditReadable).
	CanAudit bool
	Data     any
	// page specific
	Filter  TaskFilter
	Query   map[string]string
	States  []task.State
	NextURL string
	Verify  *VerifyReport
	Fleet   bool // the executors page shows the registry's columns
}

func (wb *web) render(w http.ResponseWriter, r *http.Request, id *Identity, code int, name, title, nav string, data any, fill func(*view)) {
	v := &view{Title: title, Nav: nav, Who: id.Name, Role: id.Role.String(), Version: wb.s.opt.Version,
		LoggedIn: wb.s.opt.Tokens != nil, CanOperate: id.Role >= RoleOperate, CanSubmit: id.Role >= RoleAdmin, CanAudit: auditReadable(id) == nil, Data: data,
		Query: map[string]string{}}
	for k, vs := range r.URL.Query() {
		v.Query[k] = vs[0]
	}
	if fill != nil {
		fill(v)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := wb.tmpl.ExecuteTemplate(w, name, v); err != nil {
		wb.s.log.Warn("page template failed", "page", name, "error", err)
	}
}

// fail shows an error page: the API's status and reason.
func (wb *web) fail(w http.ResponseWriter, r *http.Request, id *Identity, err error) {
	code, msg := http.StatusServiceUnavailable, err.Error()
	if he, ok := err.(*httpError); ok {
		code = he.code
	} else {
		wb.s.log.Warn("page request failed", "error", err)
	}
	wb.render(w, r, id, code, "error", http.StatusText(code), "", msg, nil)
}

func (wb *web) login(w http.ResponseWriter, r *http.Request, code int, flash string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = wb.tmpl.ExecuteTemplate(w, "login", view{Flash: flash})
}

func (wb *web) doLogin(w http.ResponseWriter, r *http.Request) {
	if wb.s.opt.Tokens == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if tok == "" || wb.s.opt.Tokens.lookup(tok) == nil {
		wb.login(w, r, http.StatusUnauthorized, "That token is not accepted.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: tok, Path: "/", HttpOnly: true, Secure: wb.s.opt.Secure,
		SameSite: http.SameSiteStrictMode, MaxAge: int((12 * time.Hour).Seconds())})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (wb *web) tasks(w http.ResponseWriter, r *http.Request, id *Identity) {
	f, err := parseTaskFilter(r.URL.Query())
	if err != nil {
		wb.fail(w, r, id, err)
		return
	}
	list, err := wb.s.ListTasks(r.Context(), f, id)
	if err != nil {
		wb.fail(w, r, id, err)
		return
	}
	wb.render(w, r, id, http.StatusOK, "tasks", "Tasks", "tasks", list, func(v *view) {
		v.Filter = f
		v.States = []task.State{task.Queued, task.Running, task.Succeeded, task.Failed, task.Timeout, task.Killed, task.Lost, task.Rejected}
		if list.Next != "" {
			q := r.URL.Query()
			q.Set("cursor", list.Next)
			v.NextURL = "/?" + q.Encode()
		}
	})
}

func (wb *web) task(w http.ResponseWriter, r *http.Request, id *Identity) {
	t, err := wb.s.visibleTask(r.Context(), r.PathValue("id"), id)
	var he *httpError
	if errors.As(err, &he) && he.code == http.StatusNotFound && id.Tubes == nil {
		// Just submitted and not yet taken: show it waiting, with its
		// live output ready for when it runs.
		t, err = &TaskView{ID: r.PathValue("id"), State: task.Queued}, nil
	}
	if err != nil {
		wb.fail(w, r, id, err)
		return
	}
	wb.render(w, r, id, http.StatusOK, "task", "Task "+t.ID, "tasks", t, func(v *view) { v.Flash = r.URL.Query().Get("flash") })
}

// output is the task's whole output, as text, from its log stream (kept
// as long as its status), ending with its done.
func (wb *web) output(w http.ResponseWriter, r *http.Request, id *Identity) {
	t, err := wb.s.visibleTask(r.Context(), r.PathValue("id"), id)
	if err != nil {
		wb.fail(w, r, id, err)
		return
	}
	var bw *bufio.Writer
	var last uint64
	gotDone := false
	write := func(raw []byte) bool {
		var l task.Log
		if json.Unmarshal(raw, &l) != nil || l.ID != t.ID || l.Seq != 0 && l.Seq <= last {
			return true
		}
		if bw == nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Content-Disposition", `attachment; filename="task-output.txt"`)
			bw = bufio.NewWriter(w)
		}
		last = max(last, l.Seq)
		switch l.MsgType {
		case task.MsgStderr:
			bw.WriteString("[stderr] ")
		case task.MsgDone:
			bw.WriteString("[done] ")
			gotDone = true
		}
		bw.WriteString(l.Data)
		bw.WriteByte('\n')
		return !gotDone
	}
	err = wb.s.history(r.Context(), t.ID, write)
	if err != nil && bw == nil {
		wb.fail(w, r, id, err)
		return
	}
	// A done a peer gave (task lost) is only in the status.
	if err == nil && !gotDone && len(t.Done) > 0 {
		write(t.Done)
	}
	if bw == nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="task-output.txt"`)
		return
	}
	_ = bw.Flush()
}

func (wb *web) executors(w http.ResponseWriter, r *http.Request, id *Identity) {
	ex, fleetErr, err := wb.s.ExecutorsAndFleet(r.Context())
	if err != nil {
		wb.fail(w, r, id, err)
		return
	}
	wb.render(w, r, id, http.StatusOK, "executors", "Executors", "executors", ex, func(v *view) {
		v.Fleet = wb.s.opt.Fleet != nil
		if fleetErr != nil {
			v.Flash = "The fleet registry cannot be read: " + fleetErr.Error()
		}
	})
}

func (wb *web) queues(w http.ResponseWriter, r *http.Request, id *Identity) {
	qs, err := wb.s.Queues(r.Context())
	if err != nil {
		wb.fail(w, r, id, err)
		return
	}
	wb.render(w, r, id, http.StatusOK, "queues", "Queues", "queues", qs, nil)
}

func (wb *web) audit(w http.ResponseWriter, r *http.Request, id *Identity) {
	if err := auditReadable(id); err != nil {
		wb.fail(w, r, id, err)
		return
	}
	f, limit, err := parseAuditFilter(r.URL.Query())
	if err != nil {
		wb.fail(w, r, id, err)
		return
	}
	executor, err := auditExecutor(r.URL.Query())
	if err != nil {
		wb.fail(w, r, id, err)
		return
	}
	var rep *VerifyReport
	if r.URL.Query().Get("verify") != "" {
		if rep, err = wb.s.VerifyAudit(r.Context(), executor); err != nil {
			wb.fail(w, r, id, err)
			return
		}
	}
	l, err := wb.s.Audit(r.Context(), executor, f, limit)
	if err != nil {
		wb.fail(w, r, id, err)
		return
	}
	wb.render(w, r, id, http.StatusOK, "audit", "Audit", "audit", l, func(v *view) { v.Verify = rep })
}

// submit is the page's form: the fields of a task, turned into its JSON
// and submitted exactly as POST /api/v1/tasks would.
func (wb *web) submit(w http.ResponseWriter, r *http.Request, id *Identity) {
	r.Body = http.MaxBytesReader(w, r.Body, int64(wb.s.opt.MaxTaskBytes))
	if err := r.ParseForm(); err != nil {
		wb.fail(w, r, id, errorf(http.StatusBadRequest, "the form could not be read: %v", err))
		return
	}
	t := task.Task{ID: strings.TrimSpace(r.PostFormValue("id")), Type: r.PostFormValue("type"), Tube: strings.TrimSpace(r.PostFormValue("tube")),
		Task: task.Spec{Cmdline: r.PostFormValue("cmdline"), CmdArgs: []string{}}}
	for _, a := range strings.Split(strings.ReplaceAll(r.PostFormValue("cmd_args"), "\r\n", "\n"), "\n") {
		if a != "" {
			t.Task.CmdArgs = append(t.Task.CmdArgs, a)
		}
	}
	if s := strings.TrimSpace(r.PostFormValue("timeout")); s != "" {
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			wb.fail(w, r, id, errorf(http.StatusBadRequest, "timeout %q is not a number of seconds", s))
			return
		}
		t.Task.Timeout = task.Seconds(n)
	}
	raw, _ := json.Marshal(t)
	taskID, err := wb.s.Submit(r.Context(), r, id, raw)
	if err != nil {
		wb.fail(w, r, id, err)
		return
	}
	http.Redirect(w, r, "/tasks/"+url.PathEscape(taskID)+"?flash=submitted", http.StatusSeeOther)
}

func (wb *web) kill(w http.ResponseWriter, r *http.Request, id *Identity) {
	taskID := r.PathValue("id")
	if err := wb.s.Kill(r.Context(), r, id, taskID); err != nil {
		wb.fail(w, r, id, err)
		return
	}
	http.Redirect(w, r, "/tasks/"+url.PathEscape(taskID)+"?flash=kill+sent", http.StatusSeeOther)
}

func (wb *web) retry(w http.ResponseWriter, r *http.Request, id *Identity) {
	newID, err := wb.s.Retry(r.Context(), r, id, r.PathValue("id"))
	if err != nil {
		wb.fail(w, r, id, err)
		return
	}
	http.Redirect(w, r, "/tasks/"+url.PathEscape(newID)+"?flash=retry+submitted", http.StatusSeeOther)
}
