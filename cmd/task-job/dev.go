package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/taskjob/task-job/config"
)

// runDev is the quick start: an in-memory Redis-protocol endpoint on
// loopback and an executor on it, with a demo script, so a first task runs
// with nothing installed. Everything is lost when it stops, and it says so.
func runDev(args []string, stdout, stderr io.Writer) int {
	fs := quietFlagSet("task-job dev")
	addr := fs.String("addr", "127.0.0.1:6379", "loopback address of the embedded endpoint (a free port is used if this one is busy)")
	cmdDir := fs.String("cmd_dir", "", "cmd_dir (default: a new temporary directory holding a demo script)")
	var lf logFlags
	lf.register(fs)
	log, closer, code := parseWithLog(fs, &lf, "dev", args, stdout, stderr)
	if log == nil {
		return code
	}
	defer closer.Close()
	if fs.NArg() > 0 {
		return usageError(stderr, "dev", "unexpected argument %q: dev takes only flags", fs.Arg(0))
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		fmt.Fprintf(stderr, "task-job dev: -addr %q must be a loopback host:port: the embedded endpoint has no password\n", *addr)
		return 2
	}

	m := miniredis.NewMiniRedis()
	if err := m.StartAddr(*addr); err != nil {
		if err := m.StartAddr(net.JoinHostPort(host, "0")); err != nil {
			fmt.Fprintln(stderr, "task-job dev: cannot listen:", err)
			return 1
		}
	}
	defer m.Close()
	// The embedded endpoint only ages keys when told to; age them in real
	// time so liveness and retention behave as they do on a real Redis.
	stopClock := make(chan struct{})
	defer close(stopClock)
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-stopClock:
				return
			case now := <-t.C:
				m.FastForward(now.Sub(last))
				last = now
			}
		}
	}()

	if *cmdDir == "" {
		dir, err := os.MkdirTemp("", "task-job-dev-")
		if err != nil {
			fmt.Fprintln(stderr, "task-job dev:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		// Sandboxed tasks run as an unprivileged user, who must reach it.
		_ = os.Chmod(dir, 0o755)
		demo := "#!/bin/sh\necho \"hello from task $TASK_ID, args: $*\"\necho 'this line goes to stderr' >&2\n"
		if err := os.WriteFile(filepath.Join(dir, "hello.sh"), []byte(demo), 0o755); err != nil {
			fmt.Fprintln(stderr, "task-job dev:", err)
			return 1
		}
		*cmdDir = dir
	}
	cfg := config.Default()
	cfg.RedisAddr = m.Addr()
	cfg.CmdDir = *cmdDir
	cfg.Logs = true
	cfg.ExecutorID = "dev"
	cfg.ShutdownGrace = 5 * time.Second
	// Under the state directory, not a predictable path in /tmp.
	cfg.SpoolDir = filepath.Join(cfg.StateDir, "spool-dev")
	cfg.WorkDir = filepath.Join(cfg.StateDir, "work-dev")
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "task-job dev:", err)
		return 1
	}
	fmt.Fprintf(stdout, `
  ==> task-job DEV MODE: an embedded, in-memory Redis-protocol endpoint on %s
  ==> NOTHING is kept when this process stops. Not for production.
  cmd_dir: %s

  Try, from another shell:
    go run ./cmd/task-job submit -redis_addr %s -wait hello.sh world
    redis-cli -p %s RPUSH queue_job_task '{"id":"1","type":"demo","tube":"","task":{"cmdline":"hello.sh","cmd_args":["a"],"timeout":60}}'
    redis-cli -p %s LRANGE queue_job_task_logs 0 -1

`, m.Addr(), *cmdDir, m.Addr(), m.Port(), m.Port())
	ctx, stop := signalContext(log)
	defer stop()
	if err := serve(ctx, cfg, log, nil); err != nil && ctx.Err() == nil {
		log.Error("executor stopped with an error", "error", err)
		return 1
	}
	return 0
}
