package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/metrics"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/observe"
)

const testPolicy = `
rule "hello" {
  cmdline = "hello.sh"
  args    = ["[a-z]+"]
  user    = "root"
}
rule "slow" {
  cmdline = "slow.sh"
  user    = "root"
}
`

var testScripts = map[string]string{
	"hello.sh": `echo "hello $1"; echo "to stderr" >&2`,
	// Prints a line, then waits to be killed.
	"slow.sh":  `echo started; while :; do sleep 0.05; done`,
	"other.sh": `echo never`,
}

func submitJSON(t *testing.T, e *env, token, body string) string {
	t.Helper()
	code, resp := e.do("POST", "/api/v1/tasks", token, strings.NewReader(body))
	if code != http.StatusAccepted {
		t.Fatalf("submit %s: %d %s", body, code, resp)
	}
	var r struct{ ID string }
	_ = json.Unmarshal([]byte(resp), &r)
	return r.ID
}

// A task submitted over HTTP meets the executor's policy and audit exactly
// as an RPUSHed one: allowed by its rule, or denied with the reason; and
// the audit log records the HTTP write, with the token's name, before the
// executor's own records of the task.
func TestSubmitGoesThroughPolicyAndAudit(t *testing.T) {
	m := metrics.New(metrics.Options{Version: "test", Executor: true, Slots: 2})
	e := newEnv(t, envOpt{tokens: true, metrics: m})
	e.startExecutor(fmt.Sprintf("api-%d-%s", os.Getpid(), t.Name()), testPolicy, testScripts)
	admin := e.tokens["admin"]
	ok := submitJSON(t, e, admin, `{"id":"h1","type":"t","task":{"cmdline":"hello.sh","cmd_args":["world"]}}`)
	v := e.waitState(ok, admin, task.Succeeded, 20*time.Second)
	if v.Rule != "hello" {
		t.Errorf("rule = %q, want hello", v.Rule)
	}
	denied := submitJSON(t, e, admin, `{"id":"h2","task":{"cmdline":"other.sh"}}`)
	v = e.waitState(denied, admin, task.Rejected, 20*time.Second)
	if r := v.Result(); r == nil || !strings.HasPrefix(r.Reason, "policy:") {
		t.Errorf("denied task's result = %+v, want a policy reason", r)
	}
	badArg := submitJSON(t, e, admin, `{"id":"h3","task":{"cmdline":"hello.sh","cmd_args":["x;rm"]}}`)
	e.waitState(badArg, admin, task.Rejected, 20*time.Second)

	// The logs of h1, replayed after its end.
	s, _ := e.openStream("/api/v1/tasks/h1/logs", admin, "")
	var lines []string
	for {
		ev, more := s.next(t, 10*time.Second)
		if !more {
			break
		}
		var l task.Log
		_ = json.Unmarshal([]byte(ev.Data), &l)
		lines = append(lines, ev.Name+":"+l.Data)
		if ev.Name == "done" {
			break
		}
	}
	if len(lines) != 3 || lines[0] != "stdout:hello world" && lines[1] != "stdout:hello world" || lines[2] != "done:exited with status 0" {
		t.Errorf("h1's stream = %q", lines)
	}

	// The executor's hooks counted them; /metrics needs a token too.
	if code, _ := e.do("GET", "/metrics", "", nil); code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token = %d", code)
	}
	code, out := e.do("GET", "/metrics", e.tokens["reader"], nil)
	for _, want := range []string{
		`taskjob_tasks_received_total{tube="default"} 3`,
		`taskjob_tasks_finished_total{status="succeeded",tube="default"} 1`,
		`taskjob_tasks_finished_total{status="rejected",tube="default"} 2`,
		`taskjob_tasks_refused_total{reason="policy"} 2`,
		`taskjob_task_duration_seconds_count 1`,
		`taskjob_tasks_running 0`,
	} {
		if code != 200 || !strings.Contains(out, want) {
			t.Errorf("/metrics (%d) lacks %s", code, want)
		}
	}

	var kinds []string
	_ = audit.Read(e.auditFile, audit.Filter{ID: "h2"}, func(r audit.Record) error {
		k := r.Kind
		if r.By != "" {
			k += "(" + r.By + ")"
		}
		if r.Decision != "" {
			k += "(" + r.Decision + ")"
		}
		kinds = append(kinds, k)
		return nil
	})
	want := []string{"control(http:admin)", "received", "decision(denied)", "end"}
	if strings.Join(kinds, " ") != strings.Join(want, " ") {
		t.Errorf("audit of h2 = %v, want %v", kinds, want)
	}
}

func TestKillAndRetry(t *testing.T) {
	e := newEnv(t, envOpt{tokens: true})
	e.startExecutor(fmt.Sprintf("api-%d-%s", os.Getpid(), t.Name()), testPolicy, testScripts)
	op, admin := e.tokens["operator"], e.tokens["admin"]
	id := submitJSON(t, e, admin, `{"id":"k1","task":{"cmdline":"slow.sh"}}`)
	s, _ := e.openStream("/api/v1/tasks/k1/logs", op, "")
	if ev, _ := s.next(t, 20*time.Second); ev.Name != "stdout" || !strings.Contains(ev.Data, `"data":"started"`) {
		t.Fatalf("first event %+v", ev)
	}
	// Running, it already shows the rule that allowed it, and the list's
	// rule filter finds it.
	observe.Eventually(t, "k1 running under rule slow", 10*time.Second, func() bool {
		var l TaskList
		e.getJSON("/api/v1/tasks?state=running&rule=slow", op, &l)
		return len(l.Tasks) == 1 && l.Tasks[0].ID == "k1" && l.Tasks[0].Rule == "slow"
	})
	if code, body := e.do("POST", "/api/v1/tasks/k1/kill", op, nil); code != http.StatusAccepted {
		t.Fatalf("kill: %d %s", code, body)
	}
	for {
		ev, more := s.next(t, 20*time.Second)
		if !more {
			t.Fatal("the stream ended without a done")
		}
		if ev.Name == "done" {
			if !strings.Contains(ev.Data, `"status":"killed"`) {
				t.Errorf("done = %s", ev.Data)
			}
			break
		}
	}
	e.waitState(id, op, task.Killed, 10*time.Second)
	// Retry: a new id, linked to the old one, same command.
	code, body := e.do("POST", "/api/v1/tasks/k1/retry", op, nil)
	if code != http.StatusAccepted {
		t.Fatalf("retry: %d %s", code, body)
	}
	var r struct{ ID, RetryOf string }
	_ = json.Unmarshal([]byte(body), &r)
	if r.ID == "" || r.ID == "k1" {
		t.Fatalf("retry answered %s", body)
	}
	v := e.waitState(r.ID, op, task.Running, 20*time.Second)
	if v.RetryOf != "k1" || v.Cmdline != "slow.sh" {
		t.Errorf("the retry = %+v", v)
	}
	if code, body := e.do("POST", "/api/v1/tasks/"+r.ID+"/kill", op, nil); code != http.StatusAccepted {
		t.Fatalf("kill the retry: %d %s", code, body)
	}
	e.waitState(r.ID, op, task.Killed, 20*time.Second)
}
