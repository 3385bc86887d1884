package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/audit/redismirror"
	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/observe"
)

func TestListenAddr(t *testing.T) {
	for _, c := range []struct {
		in     string
		tokens bool
		want   string
		err    bool
	}{
		{"8080", false, "127.0.0.1:8080", false},
		{"8080", true, "127.0.0.1:8080", false},
		{"127.0.0.1:8080", false, "127.0.0.1:8080", false},
		{"[::1]:8080", false, "[::1]:8080", false},
		{"localhost:8080", false, "localhost:8080", false},
		{":8080", false, "", true},
		{"0.0.0.0:8080", false, "", true},
		{"10.1.2.3:8080", false, "", true},
		{":8080", true, ":8080", false},
		{"10.1.2.3:8080", true, "10.1.2.3:8080", false},
	} {
		got, err := ListenAddr(c.in, c.tokens)
		if c.err {
			if !errors.Is(err, ErrNeedTokens) || !strings.Contains(err.Error(), "server_tokens_file") {
				t.Errorf("ListenAddr(%q, %v) = %q, %v; want an error naming server_tokens_file", c.in, c.tokens, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ListenAddr(%q, %v) = %q, %v; want %q", c.in, c.tokens, got, err, c.want)
		}
	}
}

func TestParseTokens(t *testing.T) {
	tok, line := NewToken("ci", RoleOperate)
	toks, err := ParseTokens([]byte("# comment\n\n" + line + " tubes=blue,-  # trailing\n"))
	if err != nil {
		t.Fatal(err)
	}
	id := toks.lookup(tok)
	if id == nil || id.Name != "ci" || id.Role != RoleOperate || !id.CanSee("blue") || !id.CanSee("") || id.CanSee("red") {
		t.Fatalf("lookup = %+v", id)
	}
	if toks.lookup(tok+"x") != nil || toks.lookup("") != nil {
		t.Error("a wrong token was accepted")
	}
	for _, bad := range []string{
		"",
		"ci read",
		"ci root sha256:" + strings.Repeat("a", 64),
		"ci read md5:" + strings.Repeat("a", 64),
		"ci read sha256:abc",
		"c/i read sha256:" + strings.Repeat("a", 64),
		"ci read sha256:" + strings.Repeat("a", 64) + " blue",
		"ci read sha256:" + strings.Repeat("a", 64) + "\nci admin sha256:" + strings.Repeat("b", 64),
	} {
		if _, err := ParseTokens([]byte(bad)); !errors.Is(err, ErrTokens) {
			t.Errorf("ParseTokens(%q) = %v, want an ErrTokens error", bad, err)
		}
	}
	// Every problem at once, each with its line.
	_, err = ParseTokens([]byte("a read x\nb boss sha256:" + strings.Repeat("a", 64)))
	if err == nil || !strings.Contains(err.Error(), "line 1") || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("two bad lines: %v", err)
	}
}

func FuzzParseTokens(f *testing.F) {
	_, line := NewToken("ci", RoleAdmin)
	f.Add([]byte(line + " tubes=a,b\n# c\n"))
	f.Add([]byte("x read sha256:zz"))
	f.Fuzz(func(t *testing.T, b []byte) {
		toks, err := ParseTokens(b)
		if err == nil && toks.Len() == 0 {
			t.Fatal("no error and no tokens")
		}
		if err == nil {
			_ = toks.lookup(string(b))
		}
	})
}

func TestAuth(t *testing.T) {
	e := newEnv(t, envOpt{tokens: true})
	sub := `{"id":"auth1","type":"t","tube":"","task":{"cmdline":"x.sh","cmd_args":[]}}`
	for _, c := range []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", "/api/v1/tasks", "", "", 401},
		{"GET", "/api/v1/tasks", "tj_wrong", "", 401},
		{"GET", "/metrics", "", "", 404}, // not configured in this env
		{"GET", "/api/v1/tasks", e.tokens["reader"], "", 200},
		{"GET", "/api/v1/executors", e.tokens["reader"], "", 200},
		{"GET", "/api/v1/queues", e.tokens["reader"], "", 200},
		{"POST", "/api/v1/tasks", e.tokens["reader"], sub, 403},
		{"POST", "/api/v1/tasks/auth1/kill", e.tokens["reader"], "", 403},
		{"POST", "/api/v1/tasks/auth1/retry", e.tokens["reader"], "", 403},
		{"POST", "/api/v1/tasks", e.tokens["operator"], sub, 403},
		{"POST", "/api/v1/tasks", e.tokens["admin"], sub, 202},
		{"POST", "/api/v1/tasks/auth1/kill", e.tokens["operator"], "", 202},
		// A token limited to tube blue may not submit elsewhere.
		{"POST", "/api/v1/tasks", e.tokens["blue"], strings.Replace(sub, "auth1", "auth2", 1), 403},
		{"POST", "/api/v1/tasks", e.tokens["blue"], strings.Replace(strings.Replace(sub, "auth1", "auth3", 1), `"tube":""`, `"tube":"blue"`, 1), 202},
		// The page without a token shows the login form.
		{"GET", "/", "", "", 401},
		{"GET", "/", e.tokens["reader"], "", 200},
		{"POST", "/tasks/auth1/kill", e.tokens["reader"], "", 403},
	} {
		var body *strings.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		var code int
		var got string
		if body != nil {
			code, got = e.do(c.method, c.path, c.token, body)
		} else {
			code, got = e.do(c.method, c.path, c.token, nil)
		}
		if code != c.want {
			t.Errorf("%s %s with token %.8q: %d %s, want %d", c.method, c.path, c.token, code, got, c.want)
		}
	}
	// The page's login sets a cookie that then authenticates.
	jar := &cookieClient{}
	resp, err := jar.postForm(e.http.URL+"/login", url.Values{"token": {e.tokens["reader"]}})
	if err != nil || resp.StatusCode != http.StatusOK || jar.cookie == nil {
		t.Fatalf("login: %v %v cookie %v", resp, err, jar.cookie)
	}
	if !jar.cookie.HttpOnly || jar.cookie.SameSite != http.SameSiteStrictMode {
		t.Errorf("the login cookie is not HttpOnly and SameSite=Strict: %+v", jar.cookie)
	}
	resp, err = jar.postForm(e.http.URL+"/login", url.Values{"token": {"tj_nope"}})
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("login with a wrong token: %v %v", resp, err)
	}
	// Every write was audited with the token's name.
	var by []string
	_ = audit.Read(e.auditFile, audit.Filter{Kind: audit.KindControl}, func(r audit.Record) error {
		by = append(by, r.Action+":"+r.ID+":"+r.By)
		return nil
	})
	want := []string{"submit:auth1:http:admin", "kill:auth1:http:operator", "submit:auth3:http:blue"}
	if fmt.Sprint(by) != fmt.Sprint(want) {
		t.Errorf("audit control records = %v, want %v", by, want)
	}
}

