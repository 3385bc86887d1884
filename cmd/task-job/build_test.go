package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taskjob/task-job/test/observe"
	"github.com/taskjob/task-job/test/redisserver"
)

// The Linux binaries ./build.sh leaves in dist/ work as built: the executor
// finds the helper built next to it (task-job-init-linux-ARCH beside
// task-job-linux-ARCH), says so at start-up, and runs a task through it;
// SHA256SUMS lists both.
func TestBuildShLinuxFindsItsHelper(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the sandbox helper exists on Linux only")
	}
	if os.Geteuid() != 0 && os.Getenv("CI") == "" {
		t.Skip("the sandbox (and so its helper) needs root; CI runs as root")
	}
	dist := t.TempDir()
	build := exec.Command("../../build.sh", "linux")
	build.Env = append(os.Environ(), "DIST="+dist, "GOARCH="+runtime.GOARCH)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("./build.sh linux: %v\n%s", err, out)
	}
	bin := filepath.Join(dist, "task-job-linux-"+runtime.GOARCH)
	helper := filepath.Join(dist, "task-job-init-linux-"+runtime.GOARCH)

	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{bin, helper} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if line := hex.EncodeToString(sum[:]) + "  " + filepath.Base(f) + "\n"; !strings.Contains(string(sums), line) {
			t.Errorf("SHA256SUMS lacks %q:\n%s", line, sums)
		}
	}
	out, err := exec.Command(bin, "version", "-json").Output()
	var v versionInfo
	if err != nil || json.Unmarshal(out, &v) != nil || v.BuildDate == "" || v.Commit == "unknown" {
		t.Errorf("version -json of the built binary: %v %s (want a build date and a commit)", err, out)
	}

	// A cmd_dir that the tasks' unprivileged user can reach.
	dir, err := os.MkdirTemp("", "task-job-build-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hello.sh"), []byte("#!/bin/sh\necho \"hello $1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	srv := redisserver.Start(t)
	log := startBuilt(t, bin, srv, "built", dir)
	for _, want := range []string{"sandbox helper: " + helper, "setup by " + helper} {
		if !strings.Contains(log.String(), want) {
			t.Fatalf("the start-up log does not say %q", want)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"submit", "-redis_addr=" + srv.Addr(), "-queue=built", "-wait", "-wait_timeout=30s", "hello.sh", "built"}, &stdout, &stderr); code != 0 ||
		stdout.String() != "hello built\n" || !strings.Contains(stderr.String(), "done: succeeded") {
		t.Fatalf("a task through the built helper: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}

	// The same binary alone, without its helper, says so at start-up and
	// where it looked, rather than falling back silently.
	alone := filepath.Join(t.TempDir(), filepath.Base(bin))
	if err := exec.Command("cp", bin, alone).Run(); err != nil {
		t.Fatal(err)
	}
	aloneLog := startBuilt(t, alone, srv, "alone", dir)
	want := "no sandbox helper found: every task's setup re-executes task-job itself"
	looked := filepath.Join(filepath.Dir(alone), "task-job-init-linux-"+runtime.GOARCH)
	if !strings.Contains(aloneLog.String(), want) || !strings.Contains(aloneLog.String(), looked) {
		t.Errorf("the binary without its helper does not say %q naming %s:\n%s", want, looked, aloneLog.String())
	}
}

// startBuilt runs a built binary as an executor serving queue on srv with
// the sandbox on, stops it at cleanup, and returns its log once it serves.
func startBuilt(t *testing.T, bin string, srv *redisserver.Server, queue, dir string) *observe.Buffer {
	t.Helper()
	id := fmt.Sprintf("build-%d-%s-%s", os.Getpid(), t.Name(), queue)
	cfg, _ := json.Marshal(map[string]any{
		"redis_addr": srv.Addr(), "queue_name": queue, "cmd_dir": dir, "executor_id": id, "isolation": "on",
		"logs": true, "spool_dir": filepath.Join(t.TempDir(), "spool"), "shutdown_grace": "2s",
	})
	cfgPath := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	log := &observe.Buffer{}
	ex := exec.Command(bin, "-config="+cfgPath)
	ex.Stdout, ex.Stderr = log, log
	if err := ex.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = ex.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = ex.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = ex.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("executor %s log:\n%s", bin, log.String())
		}
	})
	observe.Eventually(t, "the built executor to serve", 30*time.Second, func() bool {
		return strings.Contains(log.String(), "executor serving")
	})
	return log
}
