package e2e

import (
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taskjob/task-job/task"
)

// A policy decides through Redis: what a rule allows runs, anything else is
// rejected with a reason naming why.
func TestPolicyAllowsAndDeniesThroughRedis(t *testing.T) {
	dir := sandboxDir(t)
	script(t, dir, "ok.sh", `echo "ok $1"`)
	pol := filepath.Join(t.TempDir(), "policy.hcl")
	writeFile(t, pol, `
rule "ok" {
  cmdline = "ok.sh"
  args    = ["^[a-z]+$"]
}
`, 0o644)
	g := startGuarded(t, dir, uniqueID("pol"), map[string]any{"policy_file": pol})

	d := g.run(t, "allowed", 0, "ok.sh", "hello")
	expectStatus(t, "allowed", d, task.Succeeded)
	if out := joinLines(g.lines("allowed", task.MsgStdout)); out != "ok hello" {
		t.Errorf("allowed task printed %q", out)
	}

	d = g.run(t, "shell", 0, "bash -c id")
	expectStatus(t, "bash -c id", d, task.Rejected)
	expectReason(t, "bash -c id", d, `policy: no rule allows cmdline "bash -c id"`)

	d = g.run(t, "badarg", 0, "ok.sh", "Hello1")
	expectStatus(t, "wrong argument", d, task.Rejected)
	expectReason(t, "wrong argument", d, `policy: rule "ok" refuses argument 1 "Hello1": it must match ^[a-z]+$`)

	d = g.run(t, "twoargs", 0, "ok.sh", "a", "b")
	expectStatus(t, "two arguments", d, task.Rejected)
	expectReason(t, "two arguments", d, `policy: rule "ok" allows 1 argument, the task has 2`)
	for _, id := range []string{"shell", "badarg", "twoargs"} {
		if n := len(g.lines(id, task.MsgStdout)) + len(g.lines(id, task.MsgStderr)); n != 0 {
			t.Errorf("%s was refused but produced %d output lines", id, n)
		}
	}
}

// Every limit a rule sets is enforced by the sandbox on the running task,
// not just recorded.
func TestPolicyLimitsAreEnforced(t *testing.T) {
	dir := sandboxDir(t)
	// dd's 100 MiB buffer is filled from /dev/zero, so every page is touched.
	script(t, dir, "hog.sh", "exec dd if=/dev/zero of=/dev/null bs=100M count=1")
	// dash gives up at the first fork that fails, saying so on stderr.
	script(t, dir, "fork.sh", "i=0\nwhile [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); done\necho all forked")
	script(t, dir, "id.sh", "id -u")
	bashScript(t, dir, "net.sh", `exec 3<>/dev/tcp/127.0.0.1/$2 && echo connected`)
	script(t, dir, "sleep.sh", "sleep 30")
	pol := filepath.Join(t.TempDir(), "policy.hcl")
	writeFile(t, pol, `
defaults {
  memory  = "256MiB"
  pids    = 64
  timeout = "20s"
}
rule "hog" {
  cmdline = "hog.sh"
  memory  = "32MiB"
}
rule "forker" {
  cmdline = "fork.sh"
  pids    = 8
}
rule "as-root" {
  cmdline = "id.sh"
  args    = ["root"]
  user    = "root"
}
rule "as-default" {
  cmdline = "id.sh"
  args    = ["default"]
}
rule "net-on" {
  cmdline = "net.sh"
  args    = ["on", "[0-9]+"]
  network = true
}
rule "net-off" {
  cmdline = "net.sh"
  args    = ["off", "[0-9]+"]
  network = false
}
rule "capped" {
  cmdline = "sleep.sh"
  timeout = "1s"
}
`, 0o644)
	g := startGuarded(t, dir, uniqueID("lim"), map[string]any{"policy_file": pol, "concurrency": 2})

	t.Run("memory", func(t *testing.T) {
		d := g.run(t, "hog", 0, "hog.sh")
		expectStatus(t, "hog", d, task.Failed)
		if !strings.HasPrefix(d.Reason, "oom") {
			t.Errorf("hog: reason %q, want one starting with \"oom\"", d.Reason)
		}
		// dd reports its records only when it got its whole buffer.
		if out := joinLines(g.lines("hog", task.MsgStderr)); strings.Contains(out, "records out") {
			t.Errorf("the hog got 100M under a 32MiB limit:\n%s", out)
		}
	})
	t.Run("pids", func(t *testing.T) {
		d := g.run(t, "fork", 0, "fork.sh")
		out := joinLines(append(g.lines("fork", task.MsgStdout), g.lines("fork", task.MsgStderr)...))
		expectStatus(t, "fork loop", d, task.Failed)
		if strings.Contains(out, "all forked") || !strings.Contains(strings.ToLower(out), "fork") {
			t.Errorf("fork loop under pids=8 printed:\n%s", out)
		}
	})
	t.Run("user", func(t *testing.T) {
		for arg, uid := range map[string]string{"root": "0", "default": "65534"} {
			id := "id-" + arg
			d := g.run(t, id, 0, "id.sh", arg)
			expectStatus(t, id, d, task.Succeeded)
			if got := joinLines(g.lines(id, task.MsgStdout)); got != uid {
				t.Errorf("%s: id -u printed %q, want %q", id, got, uid)
			}
		}
	})
	t.Run("network", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan struct{}, 4)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
				accepted <- struct{}{}
			}
		}()
		port := strings.TrimPrefix(ln.Addr().String()[strings.LastIndex(ln.Addr().String(), ":"):], ":")

		d := g.run(t, "net-off", 0, "net.sh", "off", port)
		expectStatus(t, "network=false", d, task.Failed)
		if out := joinLines(g.lines("net-off", task.MsgStdout)); strings.Contains(out, "connected") {
			t.Errorf("network=false task connected to the host's listener")
		}
		select {
		case <-accepted:
			t.Error("the listener accepted a connection from a task with network=false")
		default:
		}

		d = g.run(t, "net-on", 0, "net.sh", "on", port)
		expectStatus(t, "network=true", d, task.Succeeded)
		select {
		case <-accepted:
		case <-time.After(5 * time.Second):
			t.Error("the listener saw no connection from a task with network=true")
		}
	})
	t.Run("timeout cap", func(t *testing.T) {
		begun := time.Now()
		d := g.run(t, "capped", 3600, "sleep.sh")
		expectStatus(t, "timeout cap", d, task.Timeout)
		if took := time.Since(begun); took > 6*time.Second {
			t.Errorf("a 1s cap ended the task after %v", took)
		}
	})
}