// cookieClient is a browser's cookie handling, enough for the login.
type cookieClient struct{ cookie *http.Cookie }

func (c *cookieClient) postForm(u string, v url.Values) (*http.Response, error) {
	jar, _ := cookiejar.New(nil)
	cl := &http.Client{Jar: jar}
	resp, err := cl.PostForm(u, v)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	pu, _ := url.Parse(u)
	c.cookie = nil
	for _, ck := range jar.Cookies(pu) {
		if ck.Name == tokenCookie {
			c.cookie = ck
		}
	}
	// The jar hides the attributes; read them from the login answer.
	for r := resp; r != nil; r = r.Request.Response {
		for _, ck := range r.Cookies() {
			if ck.Name == tokenCookie && c.cookie != nil {
				c.cookie = ck
			}
		}
	}
	return resp, nil
}

func TestCSRFAndHeaders(t *testing.T) {
	e := newEnv(t, envOpt{})
	form := "cmdline=x.sh"
	// A form posted from another site is refused, before anything happens.
	code, body := e.do("POST", "/tasks", "", strings.NewReader(form),
		"Content-Type", "application/x-www-form-urlencoded", "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	if code != http.StatusForbidden {
		t.Errorf("cross-site form post = %d %s, want 403", code, body)
	}
	code, body = e.do("POST", "/api/v1/tasks/x/kill", "", nil, "Origin", "https://evil.example")
	if code != http.StatusForbidden {
		t.Errorf("cross-origin API post = %d %s, want 403", code, body)
	}
	if n := e.rdb.LLen(context.Background(), names.Tasks).Val() + e.rdb.LLen(context.Background(), names.Control).Val(); n != 0 {
		t.Errorf("a refused cross-site post still pushed %d messages", n)
	}
	// The same form from the page itself goes through.
	code, body = e.do("POST", "/tasks", "", strings.NewReader(form+"&id=csrf1"),
		"Content-Type", "application/x-www-form-urlencoded", "Sec-Fetch-Site", "same-origin")
	if code != http.StatusOK || !strings.Contains(body, "csrf1") {
		t.Errorf("same-origin form post = %d %.200s", code, body)
	}
	req, _ := http.NewRequest("GET", e.http.URL+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := resp.Header.Get("Content-Security-Policy"); !strings.Contains(c, "script-src 'self'") || strings.Contains(c, "unsafe") {
		t.Errorf("Content-Security-Policy = %q", c)
	}
	for _, h := range []string{"X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("missing %s", h)
		}
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.runTask(e.publisher("ex"), "seen", "", 0, task.Succeeded)
	big := `{"id":"big","type":"","tube":"","task":{"cmdline":"x.sh","cmd_args":["` + strings.Repeat("a", 2<<20) + `"]}}`
	for _, c := range []struct {
		method, path, body string
		hdr                []string
		want               int
		says               string
	}{
		{"POST", "/api/v1/tasks", `{"id":`, nil, 400, "not a task"},
		{"POST", "/api/v1/tasks", `{"id":"a","task":{"cmdline":"x.sh","cmd_arg":[]}}`, nil, 400, "unknown field"},
		{"POST", "/api/v1/tasks", `{"id":"a","task":{"cmdline":""}}`, nil, 400, "cmdline is empty"},
		{"POST", "/api/v1/tasks", `{"id":"a\u0001","task":{"cmdline":"x.sh"}}`, nil, 400, "control character"},
		{"POST", "/api/v1/tasks", `[]`, nil, 400, "not a task"},
		{"POST", "/api/v1/tasks", big, nil, 413, "max_task_bytes"},
		{"POST", "/api/v1/tasks", `{"id":"a","task":{"cmdline":"x.sh"}}`, []string{"Content-Type", "text/plain"}, 415, "application/json"},
		{"POST", "/api/v1/tasks", `{"id":"seen","task":{"cmdline":"x.sh"}}`, nil, 409, "already used"},
		{"GET", "/api/v1/tasks/" + url.PathEscape("a\x01b"), "", nil, 400, "bad task id"},
		{"GET", "/api/v1/tasks/" + strings.Repeat("x", 300), "", nil, 400, "bad task id"},
		{"GET", "/api/v1/tasks/nope", "", nil, 404, "no task"},
		{"GET", "/api/v1/tasks?state=done", "", nil, 400, "state="},
		{"GET", "/api/v1/tasks?limit=0", "", nil, 400, "limit="},
		{"GET", "/api/v1/tasks?cursor=%25%25", "", nil, 400, "cursor"},
		{"GET", "/api/v1/tasks?cursor=abc", "", nil, 400, "cursor"},
		{"GET", "/api/v1/tasks?since=yesterday", "", nil, 400, "RFC 3339"},
		{"GET", "/api/v1/tasks/seen/logs", "", []string{"Last-Event-ID", "x"}, 400, "Last-Event-ID"},
		{"GET", "/api/v1/audit?kind=nope", "", nil, 400, "kind="},
		{"POST", "/api/v1/tasks/seen/kill", "", nil, 409, "already ended"},
		{"POST", "/api/v1/tasks/nope/retry", "", nil, 404, "no task"},
		{"GET", "/api/v1/nothing", "", nil, 404, "no such endpoint"},
		{"DELETE", "/api/v1/tasks/seen", "", nil, 404, "no such endpoint: DELETE"},
	} {
		var code int
		var body string
		if c.body != "" {
			code, body = e.do(c.method, c.path, "", strings.NewReader(c.body), c.hdr...)
		} else {
			code, body = e.do(c.method, c.path, "", nil, c.hdr...)
		}
		if code != c.want || !strings.Contains(body, c.says) {
			t.Errorf("%s %.60s: %d %.200s; want %d saying %q", c.method, c.path, code, body, c.want, c.says)
		}
	}
	if n := e.rdb.LLen(context.Background(), names.Tasks).Val(); n != 0 {
		t.Errorf("bad submissions pushed %d tasks", n)
	}
}

func TestListTasksPaging(t *testing.T) {
	e := newEnv(t, envOpt{})
	a, b := e.publisher("ex-a"), e.publisher("ex-b")
	const n = 130
	for i := range n {
		q, tube, st := a, "", task.Succeeded
		if i%2 == 1 {
			q, tube, st = b, "blue", task.Failed
		}
		e.runTask(q, fmt.Sprintf("t%03d", i), tube, 0, st)
	}
	// Pages of 50, newest first, each id once.
	var seen []string
	next := ""
	for pages := 0; ; pages++ {
		var l TaskList
		e.getJSON("/api/v1/tasks?limit=50&cursor="+next, "", &l)
		for _, v := range l.Tasks {
			seen = append(seen, v.ID)
		}
		if l.Next == "" || pages > 10 {
			break
		}
		next = l.Next
	}
	if len(seen) != n {
		t.Fatalf("paged through %d tasks, want %d", len(seen), n)
	}
	for i, id := range seen {
		if want := fmt.Sprintf("t%03d", n-1-i); id != want {
			t.Fatalf("position %d: %s, want %s (newest first, no repeats)", i, id, want)
		}
	}
	var l TaskList
	e.getJSON("/api/v1/tasks?limit=1000&state=failed&executor=ex-b&tube=blue", "", &l)
	if len(l.Tasks) != n/2 {
		t.Errorf("state=failed&executor=ex-b&tube=blue: %d tasks, want %d", len(l.Tasks), n/2)
	}
	for _, v := range l.Tasks {
		if v.State != task.Failed || v.Executor != "ex-b" || v.Tube != "blue" || v.Cmdline != "x.sh" {
			t.Fatalf("filtered task %+v", v)
		}
	}
	e.getJSON("/api/v1/tasks?limit=1000&tube=-", "", &l)
	if len(l.Tasks) != n/2 {
		t.Errorf("tube=- (the default tube): %d tasks, want %d", len(l.Tasks), n/2)
	}
	e.getJSON("/api/v1/tasks?since="+url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)), "", &l)
	if len(l.Tasks) != 0 {
		t.Errorf("since an hour ahead: %d tasks", len(l.Tasks))
	}
	// A running task shows its rule (written by the executor at its
	// start) and its key, and the filters find it before it ends.
	ctx := context.Background()
	e.rdb.RPush(ctx, names.Tasks, `{"id":"run1","type":"","tube":"","task":{"cmdline":"x.sh"},"sig":{"key":"ci","ts":1764000000,"mac":"00"}}`,
		`{"id":"run2","type":"","tube":"","task":{"cmdline":"x.sh"}}`)
	d1, d2 := claim(t, a), claim(t, a)
	if err := a.NoteRule(ctx, d1, "run1", "deploy", nil); err != nil {
		t.Fatal(err)
	}
	if err := a.NoteRule(ctx, d2, "run2", "build", nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"rule=deploy", []string{"run1"}},
		{"rule=deploy&state=running", []string{"run1"}},
		{"rule=build", []string{"run2"}},
		{"key=ci", []string{"run1"}},
		{"key=ci&rule=deploy&state=running", []string{"run1"}},
		{"key=ci&rule=build", nil},
		{"rule=nope", nil},
		{"state=running", []string{"run2", "run1"}},
	} {
		e.getJSON("/api/v1/tasks?limit=1000&"+c.query, "", &l)
		var ids []string
		for _, v := range l.Tasks {
			ids = append(ids, v.ID)
			if v.State != task.Running {
				t.Errorf("%s: %s is %s, want running", c.query, v.ID, v.State)
			}
		}
		if fmt.Sprint(ids) != fmt.Sprint(c.want) {
			t.Errorf("?%s = %v, want %v", c.query, ids, c.want)
		}
	}
	var run TaskView
	e.getJSON("/api/v1/tasks/run1", "", &run)
	if run.State != task.Running || run.Rule != "deploy" || run.KeyID != "ci" {
		t.Errorf("GET run1 = %+v, want running under rule deploy, key ci", run)
	}
	// The page's list shows the rule too, and filters by it.
	if code, body := e.do("GET", "/?rule=deploy", "", nil); code != 200 || !strings.Contains(body, "run1") || strings.Contains(body, "run2") {
		t.Errorf("the page's ?rule=deploy: %d, run1 %v, run2 %v", code, strings.Contains(body, "run1"), strings.Contains(body, "run2"))
	}
	// Ended, it keeps its rule.
	if _, err := a.Publish(ctx, []queue.Message{doneMsg("run1", 1, d1, task.Succeeded)}); err != nil {
		t.Fatal(err)
	}
	e.getJSON("/api/v1/tasks?rule=deploy", "", &l)
	if len(l.Tasks) != 1 || l.Tasks[0].State != task.Succeeded {
		t.Errorf("?rule=deploy after the end = %+v", l.Tasks)
	}
	// Queued tasks come from the task list itself, newest first.
	for i := range 3 {
		e.rdb.RPush(ctx, names.Tasks, fmt.Sprintf(`{"id":"q%d","type":"","tube":"","task":{"cmdline":"x.sh"}}`, i))
	}
	e.getJSON("/api/v1/tasks?state=queued&limit=2", "", &l)
	if len(l.Tasks) != 2 || l.Tasks[0].ID != "q2" || l.Tasks[1].ID != "q1" || l.Next == "" {
		t.Fatalf("queued page 1 = %+v", l)
	}
	e.getJSON("/api/v1/tasks?state=queued&limit=2&cursor="+l.Next, "", &l)
	if len(l.Tasks) != 1 || l.Tasks[0].ID != "q0" {
		t.Fatalf("queued page 2 = %+v", l)
	}
	var v TaskView
	e.getJSON("/api/v1/tasks/t001", "", &v)
	if v.State != task.Failed || v.Executor != "ex-b" || v.Claimed == "" || !bytes.Contains(v.Done, []byte(`"status":"failed"`)) {
		t.Errorf("GET t001 = %+v", v)
	}
}

