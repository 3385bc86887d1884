package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/policy"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/observe"
)

// The secrets of dryRunPolicy: none may appear in any answer.
var dryRunSecrets = []string{"ghp_s3cretvalue", "hunter2pw", "plain-but-listed"}

const dryRunPolicy = `
defaults {
  user    = "nobody"
  memory  = "256MiB"
  timeout = "30m"
  env     = { LANG = "C.UTF-8", GITHUB_TOKEN = "ghp_s3cretvalue" }
}
rule "install" {
  description = "install a feature branch"
  cmdline = "install.sh"
  args    = ["feature/[a-z]+"]
  cpu     = 2
  pids    = 64
  network = true
  timeout = "1h"
  cmd_dir_writable = true
  env     = { DB_PASSWORD = "hunter2pw", MODE = "fast", HOOK = "plain-but-listed" }
  secret_env = ["HOOK"]
}
rule "deploy" {
  cmdline = "deploy.sh"
  keys    = ["ci"]
}
`

func noSecrets(t *testing.T, what, body string) {
	t.Helper()
	for _, s := range dryRunSecrets {
		if strings.Contains(body, s) {
			t.Errorf("%s shows the secret %q: %.400s", what, s, body)
		}
	}
}

func TestPolicyCheckAPI(t *testing.T) {
	e := newEnv(t, envOpt{tokens: true, policy: dryRunPolicy})
	reader := e.tokens["reader"]
	before, _ := e.rdb.DBSize(context.Background()).Result()

	// Allowed: the rule, every effective limit, env masked.
	code, body := e.do("POST", "/api/v1/policy/check", reader,
		strings.NewReader(`{"id":"d1","type":"t","tube":"","task":{"cmdline":"install.sh","cmd_args":["feature/abc"],"timeout":7200}}`))
	if code != http.StatusOK {
		t.Fatalf("allowed: %d %s", code, body)
	}
	noSecrets(t, "the allowed decision", body)
	var c PolicyCheck
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatal(err)
	}
	l := c.Limits
	if !c.Allowed || c.Rule != "install" || c.RuleLine == 0 || c.RuleDescription == "" || l == nil || c.Policy != "test.hcl" {
		t.Fatalf("allowed: %s", body)
	}
	if l.User != "nobody" || l.MemoryBytes != 256<<20 || l.CPUCores != 2 || l.Pids != 64 || !l.Network || !l.CmdDirWritable || l.Timeout != time.Hour {
		t.Errorf("limits %+v", *l)
	}
	wantEnv := []string{"DB_PASSWORD=" + policy.Masked, "GITHUB_TOKEN=" + policy.Masked, "HOOK=" + policy.Masked, "LANG=C.UTF-8", "MODE=fast"}
	if fmt.Sprint(l.Env) != fmt.Sprint(wantEnv) {
		t.Errorf("env %q, want %q", l.Env, wantEnv)
	}
	if len(c.Notes) == 0 || !strings.Contains(strings.Join(c.Notes, "\n"), "lowered to the rule's cap") {
		t.Errorf("notes %q: want the timeout cap said", c.Notes)
	}
	if c.Task.ID != "d1" || c.Task.Cmdline != "install.sh" || c.SignatureVerified {
		t.Errorf("task %+v", c.Task)
	}

	// Denied: allowed false with the reason, still a 200 (it is an answer).
	for in, reason := range map[string]string{
		`{"id":"d2","task":{"cmdline":"install.sh","cmd_args":["main"]}}`: `rule "install" refuses argument 1 "main"`,
		`{"id":"d3","task":{"cmdline":"rm.sh"}}`:                          `no rule allows cmdline "rm.sh"`,
		`{"id":"d4","task":{"cmdline":"deploy.sh"}}`:                      `rule "deploy" is only for keys ["ci"], the task is unsigned`,
	} {
		code, body := e.do("POST", "/api/v1/policy/check", reader, strings.NewReader(in))
		c = PolicyCheck{}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &c) != nil || c.Allowed || !strings.Contains(c.Reason, reason) || c.Limits != nil {
			t.Errorf("%s: %d %s, want refused with %q", in, code, body, reason)
		}
	}
	// A signed task is decided as if its signature held, and says so.
	code, body = e.do("POST", "/api/v1/policy/check", reader,
		strings.NewReader(`{"id":"d5","task":{"cmdline":"deploy.sh"},"sig":{"key":"ci","ts":1,"mac":"`+strings.Repeat("a", 64)+`"}}`))
	if c = (PolicyCheck{}); code != http.StatusOK || json.Unmarshal([]byte(body), &c) != nil || !c.Allowed || c.Task.KeyID != "ci" || c.SignatureVerified {
		t.Errorf("signed: %d %s", code, body)
	}

	// Bad input: a 4xx with a reason.
	for _, bad := range []struct {
		body, ctype string
		code        int
		want        string
	}{
		{`{"id":`, "", 400, "not a task"},
		{`not json`, "", 400, "not a task"},
		{`{"id":7,"task":{"cmdline":"install.sh"}}`, "", 400, "not a task"},
		{`{"id":"x","task":{"cmdline":["install.sh"]}}`, "", 400, "not a task"},
		{`{"id":"x","task":{"cmdline":"install.sh"},"extra":1}`, "", 400, "unknown field"},
		{`[]`, "", 400, "not a task"},
		{``, "", 400, "no task"},
		{`{"id":"x","task":{"cmdline":"install.sh"}}`, "text/plain", 415, "application/json"},
		{`{"id":"x","task":{"cmdline":"` + strings.Repeat("a", 2<<20) + `"}}`, "", 413, "over"},
	} {
		hdr := []string{}
		if bad.ctype != "" {
			hdr = []string{"Content-Type", bad.ctype}
		}
		code, body := e.do("POST", "/api/v1/policy/check", reader, strings.NewReader(bad.body), hdr...)
		var eb errorBody
		if code != bad.code || json.Unmarshal([]byte(body), &eb) != nil || !strings.Contains(eb.Error, bad.want) {
			t.Errorf("%.60q: %d %.200s, want %d with %q", bad.body, code, body, bad.code, bad.want)
		}
	}
	// Nothing was queued or written in Redis.
	if after, _ := e.rdb.DBSize(context.Background()).Result(); after != before {
		t.Errorf("the dry runs changed Redis: %d keys before, %d after", before, after)
	}
	if n, _ := e.rdb.LLen(context.Background(), names.Tasks).Result(); n != 0 {
		t.Errorf("%d tasks queued by a dry run", n)
	}

	// Without a policy there is nothing to dry-run against: a 409 saying so.
	e2 := newEnv(t, envOpt{})
	code, body = e2.do("POST", "/api/v1/policy/check", "", strings.NewReader(`{"id":"x","task":{"cmdline":"a.sh"}}`))
	if code != http.StatusConflict || !strings.Contains(body, "no policy loaded") {
		t.Errorf("no policy: %d %s", code, body)
	}
}

