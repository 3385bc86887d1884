package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taskjob/task-job/test/observe"
	"github.com/taskjob/task-job/test/redisserver"
)

// Golden-output tests of the command line as a user meets it: for each
// case the exact stdout, stderr and exit code, kept in testdata/*.golden.
// After a deliberate change of wording: go test ./cmd/task-job -run Golden -update

var update = flag.Bool("update", false, "rewrite testdata/*.golden from what the commands print now")

// mainEnv makes the test binary run as task-job itself: the executor the
// client commands talk to is a separate process, as in production.
const mainEnv = "TASK_JOB_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	// Say what a wait is waiting for at once, not after 5 s.
	noticeAfter = 0
	os.Exit(m.Run())
}

// golden runs task-job with args and compares what it printed with
// testdata/NAME.golden, after replacing the run's variable parts (keys of
// repl) with fixed words.
func golden(t *testing.T, name string, args []string, repl ...string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	checkGolden(t, name, args, code, stdout.String(), stderr.String(), repl...)
}

func checkGolden(t *testing.T, name string, args []string, code int, stdout, stderr string, repl ...string) {
	t.Helper()
	got := fmt.Sprintf("$ task-job %s\nexit %d\n--- stdout\n%s--- stderr\n%s", shellJoin(args), code, stdout, stderr)
	repl = append(repl, runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH, "GO_VERSION")
	got = strings.NewReplacer(repl...).Replace(got)
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update if the change is meant):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// Everything that needs no Redis: help, mistakes, version.
func TestGoldenOffline(t *testing.T) {
	dir := t.TempDir()
	nouser := filepath.Join(dir, "policy.hcl")
	if err := os.WriteFile(nouser, []byte("defaults {\n  user = \"nobody\"\n}\n\nrule \"install\" {\n  cmdline = \"install.sh\"\n  user    = \"deploy-no-such-user\"\n  memory  = \"512mib\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
	}{
		{"top-h", []string{"-h"}},
		{"help", []string{"help"}},
		{"help-unknown", []string{"help", "sumbit"}},
		{"unknown-command", []string{"statsu", "101"}},
		{"unknown-flag", []string{"submit", "-wiat", "hello.sh"}},
		{"submit-timeout-duration", []string{"submit", "-wait", "-timeout=30s", "hello.sh"}},
		{"submit-flag-after-cmdline", []string{"submit", "-config=/etc/task-job/config.json", "hello.sh", "big world", "-wait"}},
		{"unknown-executor-flag", []string{"-confg=/etc/task-job/config.json"}},
		{"command-after-flags", []string{"-config=/etc/task-job/config.json", "submit", "-wait", "hello.sh", "big world"}},
		{"word-after-flags", []string{"-config=/etc/task-job/config.json", "srve"}},
		{"command-after-its-flag", []string{"-config=/etc/task-job/config.json", "-wait", "submit", "hello.sh"}},
		{"command-after-log-flags", []string{"-config=/etc/task-job/config.json", "-alsologtostderr", "-log_dir", "/var/log/task-job", "logs", "-f", "101"}},
		{"version", []string{"version"}},
		{"kill-no-id", []string{"kill"}},
		{"status-two-ids", []string{"status", "101", "102"}},
		{"policy-no-subcommand", []string{"policy", "chek", "policy.hcl"}},
		{"policy-unknown-user", []string{"policy", "check", nouser}},
	}
	for _, c := range commands() {
		cases = append(cases, struct {
			name string
			args []string
		}{c.name + "-h", []string{c.name, "-h"}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { golden(t, tc.name, tc.args, dir, "TMPDIR") })
	}
	// Every command's help page ends with an example, serve's too (its -h
	// once printed the list of commands instead); only the bare task-job -h
	// is the list.
	for _, c := range commands() {
		var out bytes.Buffer
		run([]string{c.name, "-h"}, &out, &out)
		if !strings.HasPrefix(out.String(), "task-job "+c.name+": ") || !strings.Contains(out.String(), "\nexample:\n  task-job ") {
			t.Errorf("%s -h is not its help page with an example:\n%s", c.name, out.String())
		}
	}
	// The command line suggested for a command after the executor's flags
	// is one that command takes: its -h, here, prints its help.
	for _, c := range commands() {
		var out bytes.Buffer
		if code := run([]string{"-config=/etc/task-job/config.json", "-alsologtostderr", "-log_dir", "/var/log/task-job", c.name, "-h"}, &out, &out); code != exitUsage {
			t.Errorf("%s after the executor's flags: exit %d, want %d", c.name, code, exitUsage)
		}
		_, line, ok := strings.Cut(out.String(), "Did you mean:\n  task-job ")
		line, _, _ = strings.Cut(line, "\n")
		var help bytes.Buffer
		if !ok || run(strings.Fields(line), &help, &help) != 0 || !strings.HasPrefix(help.String(), "task-job "+c.name+": ") {
			t.Errorf("%s after the executor's flags suggests a line it refuses:\n%s---\n%s", c.name, out.String(), help.String())
		}
	}
	// "help X" is "X -h".
	for _, c := range commands() {
		var a, b bytes.Buffer
		if run([]string{"help", c.name}, &a, &a) != 0 || run([]string{c.name, "-h"}, &b, &b) != 0 || a.String() != b.String() {
			t.Errorf("help %s differs from %s -h:\n%s\n---\n%s", c.name, c.name, a.String(), b.String())
		}
	}
}

// executorProc is a task-job executor process for the client commands to talk to.
type executorProc struct {
	cmd  *exec.Cmd
	log  *observe.Buffer
	done chan struct{}
}

// startExecutor runs this test binary as "task-job -config=…" serving
// queue on srv, with scripts from dir. Tasks are not sandboxed here: these
// tests are about what the client prints.
func startExecutor(t *testing.T, srv *redisserver.Server, queue, dir string, logs bool) *executorProc {
	t.Helper()
	e := launchExecutor(t, srv, queue, dir, logs)
	observe.Eventually(t, "the executor to serve", 20*time.Second, func() bool {
		return strings.Contains(e.log.String(), "serving")
	})
	return e
}

// launchExecutor is startExecutor without waiting for it to serve.
func launchExecutor(t *testing.T, srv *redisserver.Server, queue, dir string, logs bool) *executorProc {
	t.Helper()
	id := fmt.Sprintf("cli-%d-%s-%s", os.Getpid(), t.Name(), queue)
	id = strings.NewReplacer("/", "-").Replace(id)
	cfg, _ := json.Marshal(map[string]any{
		"redis_addr": srv.Addr(), "queue_name": queue, "cmd_dir": dir, "executor_id": id,
		"isolation": "off", "logs": logs, "spool_dir": filepath.Join(t.TempDir(), "spool"), "shutdown_grace": "2s",
	})
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e := &executorProc{cmd: exec.Command(self, "-config="+path), log: &observe.Buffer{}, done: make(chan struct{})}
	e.cmd.Env = append(os.Environ(), mainEnv+"=1", "GORACE=atexit_sleep_ms=0")
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.cmd.Wait(); close(e.done) }()
	t.Cleanup(func() {
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(10 * time.Second):
			_ = e.cmd.Process.Kill()
			<-e.done
		}
		if t.Failed() {
			t.Logf("executor log:\n%s", e.log.String())
		}
	})
	return e
}