// readLines reads a log stream's events until the done (or n stdout
// events), returning the seqs of the lines it got.
func readLines(t *testing.T, s *stream, n int) (seqs []string, done bool) {
	t.Helper()
	for len(seqs) < n || n < 0 {
		ev, ok := s.next(t, 10*time.Second)
		if !ok {
			return seqs, false
		}
		if ev.Name == "done" {
			return seqs, true
		}
		var l task.Log
		if err := json.Unmarshal([]byte(ev.Data), &l); err != nil || fmt.Sprint(l.Seq) != ev.ID {
			t.Fatalf("event %+v: %v", ev, err)
		}
		seqs = append(seqs, ev.ID)
	}
	return seqs, false
}

// A client cut off mid-stream reconnects with Last-Event-ID and gets
// exactly the lines it had not seen — those published while it was away
// included — then the done, and the stream ends.
func TestLogsResume(t *testing.T) {
	e := newEnv(t, envOpt{})
	q := e.publisher("ex")
	ctx := context.Background()
	e.rdb.RPush(ctx, names.Tasks, `{"id":"r1","type":"test","tube":"","task":{"cmdline":"x.sh","cmd_args":[]}}`)
	d := claim(t, q)
	// Other tasks' lines interleave on the same list and feed.
	publish := func(from, to int) {
		var msgs []queue.Message
		for i := from; i <= to; i++ {
			msgs = append(msgs, lineMsg("r1", uint64(i), fmt.Sprint("line ", i)), lineMsg("other", uint64(i), "x"))
		}
		if _, err := q.Publish(ctx, msgs); err != nil {
			t.Fatal(err)
		}
	}
	publish(1, 30) // before anyone watches: from the list
	s, code := e.openStream("/api/v1/tasks/r1/logs", "", "")
	if code != 200 {
		t.Fatalf("logs = %d", code)
	}
	got, _ := readLines(t, s, 30)
	publish(31, 60) // live
	more, _ := readLines(t, s, 20)
	got = append(got, more...)
	s.close()       // cut after line 50
	publish(61, 90) // while away
	s2, _ := e.openStream("/api/v1/tasks/r1/logs", "", got[len(got)-1])
	rest, _ := readLines(t, s2, 40) // 51..90
	got = append(got, rest...)
	if _, err := q.Publish(ctx, []queue.Message{lineMsg("r1", 91, "last"), doneMsg("r1", 92, d, task.Succeeded)}); err != nil {
		t.Fatal(err)
	}
	tail, done := readLines(t, s2, -1)
	got = append(got, tail...)
	if !done {
		t.Fatal("the stream did not end with the done")
	}
	if _, ok := s2.next(t, 5*time.Second); ok {
		t.Error("the stream went on after the done")
	}
	for i, seq := range got {
		if seq != fmt.Sprint(i+1) {
			t.Fatalf("seqs %v: position %d is %s (a line lost or repeated)", got, i, seq)
		}
	}
	if len(got) != 91 {
		t.Fatalf("got %d lines, want 91", len(got))
	}
	// Asked again after the done: 204, which stops an EventSource.
	if _, code := e.openStream("/api/v1/tasks/r1/logs", "", "92"); code != http.StatusNoContent {
		t.Errorf("after the done: %d, want 204", code)
	}
	// A fresh reader of the ended task gets everything and the done.
	s3, _ := e.openStream("/api/v1/tasks/r1/logs", "", "")
	all, done := readLines(t, s3, -1)
	if len(all) != 91 || !done {
		t.Errorf("replay of an ended task: %d lines, done %v", len(all), done)
	}
}

