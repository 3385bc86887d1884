package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/taskjob/task-job/api"
	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/config"
	"github.com/taskjob/task-job/executor"
	"github.com/taskjob/task-job/metrics"
	"github.com/taskjob/task-job/policy"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/registry/etcdreg"
)

// management is the management server on server_port: the /api/v1
// handlers, the web page and /metrics, over what every executor writes to
// Redis.
type management struct {
	// Metrics counts this process's tasks when it runs them.
	Metrics *metrics.Metrics
	// Addr is the address it listens on.
	Addr string

	http       *http.Server
	cancel     context.CancelFunc
	done       chan struct{}
	log        hclog.Logger
	closeFleet func()
}

type managementOptions struct {
	// RunsTasks: this process is an executor; its metrics count its tasks.
	RunsTasks bool
	// Audit records every HTTP write (nil = logged only).
	Audit *audit.Log
	// AuditStream is the Redis copy of the audit file that audit/verify
	// compares with ("" = none).
	AuditStream string
	// Policy is the policy in force, for the policy dry run (nil = none).
	Policy func() *policy.Policy
	// Tasks serves the read-only task endpoints when there is no Redis
	// queue (Kafka); the other options are then unused.
	Tasks api.TaskReader
}

// startManagement listens on server_port and serves until stop. It outlives
// ctx's cancellation on purpose (see stop): an executor's API stays up
// while its running tasks finish their shutdown grace.
func startManagement(ctx context.Context, cfg *config.Config, q *redisqueue.Queue, o managementOptions, log hclog.Logger) (*management, error) {
	log = log.Named("management")
	var tokens *api.Tokens
	if cfg.ServerTokensFile != "" {
		t, err := api.LoadTokens(cfg.ServerTokensFile)
		if err != nil {
			return nil, fmt.Errorf("server_tokens_file: %w", err)
		}
		tokens = t
	}
	addr, err := api.ListenAddr(cfg.ServerPort, tokens != nil)
	if err != nil {
		return nil, err
	}
	var tlsConf *tls.Config
	if cfg.ServerTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.ServerTLSCert, cfg.ServerTLSKey)
		if err != nil {
			return nil, fmt.Errorf("server_tls_cert/server_tls_key: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	var srv *api.Server
	m := metrics.New(metrics.Options{
		Version: version, Executor: o.RunsTasks, Slots: cfg.Concurrency,
		Queues: func(ctx context.Context) ([]metrics.QueueFigure, error) {
			if q == nil {
				return nil, nil
			}
			return queueFigures(ctx, srv)
		},
	})
	var auditor api.Auditor
	if o.Audit != nil {
		auditor = o.Audit // a nil *audit.Log would not be a nil Auditor
	}
	var fleet api.Fleet
	closeFleet := func() {}
	if cfg.Registry != "" {
		// The executors page shows the registry too. The client dials
		// lazily, so an etcd outage shows there, not as a refusal to serve.
		reg, err := etcdreg.New(etcdreg.Options{Endpoints: cfg.RegistryEndpoints(), Prefix: registryPrefix(cfg), DialTimeout: pingTimeout})
		if err != nil {
			log.Warn("the executors page will not show the fleet registry", "registry", cfg.Registry, "error", err)
		} else {
			fleet, closeFleet = reg, func() { reg.Close() }
		}
	}
	apiOpt := api.Options{
		Queue: q, MaxTaskBytes: cfg.MaxTaskBytes, Tokens: tokens,
		Audit: auditor, AuditFile: cfg.AuditFile, AuditStream: o.AuditStream, Policy: o.Policy,
		Metrics: m.Handler(), Fleet: fleet,
		Secure: tlsConf != nil, Logger: log, Version: version,
	}
	if q == nil {
		// Read-only: nothing here writes, so there is nothing to audit.
		apiOpt = api.Options{Tasks: o.Tasks, Tokens: tokens, Secure: tlsConf != nil, Logger: log, Version: version}
		log.Warn("management server on Kafka: read-only: the task list, a task's status and its log stream (no queues or executors views, writes, page or /metrics yet; README, Kafka section)")
	}
	srv, err = api.New(apiOpt)
	if err != nil {
		closeFleet()
		return nil, err
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		closeFleet()
		return nil, fmt.Errorf("server_port: %w", err)
	}
	scheme := "http"
	if tlsConf != nil {
		ln, scheme = tls.NewListener(ln, tlsConf), "https"
	}
	addr = ln.Addr().String()

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	mg := &management{Metrics: m, Addr: addr, cancel: cancel, done: make(chan struct{}), log: log, closeFleet: closeFleet}
	mg.http = &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute, // bodies are small (max_task_bytes)
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// No WriteTimeout: log streams last as long as their task. They
		// end with runCtx instead.
		BaseContext: func(net.Listener) context.Context { return runCtx },
		ErrorLog:    log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	feedDone := make(chan struct{})
	go func() {
		defer close(feedDone)
		if err := srv.Run(runCtx); err != nil && runCtx.Err() == nil {
			log.Error("the live log feed stopped", "error", err)
		}
	}()
	go func() {
		defer close(mg.done)
		err := mg.http.Serve(ln)
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error("the management server stopped", "error", err)
		}
		<-feedDone
	}()
	select {
	case <-srv.Ready():
	case <-time.After(10 * time.Second):
		log.Warn("the live log feed is not subscribed yet; live pages start once Redis answers")
	}

	loopback := isLoopbackAddr(addr)
	switch {
	case tokens == nil:
		log.Info("management server on loopback only, without tokens: every local user and process may use it, submit and kill included; "+
			"set server_tokens_file to require tokens", "url", scheme+"://"+addr+"/")
	case tlsConf == nil && !loopback:
		log.Warn("management server listens beyond loopback WITHOUT TLS: tokens and task output cross the network in clear text; "+
			"set server_tls_cert and server_tls_key", "url", scheme+"://"+addr+"/", "tokens", tokens.Len())
	default:
		log.Info("management server listening; every request needs a token", "url", scheme+"://"+addr+"/", "tokens", tokens.Len())
	}
	if o.Audit == nil && q != nil {
		log.Warn("no audit_file: writes through the management server (submit, kill, retry) are only logged, not audited")
	}
	return mg, nil
}

