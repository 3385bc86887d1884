package api

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/metrics"
	"github.com/taskjob/task-job/task"
)

// publicRoutes are the patterns served without a token: the login form,
// logout, the page's own script and style, and the API's 404 for unknown
// paths. Anything else must appear in the auth matrix below.
var publicRoutes = map[string]bool{
	"GET /static/": true, "GET /login": true, "POST /login": true, "POST /logout": true, "/api/": true,
}

// readPosts are POSTs that change nothing (a policy dry run takes a task
// in its body, so it is a POST), which the read role may call.
var readPosts = map[string]bool{"POST /api/v1/policy/check": true, "POST /policy": true}

// matrixCall is one call of the matrix: the path with {id} filled in, and a
// body and content type where the route needs one to get past parsing.
type matrixCall struct {
	method, path, body, ctype string
}

// callFor turns a registered pattern into a request on task id.
func callFor(t *testing.T, pattern, id string) matrixCall {
	t.Helper()
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		t.Fatalf("pattern %q has no method: every authenticated route must name one", pattern)
	}
	path = strings.ReplaceAll(path, "{$}", "")
	path = strings.ReplaceAll(path, "{id}", url.PathEscape(id))
	if strings.Contains(path, "{") {
		t.Fatalf("pattern %q has a wildcard the matrix does not know how to fill", pattern)
	}
	c := matrixCall{method: method, path: path}
	switch pattern {
	case "POST /api/v1/tasks":
		c.body, c.ctype = `{"task":{"cmdline":"x.sh"}}`, "application/json"
	case "POST /tasks":
		c.body, c.ctype = "cmdline=x.sh", "application/x-www-form-urlencoded"
	case "POST /api/v1/policy/check":
		c.body, c.ctype = `{"id":"d","task":{"cmdline":"x.sh"}}`, "application/json"
	case "POST /policy":
		c.body, c.ctype = "task=%7B%22id%22%3A%22d%22%2C%22task%22%3A%7B%22cmdline%22%3A%22x.sh%22%7D%7D", "application/x-www-form-urlencoded"
	}
	return c
}