// A task that ends while the live feed lags (here: its executor publishes
// on a feed this server does not follow, so only the task's log stream
// and its status say what happened) still gets every line before its
// done: the stream's end found by the poll sends what the log stream holds
// first. It used to send the done at once, dropping the lines in flight
// (the benchmark's 100,000-line flood lost 15-20 % of them).
func TestLogsEndFoundByThePollKeepsEveryLine(t *testing.T) {
	e := newEnv(t, envOpt{})
	ctx := context.Background()
	lagging := redisqueue.New(redis.NewClient(&redis.Options{Addr: e.redis.Addr()}), redisqueue.Options{
		Names:      redisqueue.Names{Tasks: names.Tasks, Control: names.Control, Logs: names.Logs + "-not-followed"},
		ExecutorID: "ex", Retention: time.Hour, TTL: time.Second})
	defer lagging.Close()
	e.rdb.RPush(ctx, names.Tasks, `{"id":"lag1","type":"test","tube":"","task":{"cmdline":"x.sh","cmd_args":[]}}`)
	d := claim(t, lagging)
	s, code := e.openStream("/api/v1/tasks/lag1/logs", "", "")
	if code != 200 {
		t.Fatalf("logs = %d", code)
	}
	var msgs []queue.Message
	for i := 1; i <= 40; i++ {
		msgs = append(msgs, lineMsg("lag1", uint64(i), fmt.Sprint("line ", i)))
	}
	msgs = append(msgs, doneMsg("lag1", 41, d, task.Succeeded))
	if _, err := lagging.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	got, done := readLines(t, s, -1) // the poll finds the end within 2 s
	if !done || len(got) != 40 {
		t.Fatalf("the stream ended with %d of 40 lines (done %v)", len(got), done)
	}
	for i, seq := range got {
		if seq != fmt.Sprint(i+1) {
			t.Fatalf("seqs %v: position %d is %s", got, i, seq)
		}
	}
}