func scripts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"hello.sh": "#!/bin/sh\necho \"hello $1\"\necho 'to stderr' >&2\n",
		"long.sh":  "#!/bin/sh\necho begun\nexec sleep 60\n",
		"fail.sh":  "#!/bin/sh\necho failing\nexit 3\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var (
	durationMS = regexp.MustCompile(`duration: \d+ ms`)
	// What -json prints of times and measures, which vary by run.
	jsonNumbers = regexp.MustCompile(`"(seq|duration_ms|cpu_ms|max_rss_bytes|output_bytes)":\d+`)
	jsonTimes   = regexp.MustCompile(`"(time|started_at|ended_at|updated|claimed)":"[^"]*"`)
	lostError   = regexp.MustCompile(`\(-redis_addr\): .*\n`)
	holdsUntil  = regexp.MustCompile(`holds until \S+:`)
)

// steadyJSON replaces the times and measures in -json output with fixed
// words, keeping every field's name and place.
func steadyJSON(s string) string {
	s = jsonNumbers.ReplaceAllString(s, `"$1":N`)
	return jsonTimes.ReplaceAllString(s, `"$1":"TIME"`)
}

// The client commands against a real Redis and a real executor.
func TestGoldenClient(t *testing.T) {
	srv := redisserver.Start(t)
	dir := scripts(t)
	startExecutor(t, srv, "gq", dir, true)
	startExecutor(t, srv, "quiet", dir, false)
	a := "-redis_addr=" + srv.Addr()
	repl := []string{srv.Addr(), "REDIS_ADDR", dir, "CMD_DIR", fmt.Sprintf("cli-%d-%s", os.Getpid(), t.Name()), "EXECUTOR"}
	steps := []struct {
		name string
		args []string
	}{
		{"submit-wait", []string{"submit", a, "-queue=gq", "-id=g1", "-wait", "hello.sh", "big world"}},
		{"submit-duplicate-id", []string{"submit", a, "-queue=gq", "-id=g1", "-wait", "hello.sh", "again"}},
		{"submit-dashdash", []string{"submit", a, "-queue=gq", "-id=g4", "-wait", "--", "hello.sh", "-wait"}},
		{"logs", []string{"logs", a, "-queue=gq", "g1"}},
		{"status", []string{"status", a, "-queue=gq", "g1"}},
		{"kill-ended", []string{"kill", a, "-queue=gq", "g1"}},
		{"kill-unknown", []string{"kill", a, "-queue=gq", "never-submitted"}},
		{"submit-wait-logs-off", []string{"submit", a, "-queue=quiet", "-id=q1", "-wait", "hello.sh", "x"}},
		{"submit-wait-no-executor", []string{"submit", a, "-queue=nobody", "-id=n1", "-wait", "-wait_timeout=2s", "hello.sh"}},
		// n1 is still queued (no executor serves "nobody"), so it has no
		// status yet: the id is refused all the same.
		{"submit-duplicate-queued", []string{"submit", a, "-queue=nobody", "-id=n1", "-wait", "hello.sh", "again"}},
		{"status-queued", []string{"status", a, "-queue=nobody", "n1"}},
		{"submit-json", []string{"submit", a, "-queue=nobody", "-id=n3", "-json", "hello.sh"}},
		{"submit-duplicate-json", []string{"submit", a, "-queue=nobody", "-id=n3", "-json", "hello.sh"}},
		{"status-json", []string{"status", a, "-queue=gq", "-json", "g1"}},
		{"kill-ended-json", []string{"kill", a, "-queue=gq", "-json", "g1"}},
		{"kill-unknown-json", []string{"kill", a, "-queue=gq", "-json", "never-submitted-2"}},
		{"kill-force", []string{"kill", a, "-queue=gq", "-force", "never-submitted-3"}},
		{"kill-force-json", []string{"kill", a, "-queue=gq", "-force", "-json", "never-submitted-4"}},
		{"logs-f-unknown", []string{"logs", "-f", "-timeout=2s", a, "-queue=gq", "n2"}},
		{"logs-unknown", []string{"logs", a, "-queue=gq", "n2"}},
		{"status-unknown", []string{"status", a, "-queue=gq", "n2"}},
		{"submit-bad-redis", []string{"submit", "-redis_addr=127.0.0.1:1", "hello.sh"}},
	}
	for _, s := range steps {
		var stdout, stderr bytes.Buffer
		code := run(s.args, &stdout, &stderr)
		out := steadyJSON(durationMS.ReplaceAllString(stdout.String(), "duration: N ms"))
		checkGolden(t, s.name, s.args, code, out, stderr.String(), repl...)
	}

	// A submit of an id that a kill went ahead of says that it will not
	// run, once the executor has taken the kill (it is sent, not written).
	observe.Eventually(t, "the kill for never-submitted to be held", 10*time.Second, func() bool {
		return srv.Client(t).ZScore(context.Background(), "gq:kills-ahead", "never-submitted").Err() == nil
	})
	afterKill := []string{"submit", a, "-queue=gq", "-id=never-submitted", "-wait", "hello.sh"}
	var stdout, stderr bytes.Buffer
	code := run(afterKill, &stdout, &stderr)
	checkGolden(t, "submit-after-kill", afterKill, code, stdout.String(), holdsUntil.ReplaceAllString(stderr.String(), "holds until TIME:"), repl...)

	// -json: one TaskLog message per line, as shipped.
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"logs", "-json", a, "-queue=gq", "g1"}, &stdout, &stderr); code != 0 {
		t.Fatalf("logs -json: exit %d\n%s", code, stderr.String())
	}
	var types []string
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var m struct {
			MsgType string `json:"msg_type"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("logs -json printed %q: %v", line, err)
		}
		types = append(types, m.MsgType)
	}
	if got := strings.Join(types, ","); got != "stdout,stderr,done" && got != "stderr,stdout,done" {
		t.Errorf("logs -json printed messages %s, want stdout, stderr, done", got)
	}

	// submit -wait -json: the task's messages as shipped, the done last,
	// and the task's exit code. (Its stdout and stderr lines may come in
	// either order, so this is checked, not compared.)
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"submit", a, "-queue=gq", "-id=g3", "-wait", "-json", "hello.sh", "json"}, &stdout, &stderr); code != 0 || stderr.Len() != 0 {
		t.Fatalf("submit -wait -json: exit %d\n%s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	for i, line := range lines {
		var m struct {
			ID      string `json:"id"`
			MsgType string `json:"msg_type"`
			Status  string `json:"status"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("submit -wait -json printed %q: %v", line, err)
		}
		last := i == len(lines)-1
		if m.ID != "g3" || last != (m.MsgType == "done") || last && m.Status != "succeeded" {
			t.Errorf("submit -wait -json line %d of %d: %s", i+1, len(lines), line)
		}
	}
	if len(lines) != 3 {
		t.Errorf("submit -wait -json printed %d messages, want stdout, stderr and done:\n%s", len(lines), stdout.String())
	}

	// A running task: -queued-only leaves it, a kill kills it.
	run([]string{"submit", a, "-queue=gq", "-id=g2", "long.sh"}, &bytes.Buffer{}, &bytes.Buffer{})
	observe.Eventually(t, "g2 to print its first line", 10*time.Second, func() bool {
		var out bytes.Buffer
		run([]string{"logs", a, "-queue=gq", "g2"}, &out, &out)
		return strings.Contains(out.String(), "begun")
	})
	for _, s := range []struct {
		name string
		args []string
	}{
		{"kill-queued-only-running", []string{"kill", "-queued-only", a, "-queue=gq", "g2"}},
		{"kill-queued-only-running-json", []string{"kill", "-queued-only", "-json", a, "-queue=gq", "g2"}},
		{"kill-running", []string{"kill", a, "-queue=gq", "g2"}},
		{"logs-f-killed", []string{"logs", "-f", a, "-queue=gq", "g2"}},
	} {
		var stdout, stderr bytes.Buffer
		code := run(s.args, &stdout, &stderr)
		checkGolden(t, s.name, s.args, code, stdout.String(), stderr.String(), repl...)
	}
}