// status sends c with the given headers and returns the status and (up to
// 64 KiB of) the body; streams are cut after their headers and a moment.
func (e *env) status(t *testing.T, c matrixCall, hdr ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, e.http.URL+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if c.ctype != "" {
		req.Header.Set("Content-Type", c.ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	// Never follow a redirect: a write's 303 is its answer.
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	var b []byte
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		// Read what comes within a moment, then cut the stream.
		done := make(chan []byte, 1)
		go func() {
			buf := make([]byte, 64<<10)
			n, _ := io.ReadAtLeast(resp.Body, buf, len(buf))
			done <- buf[:n]
		}()
		select {
		case b = <-done:
		case <-time.After(1500 * time.Millisecond):
			resp.Body.Close()
			b = <-done
		}
	} else {
		b, _ = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	}
	return resp.StatusCode, string(b)
}

// Every registered route, with every kind of caller: no token, a wrong
// token (as a header and as the page's cookie), each role, and a token
// limited to another tube. A route added without a line here fails the
// test, so none ships unchecked.
func TestAuthMatrix(t *testing.T) {
	e := newEnv(t, envOpt{tokens: true, metrics: metrics.New(metrics.Options{Version: "test"}), policy: "rule \"x\" {\n  cmdline = \"x.sh\"\n}\n"})
	pub := e.publisher("ex")
	// "other" is in the default tube, which the blue token may not see;
	// "mine" is blue's.
	e.runTask(pub, "other", "", 3, task.Succeeded)
	e.runTask(pub, "mine", "blue", 3, task.Succeeded)
	// Queued, never taken: only the task list knows them.
	e.rdb.RPush(context.Background(), names.Tasks, `{"id":"otherqueued","type":"","tube":"","task":{"cmdline":"secret-queued.sh"}}`)

	if len(e.srv.table) < 20 {
		t.Fatalf("only %d routes registered: the table is not being filled", len(e.srv.table))
	}
	seen := map[string]bool{}
	for _, rt := range e.srv.table {
		if seen[rt.pattern] {
			t.Errorf("pattern %q registered twice", rt.pattern)
		}
		seen[rt.pattern] = true
		if rt.role == 0 {
			if !publicRoutes[rt.pattern] {
				t.Errorf("%q is served without a token but is not in publicRoutes; say why it needs none, or give it a role", rt.pattern)
			}
			continue
		}
		if publicRoutes[rt.pattern] {
			t.Errorf("%q is in publicRoutes but needs role %s", rt.pattern, rt.role)
		}
		write := !strings.HasPrefix(rt.pattern, "GET ") && !readPosts[rt.pattern]
		if readPosts[rt.pattern] && rt.role != RoleRead {
			t.Errorf("%q is a read-only POST but needs role %s", rt.pattern, rt.role)
		}
		if write && rt.role <= RoleRead {
			t.Errorf("%q writes but a read token may call it", rt.pattern)
		}
		c := callFor(t, rt.pattern, "other")
		// No token, a wrong token, a malformed header, a wrong cookie.
		for _, hdr := range [][]string{
			nil,
			{"Authorization", "Bearer tj_wrong"},
			{"Authorization", "Bearer "},
			{"Authorization", "Basic " + e.tokens["admin"]},
			{"Authorization", e.tokens["admin"]},
			{"Cookie", tokenCookie + "=tj_wrong"},
			// A wrong header is not rescued by a right cookie.
			{"Authorization", "Bearer tj_wrong", "Cookie", tokenCookie + "=" + e.tokens["admin"]},
		} {
			if code, body := e.status(t, c, hdr...); code != http.StatusUnauthorized {
				t.Errorf("%s %s with %q: %d %.120s, want 401", c.method, c.path, hdr, code, body)
			}
		}
		// Each role: below the route's, 403; at or above, past the check.
		for _, r := range testRoles[:3] {
			code, body := e.status(t, c, "Authorization", "Bearer "+e.tokens[r.name])
			switch {
			case r.role < rt.role && code != http.StatusForbidden:
				t.Errorf("%s %s as %s: %d %.120s, want 403 (needs %s)", c.method, c.path, r.name, code, body, rt.role)
			case r.role >= rt.role && (code == http.StatusUnauthorized || code == http.StatusForbidden):
				t.Errorf("%s %s as %s: %d %.120s, want it allowed", c.method, c.path, r.name, code, body)
			}
		}
		// The cookie the login form sets works as the header does.
		if code, body := e.status(t, c, "Cookie", tokenCookie+"="+e.tokens["reader"]); write != (code == http.StatusForbidden) {
			t.Errorf("%s %s with the reader's cookie: %d %.120s", c.method, c.path, code, body)
		}
		// The blue token (admin, tube blue) on the other tube's task: never
		// a success, never a word of it.
		code, body := e.status(t, c, "Authorization", "Bearer "+e.tokens["blue"])
		leak := strings.Contains(body, `"other"`) || strings.Contains(body, "/tasks/other") ||
			strings.Contains(body, "otherqueued") || strings.Contains(body, "line 1") ||
			strings.Contains(body, "retry of other")
		if strings.Contains(rt.pattern, "{id}") {
			if code != http.StatusNotFound && code != http.StatusForbidden || leak {
				t.Errorf("%s %s as blue (another tube's task): %d %.200s, want 403 or 404 and nothing of it", c.method, c.path, code, body)
			}
		} else if leak {
			t.Errorf("%s %s as blue shows the other tube's task: %d %.300s", c.method, c.path, code, body)
		}
	}
	// Routes that must exist, so a typo in registration is noticed.
	for _, p := range []string{"GET /api/v1/tasks", "GET /api/v1/tasks/{id}", "GET /api/v1/tasks/{id}/logs",
		"POST /api/v1/tasks", "POST /api/v1/tasks/{id}/kill", "POST /api/v1/tasks/{id}/retry", "GET /api/v1/executors",
		"GET /api/v1/queues", "GET /api/v1/audit", "GET /api/v1/audit/verify", "GET /api/v1/events", "GET /metrics",
		"GET /{$}", "GET /tasks/{id}", "GET /tasks/{id}/output.txt", "POST /tasks", "POST /tasks/{id}/kill", "POST /tasks/{id}/retry",
		"GET /policy", "POST /policy", "POST /api/v1/policy/check"} {
		if !seen[p] {
			t.Errorf("%q is not registered", p)
		}
	}

	// The blue token sees its own tube's task, in the list and alone.
	blue := e.tokens["blue"]
	for _, p := range []string{"/api/v1/tasks/mine", "/api/v1/tasks", "/tasks/mine", "/"} {
		if code, body := e.status(t, matrixCall{method: "GET", path: p}, "Authorization", "Bearer "+blue); code != 200 || !strings.Contains(body, "mine") {
			t.Errorf("GET %s as blue: %d %.200s, want its own task", p, code, body)
		}
	}
	for _, p := range []string{"/api/v1/tasks?state=queued", "/?state=queued"} {
		if code, body := e.status(t, matrixCall{method: "GET", path: p}, "Authorization", "Bearer "+blue); code != 200 || strings.Contains(body, "otherqueued") {
			t.Errorf("GET %s as blue: %d %.200s, want no other tube's queued task", p, code, body)
		}
	}
	// The audit log names every tube's tasks and its records carry no
	// tube, so a token limited to tubes may not read it at all.
	for _, p := range []string{"/api/v1/audit", "/api/v1/audit/verify", "/audit"} {
		if code, body := e.status(t, matrixCall{method: "GET", path: p}, "Authorization", "Bearer "+blue); code != http.StatusForbidden || !strings.Contains(body, "every tube") {
			t.Errorf("GET %s as blue: %d %.200s, want 403", p, code, body)
		}
	}
	if _, body := e.status(t, matrixCall{method: "GET", path: "/"}, "Authorization", "Bearer "+blue); strings.Contains(body, `href="/audit"`) {
		t.Error("the page links the audit log for a token that may not read it")
	}
	// Its live events carry its tube's tasks only: the other tube's task
	// ends first, and must not show before blue's does. (The matrix's
	// writes queued tasks; runTask takes from the head, so clear them.)
	e.rdb.Del(context.Background(), names.Tasks)
	s, code := e.openStream("/api/v1/events", blue, "")
	if code != 200 {
		t.Fatalf("events as blue: %d", code)
	}
	e.runTask(pub, "other2", "", 1, task.Failed)
	e.runTask(pub, "mine2", "blue", 1, task.Failed)
	for {
		ev, ok := s.next(t, 10*time.Second)
		if !ok {
			t.Fatal("events ended before blue's task did")
		}
		if strings.Contains(ev.Data, "other2") {
			t.Fatalf("blue's events show the other tube's task: %s", ev.Data)
		}
		if strings.Contains(ev.Data, `"mine2"`) && strings.Contains(ev.Data, `"failed"`) {
			break
		}
	}
}