func postForm(e *env, path, token string, form url.Values, hdr ...string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.http.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestPolicyPage(t *testing.T) {
	e := newEnv(t, envOpt{tokens: true, policy: dryRunPolicy})
	reader := e.tokens["reader"]

	code, body := e.do("GET", "/policy", reader, nil)
	if code != http.StatusOK || !strings.Contains(body, `<form method="post" action="/policy"`) || !strings.Contains(body, `<textarea name="task"`) ||
		!strings.Contains(body, `href="/policy" class="on"`) || strings.Contains(body, "<script>") {
		t.Fatalf("GET /policy: %d %.600s", code, body)
	}

	// Allowed: the rule and its limits on the page, secrets masked.
	code, body = postForm(e, "/policy", reader, url.Values{"task": {`{"id":"p1","task":{"cmdline":"install.sh","cmd_args":["feature/abc"]}}`}},
		"Sec-Fetch-Site", "same-origin")
	if code != http.StatusOK {
		t.Fatalf("allowed: %d %.600s", code, body)
	}
	for _, want := range []string{`Allowed by rule <span class="mono" id="decision-rule">install</span>`, "test.hcl:", "nobody", "268435456 bytes",
		"2 cores", "64", "1h0m0s", "the host's", "writable", "MODE=fast", "DB_PASSWORD=" + policy.Masked, "HOOK=" + policy.Masked,
		"cmd_dir is writable for this task", "feature/abc"} {
		if !strings.Contains(body, want) {
			t.Errorf("the allowed page lacks %q", want)
		}
	}
	noSecrets(t, "the allowed page", body)
	// The pasted task stays in the form, to edit and check again.
	if !strings.Contains(body, `&#34;cmdline&#34;:&#34;install.sh&#34;`) {
		t.Errorf("the form lost the pasted task: %.800s", body)
	}

	// Denied: the reason.
	code, body = postForm(e, "/policy", reader, url.Values{"task": {`{"id":"p2","task":{"cmdline":"install.sh","cmd_args":["main"]}}`}})
	if code != http.StatusOK || !strings.Contains(body, "Refused") || !strings.Contains(body, `refuses argument 1 &#34;main&#34;`) {
		t.Errorf("denied: %d %.800s", code, body)
	}
	// Malformed: a 400 page with the reason, and the input kept.
	code, body = postForm(e, "/policy", reader, url.Values{"task": {`{"id": 12, <b>`}})
	if code != http.StatusBadRequest || !strings.Contains(body, "not a task an executor would take") || !strings.Contains(body, "&lt;b&gt;") || strings.Contains(body, "<b>") {
		t.Errorf("malformed: %d %.800s", code, body)
	}
	code, body = postForm(e, "/policy", reader, url.Values{"task": {strings.Repeat("x", 4<<20)}})
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "too big") {
		t.Errorf("huge: %d %.300s", code, body)
	}
	// A cross-site form post is refused, as for every other form.
	code, body = postForm(e, "/policy", reader, url.Values{"task": {`{"id":"p3","task":{"cmdline":"install.sh"}}`}},
		"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	if code != http.StatusForbidden || strings.Contains(body, "Refused") {
		t.Errorf("cross-site: %d %.300s", code, body)
	}
}