// A broken policy on SIGHUP leaves the running one in force, and says so; a
// valid one replaces it.
func TestPolicyReloadOnSIGHUP(t *testing.T) {
	dir := sandboxDir(t)
	script(t, dir, "old.sh", "echo old")
	script(t, dir, "new.sh", "echo new")
	pol := filepath.Join(t.TempDir(), "policy.hcl")
	writeFile(t, pol, "rule \"old\" {\n  cmdline = \"old.sh\"\n}\n", 0o644)
	g := startGuarded(t, dir, uniqueID("hup"), map[string]any{"policy_file": pol})

	expectStatus(t, "old before reload", g.run(t, "old-1", 0, "old.sh"), task.Succeeded)

	writeFile(t, pol, "rule \"new\" {\n  cmdline = \"new.sh\"\n  bogus = 1\n", 0o644)
	g.p.signal(syscall.SIGHUP)
	g.p.waitLog(t, "the new policy is not valid; the running policy stays in force", 10*time.Second)
	if !strings.Contains(g.p.output(), pol) {
		t.Errorf("the log does not name the file that failed to load")
	}
	expectStatus(t, "old after a broken reload", g.run(t, "old-2", 0, "old.sh"), task.Succeeded)
	d := g.run(t, "new-1", 0, "new.sh")
	expectStatus(t, "new after a broken reload", d, task.Rejected)
	expectReason(t, "new after a broken reload", d, `policy: no rule allows cmdline "new.sh"`)

	writeFile(t, pol, "rule \"new\" {\n  cmdline = \"new.sh\"\n}\n", 0o644)
	g.p.signal(syscall.SIGHUP)
	g.p.waitLog(t, "SIGHUP: policy reloaded", 10*time.Second)
	expectStatus(t, "new after a valid reload", g.run(t, "new-2", 0, "new.sh"), task.Succeeded)
	d = g.run(t, "old-3", 0, "old.sh")
	expectStatus(t, "old after a valid reload", d, task.Rejected)
	expectReason(t, "old after a valid reload", d, `policy: no rule allows cmdline "old.sh"`)
}