// A wait whose Redis goes away ends, non-zero, saying so: logs -f, and
// submit -wait of a task no executor has taken.
func TestGoldenLostRedis(t *testing.T) {
	srv := redisserver.Start(t)
	a := "-redis_addr=" + srv.Addr()
	waits := []struct {
		name string
		args []string
	}{
		{"logs-f-lost-redis", []string{"logs", "-f", a, "-queue=lost", "l1"}},
		{"submit-wait-lost-redis", []string{"submit", "-wait", a, "-queue=lost2", "-id=l2", "hello.sh"}},
	}
	type result struct {
		code           int
		stdout, stderr *observe.Buffer
	}
	results := make([]chan result, len(waits))
	for i, w := range waits {
		results[i] = make(chan result, 1)
		stdout, stderr := &observe.Buffer{}, &observe.Buffer{}
		go func() { results[i] <- result{run(w.args, stdout, stderr), stdout, stderr} }()
		observe.Eventually(t, w.name+" to wait", 10*time.Second, func() bool {
			return strings.Contains(stderr.String(), "still waiting")
		})
	}
	srv.Stop(t)
	for i, w := range waits {
		select {
		case r := <-results[i]:
			errText := lostError.ReplaceAllString(r.stderr.String(), "(-redis_addr): ERROR\n")
			checkGolden(t, w.name, w.args, r.code, r.stdout.String(), errText, srv.Addr(), "REDIS_ADDR")
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not end when Redis went away", w.name)
		}
	}
}

