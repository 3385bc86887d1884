package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/api"
	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/registry"
	"github.com/taskjob/task-job/registry/etcdreg"
	"github.com/taskjob/task-job/registry/etcdreg/etcdtest"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/observe"
	"github.com/taskjob/task-job/test/redisserver"
)

// mainProcess is this test binary started as task-job by startMain.
type mainProcess struct {
	cmd *exec.Cmd
	log *observe.Buffer
}

// startMain runs this test binary as task-job with args until the test
// ends (SIGTERM, then SIGKILL), and shows its log if the test failed.
func startMain(t *testing.T, name string, args ...string) *mainProcess {
	t.Helper()
	self, _ := os.Executable()
	log := &observe.Buffer{}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1", "GORACE=atexit_sleep_ms=0")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, log.String())
		}
	})
	return &mainProcess{cmd: cmd, log: log}
}

// Tasks pushed to the shared list reach dispatched executors through the
// dispatcher: each runs once, with one done. Cordoned executors get
// nothing; the tasks assigned to a member that is lost are given back and
// run by another; drain says what it did.
func TestDispatcherPlacesEachTaskOnce(t *testing.T) {
	srv := redisserver.Start(t)
	etcd := etcdtest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ran := filepath.Join(t.TempDir(), "ran")
	if err := os.WriteFile(filepath.Join(dir, "mark.sh"), []byte("#!/bin/sh\necho \"$1\" >> "+ran+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	exA, exB := fmt.Sprintf("da-%d", os.Getpid()), fmt.Sprintf("db-%d", os.Getpid())
	writeConfig := func(id string) string {
		cfg, _ := json.Marshal(map[string]any{
			"redis_addr": srv.Addr(), "queue_name": "dq", "cmd_dir": dir, "executor_id": id, "concurrency": 2,
			"isolation": "off", "spool_dir": filepath.Join(t.TempDir(), "spool"), "shutdown_grace": "2s",
			"registry": "etcd://" + etcd.Endpoint(), "registry_ttl": "2s", "dispatched": true,
		})
		path := filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(path, cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cfgA, cfgB := writeConfig(exA), writeConfig(exB)
	startMain(t, "executor A", "-config="+cfgA)
	startMain(t, "executor B", "-config="+cfgB)
	startMain(t, "dispatcher", "dispatcher", "-config="+cfgA)

	reg, err := etcdreg.New(etcdreg.Options{Endpoints: []string{etcd.Endpoint()}, Prefix: "/task-job/dq/", TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	observe.Eventually(t, "both executors to register", 20*time.Second, func() bool {
		ms, _ := reg.Members(ctx)
		return len(ms) == 2
	})

	// dones reads every done on the logs list, by id.
	dones := func() map[string][]task.Log {
		out := map[string][]task.Log{}
		for _, raw := range rdb.LRange(ctx, "dq_logs", 0, -1).Val() {
			var l task.Log
			if json.Unmarshal([]byte(raw), &l) == nil && l.MsgType == task.MsgDone {
				out[l.ID] = append(out[l.ID], l)
			}
		}
		return out
	}
	push := func(ids ...string) {
		for _, id := range ids {
			rdb.RPush(ctx, "dq", fmt.Sprintf(`{"id":%q,"type":"t","task":{"cmdline":"mark.sh","cmd_args":[%q]}}`, id, id))
		}
	}
	// check: each id ran once and has one succeeded done, on one of on.
	check := func(ids []string, on ...string) {
		t.Helper()
		observe.Eventually(t, fmt.Sprintf("%d dones", len(ids)), 20*time.Second, func() bool {
			d := dones()
			for _, id := range ids {
				if len(d[id]) == 0 {
					return false
				}
			}
			return true
		})
		time.Sleep(200 * time.Millisecond) // a second run or done would show by now
		d := dones()
		b, _ := os.ReadFile(ran)
		lines := strings.Fields(string(b))
		for _, id := range ids {
			if len(d[id]) != 1 || d[id][0].Result == nil || d[id][0].Status != task.Succeeded {
				t.Errorf("%s: dones %+v, want one succeeded", id, d[id])
			} else if !slices.Contains(on, d[id][0].Executor) {
				t.Errorf("%s ran on %s, want one of %v", id, d[id][0].Executor, on)
			}
			if n := countOf(lines, id); n != 1 {
				t.Errorf("%s ran %d times", id, n)
			}
		}
	}

	var ids []string
	for i := range 20 {
		ids = append(ids, fmt.Sprintf("p%d", i))
	}
	push(ids...)
	check(ids, exA, exB)
	d := dones()
	perExecutor := map[string]int{}
	for _, id := range ids {
		perExecutor[d[id][0].Executor]++
	}
	t.Logf("placed: %v", perExecutor)

	// A member that takes nothing gets the next tasks while both
	// executors are cordoned; once it is lost, they run on A.
	ghost, err := reg.Register(ctx, registry.Member{ID: "ghost", Tubes: []string{""}, Slots: 10, Dispatched: true}, registry.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	a := "-config=" + cfgA
	for _, id := range []string{exA, exB} {
		var out, errOut bytes.Buffer
		if code := run([]string{"cordon", a, id}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "cordoned "+id+": the dispatcher assigns it no new tasks") {
			t.Fatalf("cordon %s: exit %d\n%s%s", id, code, out.String(), errOut.String())
		}
	}
	// A cordon reaches the leader through its etcd watch: a task pushed
	// within that moment (milliseconds) may still be placed as before.
	time.Sleep(300 * time.Millisecond)
	lost := []string{"l1", "l2", "l3"}
	push(lost...)
	observe.Eventually(t, "the ghost to be assigned the three tasks", 10*time.Second, func() bool {
		return rdb.LLen(ctx, "dq:assigned:ghost").Val() == 3
	})
	var out, errOut bytes.Buffer
	if code := run([]string{"uncordon", a, exA}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "uncordoned "+exA) {
		t.Fatalf("uncordon: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	time.Sleep(200 * time.Millisecond)
	if n := rdb.LLen(ctx, "dq:assigned:ghost").Val(); n != 3 {
		t.Fatalf("the ghost's tasks moved while it was registered: %d left", n)
	}
	if err := ghost.Close(ctx); err != nil {
		t.Fatal(err)
	}
	check(lost, exA)

	out.Reset()
	errOut.Reset()
	if code := run([]string{"drain", a, exB}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "drained "+exB+": cordoned, and its assigned list is empty (0 tasks") {
		t.Errorf("drain: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"uncordon", a, "nobody"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "nobody was not cordoned") {
		t.Errorf("uncordon of an executor not cordoned: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}

func countOf(lines []string, s string) int {
	n := 0
	for _, l := range lines {
		if l == s {
			n++
		}
	}
	return n
}

// Without a registry the dispatcher and the cordon commands say what to set.
func TestDispatcherNeedsARegistry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(`{"cmd_dir": "/tmp"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"dispatcher", "-config=" + path}, &out, &errOut); code != exitUsage || !strings.Contains(errOut.String(), `the config sets no "registry"`) {
		t.Errorf("dispatcher: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	srv := redisserver.Start(t)
	for _, cmd := range []string{"cordon", "uncordon", "drain"} {
		out.Reset()
		errOut.Reset()
		if code := run([]string{cmd, "-config=" + path, "-redis_addr=" + srv.Addr(), "x"}, &out, &errOut); code != exitUsage || !strings.Contains(errOut.String(), `the config sets no "registry"`) {
			t.Errorf("%s: exit %d\n%s%s", cmd, code, out.String(), errOut.String())
		}
	}
}

// A task's constraints choose its executor by label through a real
// dispatcher; one that no executor's labels meet waits, and status, its
// JSON and GET /api/v1/tasks/{id} say why.
func TestDispatcherConstraintsAndWaitingReason(t *testing.T) {
	srv := redisserver.Start(t)
	etcd := etcdtest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	dir := scripts(t)
	ex := fmt.Sprintf("dc-%d", os.Getpid())
	cfg, _ := json.Marshal(map[string]any{
		"redis_addr": srv.Addr(), "queue_name": "cq", "cmd_dir": dir, "executor_id": ex, "concurrency": 2,
		"isolation": "off", "spool_dir": filepath.Join(t.TempDir(), "spool"), "shutdown_grace": "2s",
		"registry": "etcd://" + etcd.Endpoint(), "registry_ttl": "2s", "dispatched": true,
		"labels": map[string]string{"gpu": "a100"},
	})
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	startMain(t, "executor", "-config="+path)
	startMain(t, "dispatcher", "dispatcher", "-config="+path)

	rdb.RPush(ctx, "cq", `{"id":"c-h100","type":"t","constraints":{"gpu":"h100"},"task":{"cmdline":"hello.sh"}}`,
		`{"id":"c-a100","type":"t","constraints":{"gpu":"a100"},"task":{"cmdline":"hello.sh"}}`)
	var out, errOut bytes.Buffer
	if code := run([]string{"logs", "-config=" + path, "-f", "-timeout=20s", "c-a100"}, &out, &errOut); code != 0 {
		t.Fatalf("c-a100 (behind a task nobody can take) did not succeed: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	want := "no registered executor serving the untubed list has the labels it asks for (gpu=h100); serving it: " + ex
	observe.Eventually(t, "status to say why c-h100 waits", 10*time.Second, func() bool {
		out.Reset()
		errOut.Reset()
		code := run([]string{"status", "-config=" + path, "c-h100"}, &out, &errOut)
		return code == 0 && strings.Contains(out.String(), "state:    queued\n") && strings.Contains(out.String(), "waiting:  "+want+"\n")
	})
	out.Reset()
	if code := run([]string{"status", "-config=" + path, "-json", "c-h100"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), `"waiting":`+strconv.Quote(want)) {
		t.Errorf("status -json: exit %d: %s", code, out.String())
	}
	q := redisqueue.New(redis.NewClient(&redis.Options{Addr: srv.Addr()}), redisqueue.Options{Names: redisqueue.Names{Tasks: "cq", Control: "cq_control", Logs: "cq_logs"}})
	defer q.Close()
	s, err := api.New(api.Options{Queue: q, Version: version})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	resp, err := http.Get(hs.URL + "/api/v1/tasks/c-h100")
	if err != nil {
		t.Fatal(err)
	}
	var v api.TaskView
	_ = json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	if resp.StatusCode != 200 || v.State != task.Queued || v.Waiting != want {
		t.Errorf("GET /api/v1/tasks/c-h100: %d %+v", resp.StatusCode, v)
	}
}

// cordon, drain and uncordon are recorded in the audit log before they
// are done (and refused when it cannot be written), and executors shows
// each executor's cordon.
func TestGovernanceIsAuditedAndShown(t *testing.T) {
	srv := redisserver.Start(t)
	etcd := etcdtest.Start(t)
	ctx := context.Background()
	ex := fmt.Sprintf("gov-%d", os.Getpid())
	q := redisqueue.New(redis.NewClient(&redis.Options{Addr: srv.Addr()}),
		redisqueue.Options{Names: redisqueue.Names{Tasks: "gq", Control: "gq_control", Logs: "gq_logs"}, ExecutorID: ex, TTL: 5 * time.Second})
	defer q.Close()
	if err := q.Join(ctx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	auditFile := filepath.Join(dir, "audit.log")
	cfg, _ := json.Marshal(map[string]any{"redis_addr": srv.Addr(), "queue_name": "gq", "registry": "etcd://" + etcd.Endpoint(), "audit_file": auditFile})
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	c := "-config=" + path
	cmd := func(wantCode int, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != wantCode {
			t.Fatalf("%v: exit %d, want %d\n%s%s", args, code, wantCode, out.String(), errOut.String())
		}
		return out.String() + errOut.String()
	}
	// column is the DISPATCH cell of the one executor's row.
	column := func() string {
		t.Helper()
		out := cmd(0, "executors", c)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || !strings.HasSuffix(lines[0], "DISPATCH") {
			t.Fatalf("executors:\n%s", out)
		}
		for _, state := range []string{"cordoned since", "draining since"} {
			if i := strings.Index(lines[1], state); i >= 0 {
				return lines[1][i:]
			}
		}
		f := strings.Fields(lines[1])
		return f[len(f)-1]
	}
	records := func() []audit.Record {
		t.Helper()
		b, err := os.ReadFile(auditFile)
		if err != nil {
			t.Fatal(err)
		}
		var out []audit.Record
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var r audit.Record
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("audit line %q: %v", line, err)
			}
			if r.Kind == audit.KindControl {
				out = append(out, r)
			}
		}
		return out
	}

	if got := column(); got != "ok" {
		t.Errorf("before any cordon: %q", got)
	}
	cmd(0, "cordon", c, ex)
	if got := column(); !strings.HasPrefix(got, "cordoned since ") || !strings.Contains(got, fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("after cordon: %q", got)
	}
	var js struct {
		Executors []struct {
			ID     string           `json:"id"`
			Cordon *registry.Cordon `json:"cordon"`
		} `json:"executors"`
	}
	if err := json.Unmarshal([]byte(cmd(0, "executors", c, "-json")), &js); err != nil || len(js.Executors) != 1 || js.Executors[0].Cordon == nil || js.Executors[0].Cordon.Drain {
		t.Errorf("executors -json: %+v, %v", js, err)
	}
	// -json: one object on stdout, the text's message in it.
	report := func(out string) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil || strings.Count(out, "\n") != 1 {
			t.Fatalf("-json printed %q: %v", out, err)
		}
		return m
	}
	r := report(cmd(0, "drain", c, "-timeout=1s", "-json", ex))
	if r["executor"] != ex || r["action"] != "drain" || r["assigned"] != 0.0 || r["registered"] != false || r["member"] != nil ||
		!strings.HasPrefix(r["message"].(string), "drained "+ex+": cordoned") {
		t.Errorf("drain -json: %v", r)
	}
	if got := column(); !strings.HasPrefix(got, "draining since ") {
		t.Errorf("after drain: %q", got)
	}
	r = report(cmd(0, "uncordon", c, "-json", ex))
	if _, ok := r["registered"]; r["executor"] != ex || r["action"] != "uncordon" || ok || r["message"] != "uncordoned "+ex+": the dispatcher assigns it tasks again" {
		t.Errorf("uncordon -json: %v", r)
	}
	if got := column(); got != "ok" {
		t.Errorf("after uncordon: %q", got)
	}
	cmd(1, "uncordon", c, ex)

	rs := records()
	want := []struct{ action, reason string }{
		{"cordon", "the dispatcher assigns it no new tasks"},
		{"drain", "the dispatcher assigns it no new tasks and gives"},
		{"uncordon", "the dispatcher may assign it tasks again"},
		{"uncordon", "the dispatcher may assign it tasks again"},
		{"uncordon", "not done: it was not cordoned"},
	}
	if len(rs) != len(want) {
		t.Fatalf("%d control records, want %d: %+v", len(rs), len(want), rs)
	}
	for i, w := range want {
		r := rs[i]
		if r.Action != w.action || r.Executor != ex || !strings.HasPrefix(r.Reason, w.reason) || !strings.Contains(r.By, fmt.Sprintf("pid %d", os.Getpid())) {
			t.Errorf("record %d: %+v, want %s of %s: %q", i, r, w.action, ex, w.reason)
		}
	}
	cmd(0, "audit", "-file="+auditFile, "-kind=control") // the file reads back as a valid log

	// Its audit log held by another writer: refused, and nothing changes.
	held, err := audit.Open(auditFile, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := cmd(1, "cordon", c, ex)
	held.Close()
	if !strings.Contains(out, "not done: the audit log cannot be opened") || !strings.Contains(out, "give -audit_file=FILE a log of its own") {
		t.Errorf("cordon with the audit log held: %s", out)
	}
	if got := column(); got != "ok" {
		t.Errorf("a refused cordon changed the fleet: %q", got)
	}
	other := filepath.Join(dir, "governance.log")
	// A dispatched member, as the registry holds it, is in the record.
	reg, err := etcdreg.New(etcdreg.Options{Endpoints: []string{etcd.Endpoint()}, Prefix: "/task-job/gq/", TTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	lease, err := reg.Register(ctx, registry.Member{ID: ex, Tubes: []string{""}, Slots: 4, Dispatched: true}, registry.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Close(ctx)
	r = report(cmd(0, "cordon", c, "-audit_file="+other, "-json", ex))
	if m, _ := r["member"].(map[string]any); r["action"] != "cordon" || r["assigned"] != 0.0 || r["registered"] != true ||
		m["dispatched"] != true || m["slots"] != 4.0 || m["running"] != 0.0 || !strings.HasPrefix(r["message"].(string), "cordoned "+ex) {
		t.Errorf("cordon -json: %v", r)
	}
	if b, _ := os.ReadFile(other); !strings.Contains(string(b), `"action":"cordon"`) {
		t.Errorf("-audit_file holds %s", b)
	}
}
