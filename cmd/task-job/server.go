package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/taskjob/task-job/api"
	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/config"
	"github.com/taskjob/task-job/policy"
	"github.com/taskjob/task-job/queue/redisqueue"
)

// runServer is "task-job server": the management server alone, for a host
// that watches a deployment without running its tasks.
func runServer(args []string, stdout, stderr io.Writer) int {
	fs := quietFlagSet("task-job server")
	configPath := fs.String("config", "", "config.json: server_port, server_tokens_file, the TLS files, Redis and the list names")
	port := fs.String("server_port", "", "where to listen, overriding the config's server_port (a bare port = 127.0.0.1 only)")
	newToken := fs.String("new-token", "", "print a new random token for `NAME`, with the role given after it, and its server_tokens_file line; serve nothing")
	var lf logFlags
	lf.register(fs)
	log, closer, code := parseWithLog(fs, &lf, "server", args, stdout, stderr)
	if log == nil {
		return code
	}
	defer closer.Close()
	if *newToken != "" {
		return printNewToken(*newToken, fs.Args(), stdout, stderr)
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "server", "unexpected argument %q: server takes only flags", fs.Arg(0))
	}
	cfg, err := loadConfig(*configPath, log)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *port != "" {
		cfg.ServerPort = *port
		if err := cfg.Validate(); err != nil {
			fmt.Fprintf(stderr, "task-job server: -server_port=%s: %v\n", *port, err)
			return exitUsage
		}
	}
	if cfg.ServerPort == "" {
		fmt.Fprintln(stderr, "task-job server: no server_port: set it in the config (\"server_port\": \"8080\" listens on 127.0.0.1) or pass -server_port=8080")
		return exitUsage
	}
	ctx, stop := signalContext(log)
	defer stop()
	if err := server(ctx, cfg, log); err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return 0
		}
		log.Error("management server stopped with an error", "error", err)
		return 1
	}
	return 0
}

// printNewToken is "task-job server -new-token NAME ROLE".
func printNewToken(name string, rest []string, stdout, stderr io.Writer) int {
	if len(rest) != 1 {
		return usageError(stderr, "server", "-new-token %s wants one role after it: read, operate or admin", name)
	}
	role, ok := api.ParseRole(rest[0])
	if !ok {
		return usageError(stderr, "server", "role %q: want read, operate or admin", rest[0])
	}
	tok, line := api.NewToken(name, role)
	if _, err := api.ParseTokens([]byte(line)); err != nil {
		return usageError(stderr, "server", "%v", strings.TrimPrefix(err.Error(), api.ErrTokens.Error()+": "))
	}
	fmt.Fprintf(stdout, "token for %s (give it to its user; it is not stored anywhere and is shown only now):\n  %s\n"+
		"line for server_tokens_file (holds only its hash):\n  %s\n", name, tok, line)
	return exitOK
}

// server runs the management server over cfg's Redis until ctx ends.
func server(ctx context.Context, cfg *config.Config, log hclog.Logger) error {
	redisqueue.RouteClientLog(log.Named("redis"))
	rdb, err := redisqueue.Dial(redisqueue.DialOptions{Addr: cfg.RedisAddr, Password: cfg.RedisPassword, DB: cfg.RedisDB, PoolSize: 32})
	if err != nil {
		return err
	}
	if err := waitForRedis(ctx, rdb, cfg.RedisAddr, log); err != nil {
		rdb.Close()
		return err
	}
	// No executor id: this process takes no task and registers nowhere.
	q := redisqueue.New(rdb, redisqueue.Options{
		Names:     redisqueue.Names{Tasks: cfg.QueueName, Control: cfg.QueueControlName, Logs: cfg.LogsChannel},
		Retention: cfg.StatusRetention, TTL: cfg.ExecutorTTL, Logger: log,
		MaxTaskBytes: cfg.MaxTaskBytes, LogsMaxLen: logsMaxLen(cfg),
	})
	defer q.Close()
	// Its own audit log, for its own writes: an executor's file has one
	// writer, and the Redis stream mirrors the executors' logs, so this one
	// is not mirrored (audit/verify checks its chain alone).
	var al *audit.Log
	if cfg.AuditFile != "" {
		al, err = audit.Open(cfg.AuditFile, audit.Options{MaxBytes: cfg.AuditMaxBytes, Executor: "server:" + cfg.ExecutorID})
		if err != nil {
			return fmt.Errorf("audit_file: %w (the server needs an audit file of its own, not an executor's)", err)
		}
		defer al.Close()
	}
	// The policy, for the page's dry run only: this process admits no task.
	// One that does not load leaves the dry run unavailable, not the server.
	var pol *policy.Policy
	if cfg.PolicyFile != "" {
		if pol, err = policy.Load(cfg.PolicyFile); err != nil {
			log.Warn("policy_file does not load: the policy dry run is unavailable", "file", cfg.PolicyFile, "error", err)
			pol = nil
		}
	}
	mg, err := startManagement(ctx, cfg, q, managementOptions{Audit: al, Policy: func() *policy.Policy { return pol }}, log)
	if err != nil {
		return err
	}
	defer mg.stop()
	log.Info("serving the management API only: this process runs no task", "redis_addr", redactAddr(cfg.RedisAddr), "queue", cfg.QueueName, "pid", os.Getpid())
	<-ctx.Done()
	return nil
}