// An executor started while Redis is down keeps retrying, says so at every
// attempt, and serves once Redis is up.
func TestExecutorWaitsForRedis(t *testing.T) {
	srv := redisserver.Start(t)
	srv.Stop(t)
	e := launchExecutor(t, srv, "later", scripts(t), true)
	observe.Eventually(t, "a second attempt", 20*time.Second, func() bool {
		return strings.Contains(e.log.String(), "attempt 2;")
	})
	select {
	case <-e.done:
		t.Fatalf("the executor exited while Redis was down:\n%s", e.log.String())
	default:
	}
	if !strings.Contains(e.log.String(), "Redis is not reachable; retrying in 1s (attempt 1;") {
		t.Errorf("the first attempt is not reported:\n%s", e.log.String())
	}
	srv.Restart(t)
	observe.Eventually(t, "the executor to serve once Redis is up", 30*time.Second, func() bool {
		return strings.Contains(e.log.String(), "Redis answers now") && strings.Contains(e.log.String(), "executor serving")
	})
}

// A Redis that answers but refuses the connection as configured (no
// password, a wrong one, a database it lacks) is named as such, with the
// setting to fix, not as an address to correct; a password in a redis://
// URL is not printed back. The executor retries it and says the same.
func TestGoldenRedisRefuses(t *testing.T) {
	srv := redisserver.Start(t)
	if err := srv.Client(t).ConfigSet(context.Background(), "requirepass", "s3cret").Err(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	cfg := filepath.Join(dir, "config.json")
	if err := os.WriteFile(pw, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(`{"redis_addr": "`+srv.Addr()+`", "redis_password_file": "password"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		name string
		args []string
	}{
		{"redis-no-password", []string{"status", "-redis_addr=" + srv.Addr(), "101"}},
		{"redis-wrong-password", []string{"status", "-config=" + cfg, "101"}},
		{"redis-wrong-password-url", []string{"status", "-redis_addr=redis://:wrong@" + srv.Addr(), "101"}},
		{"redis-no-such-db", []string{"status", "-redis_addr=redis://:s3cret@" + srv.Addr() + "/99", "101"}},
	} {
		golden(t, s.name, s.args, srv.Addr(), "REDIS_ADDR", dir, "TMPDIR")
	}

	e := launchExecutor(t, srv, "refused", scripts(t), true)
	want := "Redis answers but refuses this connection; retrying in 1s (attempt 1; stop with SIGTERM or Ctrl-C; this Redis needs a password: set redis_password_file"
	observe.Eventually(t, "the executor to name the password", 20*time.Second, func() bool {
		return strings.Contains(e.log.String(), want)
	})
}

// As a separate process, where the Redis client's own log would reach
// stderr, an unreachable Redis prints the same lines as in the golden
// file and nothing more.
func TestGoldenBadRedisProcess(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"submit", "-redis_addr=127.0.0.1:1", "hello.sh"}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1", "GORACE=atexit_sleep_ms=0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	code := 0
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatal(err)
		}
		code = exit.ExitCode()
	}
	checkGolden(t, "submit-bad-redis", args, code, stdout.String(), stderr.String())
}

// A follower whose task's executor dies after some output is told so
// instead of waiting in silence, and told that no one is left to report
// the task lost.
func TestGoldenExecutorGone(t *testing.T) {
	srv := redisserver.Start(t)
	dir := scripts(t)
	if err := os.WriteFile(filepath.Join(dir, "pid.sh"), []byte("#!/bin/sh\necho $$ > \"$1\"\necho begun\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := startExecutor(t, srv, "gone", dir, true)
	a := "-redis_addr=" + srv.Addr()
	pidFile := filepath.Join(t.TempDir(), "pid")
	run([]string{"submit", a, "-queue=gone", "-id=d1", "pid.sh", pidFile}, &bytes.Buffer{}, &bytes.Buffer{})
	observe.Eventually(t, "d1 to print its first line", 10*time.Second, func() bool {
		var out bytes.Buffer
		run([]string{"logs", a, "-queue=gone", "d1"}, &out, &out)
		return strings.Contains(out.String(), "begun")
	})
	// The executor dies as a power cut would take it; its task (not
	// sandboxed here) is left running, so it is ended by its pid.
	_ = e.cmd.Process.Kill()
	<-e.done
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				if p, err := os.FindProcess(pid); err == nil {
					_ = p.Kill()
				}
			}
		}
	})
	observe.Eventually(t, "the executor's heartbeat to expire", 20*time.Second, func() bool {
		var out bytes.Buffer
		run([]string{"logs", "-f", "-timeout=1ms", a, "-queue=gone", "d1"}, &out, &out)
		return strings.Contains(out.String(), "which is not alive")
	})
	args := []string{"logs", "-f", "-timeout=2s", a, "-queue=gone", "d1"}
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	checkGolden(t, "logs-f-executor-gone", args, code, stdout.String(), stderr.String(),
		srv.Addr(), "REDIS_ADDR", fmt.Sprintf("cli-%d-%s", os.Getpid(), t.Name()), "EXECUTOR")
}
