package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/test/observe"
	"github.com/taskjob/task-job/test/redisserver"
)

func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(cmd.Environ(), "GORACE=atexit_sleep_ms=0")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

func TestCLISubmitStatusKillLogs(t *testing.T) {
	srv := redisserver.Start(t)
	dir := t.TempDir()
	script(t, dir, "hello.sh", `echo "hello $1"`)
	script(t, dir, "fail.sh", `echo bad >&2; exit 4`)
	script(t, dir, "long.sh", `echo begun; sleep 60`)
	cfg := config(t, srv.Addr(), dir, uniqueID("a"), map[string]any{"concurrency": 2})
	p := start(t, "-config="+cfg)
	p.waitLog(t, "executor serving", 20*time.Second)

	out, code := run(t, "submit", "-config="+cfg, "-id=c1", "-wait", "hello.sh", "big world")
	if code != 0 || !strings.Contains(out, "hello big world") || !strings.Contains(out, "succeeded") {
		t.Fatalf("submit -wait: code %d\n%s", code, out)
	}
	out, code = run(t, "submit", "-config="+cfg, "-wait", "fail.sh")
	if code != 1 || !strings.Contains(out, "bad") || !strings.Contains(out, "failed (exit 4)") {
		t.Fatalf("submit -wait of a failing task: code %d\n%s", code, out)
	}
	out, code = run(t, "status", "-config="+cfg, "c1")
	if code != 0 || !strings.Contains(out, "succeeded") {
		t.Fatalf("status: code %d\n%s", code, out)
	}
	if _, code = run(t, "status", "-config="+cfg, "never-submitted"); code == 0 {
		t.Fatal("status of an unknown id exits 0")
	}
	if out, code = run(t, "submit", "-config="+cfg, "-id=c3", "long.sh"); code != 0 || strings.TrimSpace(out) != "c3" {
		t.Fatalf("submit: %d %s", code, out)
	}
	follow := exec.Command(binary, "logs", "-f", "-config="+cfg, "c3")
	var buf strings.Builder
	follow.Stdout, follow.Stderr = &buf, &buf
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	observe.Eventually(t, "c3 to run", 10*time.Second, func() bool {
		out, _ := run(t, "status", "-config="+cfg, "c3")
		return strings.Contains(out, "running")
	})
	if out, code = run(t, "kill", "-config="+cfg, "c3"); code != 0 {
		t.Fatalf("kill: %d %s", code, out)
	}
	done := make(chan error, 1)
	go func() { done <- follow.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		follow.Process.Kill()
		t.Fatalf("logs -f did not end at the done:\n%s", buf.String())
	}
	if s := buf.String(); !strings.Contains(s, "begun") || !strings.Contains(s, "killed") {
		t.Errorf("logs -f printed:\n%s", s)
	}
	if out, code := run(t, "version"); code != 0 || !strings.HasPrefix(out, "task-job ") {
		t.Errorf("version: %d %q", code, out)
	}
}

// The quick start needs nothing installed: an embedded endpoint and an
// executor in one process, and the CLI works against it.
func TestDevModeQuickStart(t *testing.T) {
	p := start(t, "dev", "-addr=127.0.0.1:0")
	p.waitLog(t, "executor serving", 20*time.Second)
	p.waitLog(t, "NOTHING is kept", time.Second)
	out := p.output()
	i := strings.Index(out, "-redis_addr ")
	if i < 0 {
		t.Fatalf("no address in the banner:\n%s", out)
	}
	addr := strings.Fields(out[i+len("-redis_addr "):])[0]
	got, code := run(t, "submit", "-redis_addr="+addr, "-wait", "hello.sh", "world")
	if code != 0 || !strings.Contains(got, "hello from task") || !strings.Contains(got, "args: world") {
		t.Fatalf("submit to dev mode: %d\n%s", code, got)
	}
}
