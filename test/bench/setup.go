package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/executor"
	"github.com/taskjob/task-job/jail"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/sandbox"
	"github.com/taskjob/task-job/task"
)

// stampSource is built into cmd_dir at start-up. It lives in its own
// package so that it is compiled and vetted with the rest of the tree.
//
//go:embed stamp/main.go
var stampSource []byte

// Scripts written into cmd_dir. They are root-owned and 0755 because the jail
// refuses anything another user could have written.
const (
	trueScript   = "true.sh"
	chattyScript = "chatty.sh"
	tickerScript = "ticker.sh"
	stampProgram = "stamp"
)

var scripts = map[string]string{
	trueScript: "#!/bin/sh\nexit 0\n",
	// exec so that the line producer is the task's main process, as a
	// chatty build step would be.
	chattyScript: "#!/bin/sh\nexec seq 1 \"$1\"\n",
	// A stamped line every 10 ms: each says when it was written.
	tickerScript: "#!/bin/sh\ni=0\nwhile [ $i -lt \"$1\" ]; do ./stamp; sleep 0.01; i=$((i+1)); done\n",
}

// taskEnv is the whole environment of every task and baseline process.
var taskEnv = []string{"PATH=/usr/bin:/bin"}

// bench holds what every measurement shares.
type bench struct {
	cfg    config
	redis  *redisServer
	rdb    *redis.Client // for submitting; the blocking pops get their own clients
	tmp    string        // everything the run creates lives below it
	cmdDir string
	// runner is what task-job uses by default: isolated when the host
	// allows. group runs tasks in a process group only; measuring task-job
	// with both separates the executor's own cost from the sandbox's.
	runner, group *sandbox.Runner
	// reexec is the sandbox without its helper installed: it re-executes
	// this binary for the per-task setup.
	reexec    *sandbox.Runner
	initPath  string // the helper built for this run
	log       hclog.Logger
	loadStart string
	// The Redis figures the Kafka rows are set beside (zero when their
	// section did not run): dispatch and tasks/s at concurrency 4 with
	// transportVariant, log lines/s with the default runner.
	redisDispatch           samples
	redisRateC4, redisLines float64
}

// buildInit builds the sandbox helper into dir as the release does, so the
// runner measured is the one an installed executor uses.
func buildInit(dir string) (string, error) {
	goBin, err := goTool()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, sandbox.InitName)
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", out, "github.com/taskjob/task-job/cmd/task-job-init")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s (run the benchmark from the repository): %v\n%s", sandbox.InitName, err, msg)
	}
	// The sandbox refuses a helper anyone but root could have replaced.
	return out, os.Chmod(out, 0o755)
}

// loadAvg returns /proc/loadavg's three averages, or "unknown".
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(raw)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// path returns the absolute path of a file in cmd_dir.
func (b *bench) path(name string) string { return filepath.Join(b.cmdDir, name) }

// prepareCmdDir writes the scripts and builds stamp into cmd_dir.
func (b *bench) prepareCmdDir() error {
	b.cmdDir = filepath.Join(b.tmp, "cmd")
	if err := os.Mkdir(b.cmdDir, 0o755); err != nil {
		return err
	}
	for name, body := range scripts {
		p := b.path(name)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			return err
		}
		// WriteFile's mode is filtered by the umask; the jail wants exactly
		// no group/other write and the exec bits set.
		if err := os.Chmod(p, 0o755); err != nil {
			return err
		}
	}
	return b.buildStamp()
}

// buildStamp compiles stamp as a static binary. It is built outside the
// module (a single file importing only the standard library), so no go.mod
// or workspace setting can change it.
func (b *bench) buildStamp() error {
	src := filepath.Join(b.tmp, "stamp-src")
	if err := os.Mkdir(src, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), stampSource, 0o600); err != nil {
		return err
	}
	goBin, err := goTool()
	if err != nil {
		return err
	}
	out := b.path(stampProgram)
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, "main.go")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build stamp: %v\n%s", err, msg)
	}
	return os.Chmod(out, 0o755)
}

// names returns a fresh set of lists for one measurement, so that nothing
// left over from an earlier one (or its executor) can mix in.
func names(phase string) redisqueue.Names {
	q := "bench:" + phase
	return redisqueue.Names{Tasks: q, Control: q + ":control", Logs: q + ":logs"}
}

// runningExecutor is one in-process executor serving a set of lists.
type runningExecutor struct {
	names  redisqueue.Names
	cancel context.CancelFunc
	done   chan error
}

// startExecutor runs an executor in this process, wired the way the
// task-job binary wires it, with output shipping on.
// Each configure function may add to the options (policy, audit log, ...).
func (b *bench) startExecutor(phase string, concurrency int, runner *sandbox.Runner, configure ...func(*executor.Options)) (*runningExecutor, error) {
	return b.startExecutorOn(phase, concurrency, runner, redisqueue.Options{}, configure...)
}

// startExecutorOn is startExecutor with queue options to start from
// (Dispatched); names, id, retention and the client are set here.
func (b *bench) startExecutorOn(phase string, concurrency int, runner *sandbox.Runner, qopt redisqueue.Options, configure ...func(*executor.Options)) (*runningExecutor, error) {
	j, err := jail.New(jail.Options{Dir: b.cmdDir})
	if err != nil {
		return nil, err
	}
	n := names(phase)
	id := "bench-" + phase
	// Pool: the executor's blocking pops (tasks, control, forwarded kills)
	// hold a connection each, plus one per running task for its claim and
	// one for the publisher.
	rdb := redis.NewClient(&redis.Options{Addr: b.redis.addr, PoolSize: concurrency + 16, DialTimeout: time.Second})
	qopt.Names, qopt.ExecutorID, qopt.Retention = n, id, time.Hour
	q := redisqueue.New(rdb, qopt)
	opts := executor.Options{
		ExecutorID: id, Concurrency: concurrency, Logs: true,
		SpoolDir: filepath.Join(b.tmp, "spool-"+phase),
		Env:      taskEnv,
		Broker:   q, Jail: j, Runner: runner, Logger: b.log.Named(id),
	}
	for _, f := range configure {
		f(&opts)
	}
	ex, err := executor.New(opts)
	if err != nil {
		q.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningExecutor{names: n, cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := ex.Run(ctx)
		q.Close()
		r.done <- err
	}()
	return r, nil
}

// stop shuts the executor down and waits for it (about a second: its
// blocking pop has to time out).
func (r *runningExecutor) stop() error {
	r.cancel()
	select {
	case err := <-r.done:
		return err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("executor serving %s did not stop", r.names.Tasks)
	}
}

// submit pushes one task the way a client does.
func (b *bench) submit(ctx context.Context, list, id, cmdline string, args ...string) error {
	return b.rdb.RPush(ctx, list, taskJSON(id, cmdline, args)).Err()
}

// taskJSON encodes a task as a client would submit it.
func taskJSON(id, cmdline string, args []string) string {
	if args == nil {
		args = []string{}
	}
	raw, err := json.Marshal(task.Task{ID: id, Type: "bench", Task: task.Spec{Cmdline: cmdline, CmdArgs: args}})
	if err != nil {
		panic(err) // plain strings only: cannot fail
	}
	return string(raw)
}

// goTool finds the go command: on PATH, or where `go run` put the bench's
// own toolchain (GOROOT in the environment it sets).
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go"), nil
	}
	return "", errors.New("bench: the go command is needed to build the helper programs; put it on PATH")
}