// Observer is what the executor reports its tasks to.
func (mg *management) Observer() executor.Observer {
	if mg == nil {
		return nil
	}
	return mg.Metrics
}

// addr is where it listens, "" for none.
func (mg *management) addr() string {
	if mg == nil {
		return ""
	}
	return mg.Addr
}

// stop ends the streams and closes the listener, waiting a little for
// requests in flight.
func (mg *management) stop() {
	if mg == nil {
		return
	}
	mg.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := mg.http.Shutdown(ctx); err != nil {
		mg.http.Close()
	}
	<-mg.done
	mg.closeFleet()
	mg.log.Debug("management server stopped")
}

// queueFigures turns the API's queue view into the scrape-time metrics.
func queueFigures(ctx context.Context, srv *api.Server) ([]metrics.QueueFigure, error) {
	qs, err := srv.Queues(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]metrics.QueueFigure, len(qs))
	for i, q := range qs {
		out[i] = metrics.QueueFigure{Name: q.Name, Length: q.Length, OldestAge: -1}
		if q.Role == "tasks" {
			out[i].OldestAge = time.Duration(q.OldestAgeSeconds * float64(time.Second))
		}
	}
	return out, nil
}

func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// publishInfo writes what GET /api/v1/executors shows about this executor;
// the returned func removes it on a clean stop.
func publishInfo(ctx context.Context, q *redisqueue.Queue, cfg *config.Config, sandbox, serves string, log hclog.Logger) func() {
	host, _ := os.Hostname()
	remove, err := api.PublishExecutorInfo(ctx, q, cfg.ExecutorID, api.ExecutorInfo{
		Host: host, PID: os.Getpid(), Version: version, Slots: cfg.Concurrency, Sandbox: sandbox,
		Started: time.Now().UTC().Format(time.RFC3339), Serves: serves,
	})
	if err != nil {
		log.Warn("cannot publish this executor's description for the management server", "error", err)
	}
	return remove
}