// A started task shows the env its rule gave it, with secret values masked
// in the API, the page and the status hash it is read from.
func TestTaskEnvMasked(t *testing.T) {
	e := newEnv(t, envOpt{tokens: true})
	e.startExecutor(fmt.Sprintf("api-%d-%s", os.Getpid(), t.Name()), `
rule "hello" {
  cmdline    = "env.sh"
  env        = { GITHUB_TOKEN = "ghp_s3cretvalue", DB_PASSWORD = "hunter2pw", HOOK = "plain-but-listed", MODE = "fast" }
  secret_env = ["HOOK"]
}
`, map[string]string{"env.sh": `test "$HOOK" = plain-but-listed && echo ok`})
	admin := e.tokens["admin"]
	id := submitJSON(t, e, admin, `{"id":"env1","type":"t","task":{"cmdline":"env.sh"}}`)
	v := e.waitState(id, admin, task.Succeeded, 20*time.Second)
	want := []string{"DB_PASSWORD=" + policy.Masked, "GITHUB_TOKEN=" + policy.Masked, "HOOK=" + policy.Masked, "MODE=fast"}
	if fmt.Sprint(v.Env) != fmt.Sprint(want) {
		t.Errorf("env %q, want %q", v.Env, want)
	}
	code, body := e.do("GET", "/api/v1/tasks/"+id, admin, nil)
	if code != 200 || !strings.Contains(body, `"env":[`) {
		t.Errorf("GET the task: %d %s", code, body)
	}
	noSecrets(t, "the task's JSON", body)
	code, body = e.do("GET", "/tasks/"+id, admin, nil)
	if code != 200 || !strings.Contains(body, "MODE=fast") || !strings.Contains(body, "HOOK="+policy.Masked) {
		t.Errorf("the task page: %d %.800s", code, body)
	}
	noSecrets(t, "the task page", body)
	_, body = e.do("GET", "/api/v1/tasks", admin, nil)
	noSecrets(t, "the task list", body)
	// Nowhere in Redis either.
	ctx := context.Background()
	keys, _ := e.rdb.Keys(ctx, "*").Result()
	for _, k := range keys {
		var val string
		switch e.rdb.Type(ctx, k).Val() {
		case "hash":
			val = fmt.Sprint(e.rdb.HGetAll(ctx, k).Val())
		case "string":
			val = e.rdb.Get(ctx, k).Val()
		case "list":
			val = fmt.Sprint(e.rdb.LRange(ctx, k, 0, -1).Val())
		case "stream":
			val = fmt.Sprint(e.rdb.XRange(ctx, k, "-", "+").Val())
		case "zset":
			val = fmt.Sprint(e.rdb.ZRange(ctx, k, 0, -1).Val())
		}
		noSecrets(t, "Redis key "+k, val)
	}
	// The task itself got the real value (its script checked it).
	observe.Eventually(t, "output ok", 5*time.Second, func() bool {
		_, out := e.do("GET", "/tasks/"+id+"/output.txt", admin, nil)
		return strings.Contains(out, "ok")
	})
}