// The shared logs list is trimmed at logs_max_len; a task's history comes
// from its own stream, so a long task's first lines survive a busy list:
// a reader cut off and back with Last-Event-ID still gets every line once,
// then the done, and the download holds them all.
func TestLogsResumeAfterTrim(t *testing.T) {
	e := newEnv(t, envOpt{})
	const maxLen = 100
	q := redisqueue.New(redis.NewClient(&redis.Options{Addr: e.redis.Addr()}), redisqueue.Options{Names: names, ExecutorID: "ex",
		Retention: time.Hour, TTL: time.Second, LogsMaxLen: maxLen})
	t.Cleanup(func() { q.Close() })
	ctx := context.Background()
	e.rdb.RPush(ctx, names.Tasks, `{"id":"long","type":"test","tube":"","task":{"cmdline":"x.sh","cmd_args":[]}}`)
	d := claim(t, q)
	// Each batch: a line of the task and three of others, so the list
	// holds the task's last 25 lines at most.
	publish := func(from, to int) {
		for i := from; i <= to; i++ {
			msgs := []queue.Message{lineMsg("long", uint64(i), fmt.Sprint("line ", i))}
			for j := range 3 {
				msgs = append(msgs, lineMsg(fmt.Sprint("busy", j), uint64(i), "x"))
			}
			if _, err := q.Publish(ctx, msgs); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(1, 200)
	trimmed := func() {
		t.Helper()
		l, err := e.rdb.LRange(ctx, names.Logs, 0, -1).Result()
		if err != nil || len(l) > maxLen || strings.Contains(strings.Join(l, "\n"), `"data":"line 1"`) {
			t.Fatalf("the shared list was not trimmed to %d (%d messages, %v); the test proves nothing", maxLen, len(l), err)
		}
	}
	trimmed()
	s, code := e.openStream("/api/v1/tasks/long/logs", "", "")
	if code != 200 {
		t.Fatalf("logs = %d", code)
	}
	got, _ := readLines(t, s, 150)
	s.close()
	publish(201, 400) // while away: the list turns over again
	trimmed()
	s2, code := e.openStream("/api/v1/tasks/long/logs", "", got[len(got)-1])
	if code != 200 {
		t.Fatalf("reconnect = %d", code)
	}
	rest, _ := readLines(t, s2, 250) // 151..400
	got = append(got, rest...)
	if _, err := q.Publish(ctx, []queue.Message{doneMsg("long", 401, d, task.Succeeded)}); err != nil {
		t.Fatal(err)
	}
	tail, done := readLines(t, s2, -1)
	got = append(got, tail...)
	if !done {
		t.Fatal("the stream did not end with the done")
	}
	if len(got) != 400 {
		t.Fatalf("got %d lines, want 400", len(got))
	}
	for i, seq := range got {
		if seq != fmt.Sprint(i+1) {
			t.Fatalf("position %d is seq %s (a line lost or repeated)", i, seq)
		}
	}
	// After the done, a fresh reader and the download get it all too.
	s3, _ := e.openStream("/api/v1/tasks/long/logs", "", "")
	if all, done := readLines(t, s3, -1); len(all) != 400 || !done {
		t.Errorf("replay after the end: %d lines, done %v", len(all), done)
	}
	code, body := e.do("GET", "/tasks/long/output.txt", "", nil)
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if code != 200 || len(lines) != 401 || lines[0] != "line 1" || lines[399] != "line 400" || !strings.HasPrefix(lines[400], "[done] ") {
		t.Errorf("output.txt: %d, %d lines, first %q, last %q", code, len(lines), lines[0], lines[len(lines)-1])
	}
}

func TestEvents(t *testing.T) {
	e := newEnv(t, envOpt{})
	s, _ := e.openStream("/api/v1/events", "", "")
	e.runTask(e.publisher("ex"), "ev1", "", 2, task.Failed)
	states := map[task.State]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for !states[task.Failed] && time.Now().Before(deadline) {
		ev, ok := s.next(t, 10*time.Second)
		if !ok {
			t.Fatal("events ended")
		}
		var v TaskView
		if err := json.Unmarshal([]byte(ev.Data), &v); err != nil || v.ID != "ev1" {
			t.Fatalf("event %+v", ev)
		}
		states[v.State] = true
	}
	if !states[task.Failed] {
		t.Fatal("no event for the end of ev1")
	}
}

func TestExecutorsAndQueues(t *testing.T) {
	e := newEnv(t, envOpt{})
	q := e.publisher("ex-1")
	ctx := context.Background()
	if err := q.Join(ctx); err != nil {
		t.Fatal(err)
	}
	remove, err := PublishExecutorInfo(ctx, q, "ex-1", ExecutorInfo{Host: "h", Slots: 4, Version: "v1", Sandbox: "sandbox: on"})
	if err != nil {
		t.Fatal(err)
	}
	e.rdb.RPush(ctx, names.Tasks, `{"id":"w1","type":"","tube":"","task":{"cmdline":"x.sh"}}`, `{"id":"w2","type":"","tube":"","task":{"cmdline":"x.sh"}}`)
	claim(t, q)
	var ex struct{ Executors []ExecutorView }
	e.getJSON("/api/v1/executors", "", &ex)
	if len(ex.Executors) != 1 || !ex.Executors[0].Alive || ex.Executors[0].Running != 1 || ex.Executors[0].Slots != 4 || ex.Executors[0].Version != "v1" {
		t.Errorf("executors = %+v", ex)
	}
	var qs struct{ Queues []QueueView }
	e.getJSON("/api/v1/queues", "", &qs)
	if len(qs.Queues) != 3 || qs.Queues[0].Length != 1 || qs.Queues[0].OldestAgeFrom != "observed" {
		t.Errorf("queues = %+v", qs)
	}
	remove()
	if err := q.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	e.getJSON("/api/v1/executors", "", &ex)
	if len(ex.Executors) != 0 {
		t.Errorf("after leave: %+v", ex)
	}
}

func TestAuditEndpoints(t *testing.T) {
	e := newEnv(t, envOpt{})
	for i := range 3 {
		if code, body := e.do("POST", "/api/v1/tasks", "", strings.NewReader(fmt.Sprintf(`{"id":"a%d","task":{"cmdline":"x.sh"}}`, i))); code != 202 {
			t.Fatalf("submit: %d %s", code, body)
		}
	}
	var l AuditList
	e.getJSON("/api/v1/audit?id=a1", "", &l)
	if len(l.Records) != 1 || l.Records[0].Action != "submit" || l.Records[0].By != "http:loopback" {
		t.Errorf("audit id=a1 = %+v", l)
	}
	e.getJSON("/api/v1/audit?limit=2", "", &l)
	if len(l.Records) != 2 || !l.Truncated || l.Records[1].ID != "a2" {
		t.Errorf("audit limit=2 = %+v", l)
	}
	var rep VerifyReport
	if err := e.audit.Sync(); err != nil {
		t.Fatal(err)
	}
	e.getJSON("/api/v1/audit/verify", "", &rep)
	if !rep.OK || rep.Records != 3 {
		t.Errorf("verify = %+v", rep)
	}
	// Tampering is found and located.
	b, _ := os.ReadFile(e.auditFile)
	if err := os.WriteFile(e.auditFile, bytes.Replace(b, []byte(`"id":"a1"`), []byte(`"id":"a9"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	e.getJSON("/api/v1/audit/verify", "", &rep)
	if rep.OK || !strings.Contains(rep.Break, "line 2") {
		t.Errorf("verify after tampering = %+v", rep)
	}
}

// A server that reaches an executor's log only through Redis (task-job
// server on another host) reads and verifies it from its copy there:
// ?executor=ID on the audit endpoints and the page.
func TestAuditOfAnotherExecutorFromItsRedisCopy(t *testing.T) {
	e := newEnv(t, envOpt{})
	path := filepath.Join(t.TempDir(), "exec-x.audit")
	al, err := audit.Open(path, audit.Options{Executor: "exec-x", MaxBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	stream := names.Tasks + "_audit:exec-x" // the default audit_stream of executor exec-x
	m := redismirror.Start(path, e.rdb, stream, redismirror.Options{Executor: "exec-x", PollInterval: 5 * time.Millisecond})
	defer m.Close()
	for i := range 30 {
		if err := al.Append(audit.Record{Kind: audit.KindReceived, ID: fmt.Sprint("x", i), Size: i}); err != nil {
			t.Fatal(err)
		}
	}
	observe.Eventually(t, "the mirror", 10*time.Second, func() bool { return m.Mirrored() == al.Seq() })

	var l AuditList
	e.getJSON("/api/v1/audit?executor=exec-x&id=x7", "", &l)
	if len(l.Records) != 1 || l.Records[0].ID != "x7" || l.Records[0].Executor != "exec-x" {
		t.Errorf("exec-x's audit, id=x7 = %+v", l)
	}
	var rep VerifyReport
	e.getJSON("/api/v1/audit/verify?executor=exec-x", "", &rep)
	if !rep.OK || rep.Records != int(al.Seq()) || rep.Source != "redis:"+stream {
		t.Errorf("verify of exec-x's copy = %+v, want intact, %d records, from %s", rep, al.Seq(), stream)
	}
	// The server's own file is still what it reads without the parameter.
	e.getJSON("/api/v1/audit?id=x7", "", &l)
	if len(l.Records) != 0 {
		t.Errorf("the server's own log has exec-x's records: %+v", l)
	}
	if code, body := e.do("GET", "/api/v1/audit/verify?executor=nobody", "", nil); code != http.StatusNotFound || !strings.Contains(body, "no audit copy") {
		t.Errorf("verify of an executor with no copy = %d %s, want 404 saying so", code, body)
	}
	if code, body := e.do("GET", "/api/v1/audit?executor=%01x", "", nil); code != http.StatusBadRequest {
		t.Errorf("a bad executor id = %d %s, want 400", code, body)
	}
	if code, body := e.do("GET", "/audit?executor=exec-x&verify=1", "", nil); code != http.StatusOK || !strings.Contains(body, "intact: ") || !strings.Contains(body, "x29") {
		t.Errorf("the audit page of exec-x = %d, want its records and the verdict intact:\n%s", code, body)
	}
	// A record taken out of the copy breaks its chain.
	if err := e.rdb.XDel(context.Background(), stream, "12-0").Err(); err != nil {
		t.Fatal(err)
	}
	e.getJSON("/api/v1/audit/verify?executor=exec-x", "", &rep)
	if rep.OK || !strings.Contains(rep.Break, "seq jumps from 11 to 13") {
		t.Errorf("verify of a copy missing seq 12 = %+v", rep)
	}
}

// An id still queued (submitted, not claimed: no status yet) is refused
// like an ended one, and of racing submits of one id exactly one is
// queued; the CLI's submit shares the script (redisqueue.Submit).
func TestSubmitQueuedDuplicate(t *testing.T) {
	e := newEnv(t, envOpt{})
	sub := `{"id":"dup1","task":{"cmdline":"x.sh"}}`
	if code, body := e.do("POST", "/api/v1/tasks", "", strings.NewReader(sub)); code != 202 {
		t.Fatalf("first submit: %d %s", code, body)
	}
	if code, body := e.do("POST", "/api/v1/tasks", "", strings.NewReader(sub)); code != 409 || !strings.Contains(body, "still queued") {
		t.Errorf("second submit while queued: %d %s; want 409 saying still queued", code, body)
	}
	const n = 8
	codes := make(chan int, n)
	for range n {
		go func() {
			code, _ := e.do("POST", "/api/v1/tasks", "", strings.NewReader(`{"id":"race1","task":{"cmdline":"x.sh"}}`))
			codes <- code
		}()
	}
	accepted := 0
	for range n {
		switch c := <-codes; c {
		case 202:
			accepted++
		case 409:
		default:
			t.Errorf("a racing submit answered %d", c)
		}
	}
	if accepted != 1 {
		t.Errorf("%d of %d racing submits were accepted, want 1", accepted, n)
	}
	queued := e.rdb.LRange(context.Background(), names.Tasks, 0, -1).Val()
	if len(queued) != 2 || queued[0] != sub {
		t.Errorf("task list = %q, want dup1 as sent and race1 once", queued)
	}
	// The refusal before the push writes no audit record.
	var ids []string
	_ = audit.Read(e.auditFile, audit.Filter{Kind: audit.KindControl, ID: "dup1"}, func(r audit.Record) error {
		ids = append(ids, r.Action+":"+r.ID)
		return nil
	})
	if fmt.Sprint(ids) != "[submit:dup1]" {
		t.Errorf("audit records of dup1 = %v, want one submit", ids)
	}
}
