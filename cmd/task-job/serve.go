package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/config"
	"github.com/taskjob/task-job/executor"
	"github.com/taskjob/task-job/jail"
	"github.com/taskjob/task-job/policy"
	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/queue/kafkaqueue"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/sandbox"
)

// taskPath is the PATH a task gets: system directories only, never the
// executor's own PATH, which an operator's shell may have extended.
const taskPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// serveFlags is the executor's flag set: -config and the glog-style flags.
// name is how it was started: "task-job" (no command, as the original tool
// was) or "task-job serve".
func serveFlags(name string, configPath *string) (*flag.FlagSet, *logFlags) {
	fs := quietFlagSet(name)
	fs.StringVar(configPath, "config", "", "path of config.json (without it, every key takes its default)")
	var lf logFlags
	lf.register(fs)
	return fs, &lf
}

// runServe runs the executor started with no command: its -h is the list
// of commands (task-job -h).
func runServe(args []string, stdout, stderr io.Writer) int {
	return runExecutor("task-job", args, stdout, stderr)
}

// runServeCommand is "task-job serve": the same executor, whose -h is the
// serve help page, with its example, as every other command's is.
func runServeCommand(args []string, stdout, stderr io.Writer) int {
	return runExecutor("task-job serve", args, stdout, stderr)
}

func runExecutor(name string, args []string, stdout, stderr io.Writer) int {
	var configPath string
	fs, lf := serveFlags(name, &configPath)
	// Looked for before parsing: a command's own flag before its name
	// (task-job -config=X -wait submit ...) would fail the parse first.
	if i := commandWord(fs, args); i >= 0 {
		return commandAfterFlags(fs, args, i, stderr)
	}
	log, closer, code := parseWithLog(fs, lf, "serve", args, stdout, stderr)
	if log == nil {
		return code
	}
	defer closer.Close()
	if fs.NArg() > 0 {
		return strayWords(fs.Args(), stderr)
	}

	cfg, err := loadConfig(configPath, log)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ctx, stop := signalContext(log)
	defer stop()
	if err := serve(ctx, cfg, log, nil); err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return 0 // stopped while waiting for Redis
		}
		log.Error("executor stopped with an error", "error", err)
		return 1
	}
	return 0
}

// commandWord is the index in the executor's args of a command's name, or
// -1: the first word that is not a flag or a flag's value. A flag the
// executor does not know is taken to have no separate value.
func commandWord(fs *flag.FlagSet, args []string) int {
	for i := 0; i < len(args); i++ {
		w := args[i]
		if w == "--" {
			continue
		}
		if !strings.HasPrefix(w, "-") || w == "-" {
			if slices.Contains(commandNames(), w) {
				return i
			}
			return -1
		}
		if takesSeparateValue(fs, w) {
			i++
		}
	}
	return -1
}

// takesSeparateValue says whether flag word w (as "-name", "--name" or
// "-name=value") is followed by its value as the next word.
func takesSeparateValue(fs *flag.FlagSet, w string) bool {
	name, _, hasValue := strings.Cut(strings.TrimLeft(w, "-"), "=")
	f := fs.Lookup(name)
	if hasValue || f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

// takesFlags is the set of flags command name defines, read from its help
// page: each command builds its flag set as it runs.
func takesFlags(name string) map[string]bool {
	var help bytes.Buffer
	for _, c := range commands() {
		if c.name == name {
			c.run([]string{"-h"}, &help, &help)
		}
	}
	flags := map[string]bool{}
	for _, m := range flagLine.FindAllStringSubmatch(help.String(), -1) {
		flags[m[1]] = true
	}
	return flags
}

// flagLine is a flag's first line in a help page (flag.PrintDefaults).
var flagLine = regexp.MustCompile(`(?m)^  -([^\s=]+)`)

// commandAfterFlags refuses a command's name after the executor's flags
// (task-job -config=X submit ...), which would otherwise start an executor
// the user did not mean to start, and says how to write it: the command
// first, then the other words in their order, less the executor's flags
// that the command does not take.
func commandAfterFlags(fs *flag.FlagSet, args []string, at int, stderr io.Writer) int {
	name := args[at]
	takes := takesFlags(name)
	line := []string{"task-job", name}
	var dropped []string
	for i := 0; i < len(args); i++ {
		w := args[i]
		if i == at {
			continue
		}
		flagName, _, _ := strings.Cut(strings.TrimLeft(w, "-"), "=")
		if i < at && strings.HasPrefix(w, "-") && w != "--" && fs.Lookup(flagName) != nil && !takes[flagName] {
			if takesSeparateValue(fs, w) && i+1 < at {
				i++
				w += " " + args[i]
			}
			dropped = append(dropped, w)
			continue
		}
		line = append(line, w)
	}
	fmt.Fprintf(stderr, "task-job: %q after the flags: a command comes first; the executor was not started.\n"+
		"Did you mean:\n  %s\n", name, shellJoin(line))
	if len(dropped) > 0 {
		fmt.Fprintf(stderr, "(left out: %s, which %s does not take)\n", strings.Join(dropped, " "), name)
	}
	return exitUsage
}

// strayWords refuses words after the executor's flags: the original tool
// ignored them, and here they would start an executor that the user did
// not mean to start.
func strayWords(rest []string, stderr io.Writer) int {
	word := rest[0]
	fmt.Fprintf(stderr, "task-job: unexpected argument %q: the executor takes only flags, and a command comes first%s; the executor was not started.\n"+
		"Run 'task-job help' for the list of commands.\n", word, didYouMean(word, commandNames()))
	return exitUsage
}

// shellJoin quotes the words that a shell would split or expand.
func shellJoin(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		if w == "" || strings.ContainsAny(w, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
			w = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
		out[i] = w
	}
	return strings.Join(out, " ")
}

func loadConfig(path string, log hclog.Logger) (*config.Config, error) {
	if path == "" {
		log.Warn("no -config given: every key takes its default")
		return config.Default(), nil
	}
	cfg, warnings, err := config.Load(path)
	for _, w := range warnings {
		log.Warn("config: " + w.String())
	}
	if err != nil {
		return nil, fmt.Errorf("task-job: %s is not valid:\n%w", path, err)
	}
	return cfg, nil
}

// signalContext is cancelled by the first SIGTERM or SIGINT; a second one
// ends the shutdown grace at once (through the returned context's value).
func signalContext(log hclog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	stopNow := make(chan struct{})
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-ch
		log.Info("signal received: shutting down gracefully (send it again to kill running tasks now)", "signal", sig.String())
		cancel()
		sig = <-ch
		log.Warn("second signal: killing running tasks now", "signal", sig.String())
		close(stopNow)
	}()
	return context.WithValue(ctx, stopNowKey{}, stopNow), func() { signal.Stop(ch); cancel() }
}

type stopNowKey struct{}

// stateDir holds the host-local executor id locks. On Linux it is the
// sandbox's own directory too (its root mount point, /run/task-job/root).
var stateDir = "/run/task-job"

// joinRedis registers the executor id on the transport, retrying while it
// is unreachable; it fails when another live executor holds the id.
func joinRedis(ctx context.Context, q queue.Membership, log hclog.Logger) error {
	var failing bool
	for {
		err := q.Join(ctx)
		if err == nil || errors.Is(err, queue.ErrIdentityTaken) || ctx.Err() != nil {
			return err
		}
		if !failing {
			log.Warn("cannot register on Redis yet; retrying", "error", err)
			failing = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// serve builds an executor from cfg and runs it until ctx ends. ready, if
// set, is called once the executor is about to serve.
// executorOptions copies the config keys the executor takes. The objects
// built at start-up (broker, jail, runner, policy, ...) are the caller's to
// add. TestExecutorOptionsFromConfig fails when an Options field that a key
// could set is left zero here.
func executorOptions(cfg *config.Config) executor.Options {
	return executor.Options{
		ExecutorID: cfg.ExecutorID, Concurrency: cfg.Concurrency, Logs: cfg.Logs,
		MaxTaskBytes: cfg.MaxTaskBytes, MaxOutputBytes: cfg.MaxOutputBytes, MaxLineBytes: cfg.MaxLineBytes,
		MaxOutputMessages: cfg.MaxOutputMessages, MaxOutputRate: cfg.MaxOutputRate,
		KillGrace: cfg.KillGrace, ShutdownGrace: cfg.ShutdownGrace, TTL: cfg.ExecutorTTL,
		LogsHTTP: cfg.LogsHTTP, SpoolDir: cfg.SpoolDir, SpoolMaxBytes: cfg.SpoolMaxBytes, CmdDirMinFree: cfg.CmdDirMinFree,
		Env:               []string{"PATH=" + taskPath, "HOME=" + cfg.CmdDir, "LANG=C.UTF-8"},
		RequireSignatures: cfg.RequireSignatures,
	}
}

func serve(ctx context.Context, cfg *config.Config, log hclog.Logger, ready func()) error {
	j, err := jail.New(jail.Options{Dir: cfg.CmdDir, Chroot: cfg.SandboxChroot})
	if err != nil {
		return fmt.Errorf("cmd_dir: %w", err)
	}
	// One executor id, one process: prove it before touching anything named
	// after the id (the cgroup parent, whose leftovers the sandbox removes;
	// the spool; the /etc copy). First on this host, at once...
	id, err := executor.LockIdentity(stateDir, cfg.ExecutorID)
	if errors.Is(err, fs.ErrPermission) {
		// Not root: the sandbox is off anyway; lock in a directory of this user.
		id, err = executor.LockIdentity(filepath.Join(os.TempDir(), fmt.Sprintf("task-job-%d", os.Getuid())), cfg.ExecutorID)
	}
	if err != nil {
		return err
	}
	log.Debug("holding the executor id on this host", "lock", id.Path())
	defer id.Close()
	// ...then on the transport, where an executor elsewhere may hold it.
	var q queue.Broker
	var rdb redis.UniversalClient // nil on Kafka
	var kq *kafkaqueue.Queue      // nil on Redis
	if cfg.Transport == config.TransportKafka {
		kq, err = openKafka(ctx, cfg, log)
		if err != nil {
			return err
		}
		defer kq.Close()
		q = kq
	} else {
		redisqueue.RouteClientLog(log.Named("redis"))
		rdb, err = redisqueue.Dial(redisqueue.DialOptions{
			Addr: cfg.RedisAddr, Password: cfg.RedisPassword, DB: cfg.RedisDB, PoolSize: cfg.Concurrency + 16,
		})
		if err != nil {
			return err
		}
		if err := waitForRedis(ctx, rdb, cfg.RedisAddr, log); err != nil {
			rdb.Close()
			return err
		}
		rq := redisqueue.New(rdb, redisqueue.Options{
			Names:      redisqueue.Names{Tasks: cfg.QueueName, Control: cfg.QueueControlName, Logs: cfg.LogsChannel},
			ExecutorID: cfg.ExecutorID,
			Retention:  cfg.StatusRetention,
			TTL:        cfg.ExecutorTTL,
			Logger:     log,
			// Oversized tasks are refused in Redis, before they are read.
			MaxTaskBytes: cfg.MaxTaskBytes,
			LogsMaxLen:   logsMaxLen(cfg),
			Tubes:        cfg.Tubes,
			Dispatched:   cfg.Dispatched,
		})
		defer rq.Close()
		q = rq
	}
	if err := joinRedis(ctx, q, log); err != nil {
		return err
	}

	runner, err := sandbox.New(sandboxOptions(cfg, log))
	if err != nil {
		return err
	}
	defer runner.Close()
	if d := filepath.Clean(cfg.CmdDir); d == "/tmp" || d == "/var/tmp" {
		log.Warn("cmd_dir is the host's shared " + d + ": every task can read and write all of it, other programs' files and sockets included; " +
			"give task-job a directory of its own (the original tool's default is kept only for compatibility)")
	}
	pol, err := loadPolicy(cfg, log)
	if err != nil {
		return err
	}
	// The policy in force, reloads included, for the management server's
	// dry run; the executor keeps its own.
	var inForce atomic.Pointer[policy.Policy]
	inForce.Store(pol)
	switch {
	case cfg.Isolation == config.IsolationOff:
		log.Warn("UNSAFE: isolation is off (\"isolation\": \"off\"): a task's background processes can outlive it")
	case cfg.Isolation == config.IsolationOn && !runner.Isolated():
		return errors.New("\"isolation\": \"on\" but this host cannot isolate tasks (run as root on Linux, or set \"auto\")")
	case !runner.Isolated():
		log.Warn("tasks are not isolated on this host: processes that leave their group (setsid) can outlive a task")
	}
	log.Info(runner.Describe())
	logHelper(cfg, runner, log)

	verifier, closeVerifier, err := newVerifier(cfg, rdb, kq, log)
	if err != nil {
		return err
	}
	defer closeVerifier()
	al, closeAudit, err := openAudit(cfg, rdb, kq, log)
	if err != nil {
		return err
	}
	defer closeAudit()
	var mg *management
	rq, onRedis := q.(*redisqueue.Queue)
	switch {
	case cfg.ServerPort != "" && !onRedis:
		// Kafka: the read-only endpoints, through the client side.
		c, err := connectKafka(cfg, "kafka_brokers in the config")
		if err != nil {
			return fmt.Errorf("server_port: %w", err)
		}
		defer c.kq.Close()
		if mg, err = startManagement(ctx, cfg, nil, managementOptions{RunsTasks: true, Tasks: c.kq}, log); err != nil {
			return err
		}
		defer mg.stop()
	case cfg.ServerPort != "":
		auditStream := ""
		if al != nil {
			auditStream = cfg.AuditStream
		}
		if mg, err = startManagement(ctx, cfg, rq, managementOptions{RunsTasks: true, Audit: al, AuditStream: auditStream, Policy: inForce.Load}, log); err != nil {
			return err
		}
		defer mg.stop()
	}
	if onRedis {
		defer publishInfo(ctx, rq, cfg, runner.Describe(), mg.addr(), log)()
	}

	opts := executorOptions(cfg)
	opts.Broker, opts.Jail, opts.Runner, opts.Logger = q, j, runner, log
	opts.Policy, opts.Verifier, opts.Audit, opts.Observer = pol, verifier, al, mg.Observer()
	ex, err := executor.New(opts)
	if err != nil {
		return err
	}
	if al != nil {
		if err := al.Append(audit.Record{Kind: audit.KindExecutor, Executor: cfg.ExecutorID, Event: audit.EventStarted,
			Version: version, PolicyDigest: fileDigest(cfg.PolicyFile), Reason: runner.Describe(),
			Config: map[string]string{"queue_name": cfg.QueueName, "cmd_dir": cfg.CmdDir, "policy_file": cfg.PolicyFile,
				"isolation": cfg.Isolation, "require_signatures": fmt.Sprint(cfg.RequireSignatures)},
		}); err != nil {
			return err
		}
		defer al.Append(audit.Record{Kind: audit.KindExecutor, Executor: cfg.ExecutorID, Event: audit.EventStopped})
	}
	hupCtx, stopHUP := context.WithCancel(ctx)
	defer stopHUP()
	go reloadOnHUP(hupCtx, cfg, func(p *policy.Policy) { ex.SetPolicy(p); inForce.Store(p) }, al, log)
	if stopNow, ok := ctx.Value(stopNowKey{}).(chan struct{}); ok {
		served := make(chan struct{})
		defer close(served)
		go func() {
			select {
			case <-stopNow:
				ex.StopNow()
			case <-served:
			}
		}()
	}
	leave, err := joinRegistry(ctx, cfg, ex, log)
	if err != nil {
		return err
	}
	defer leave()
	log.Info("serving", "redis_addr", redactAddr(cfg.RedisAddr), "queue", cfg.QueueName, "control", cfg.QueueControlName,
		"logs_channel", cfg.LogsChannel, "cmd_dir", cfg.CmdDir, "executor_id", cfg.ExecutorID)
	if ready != nil {
		ready()
	}
	return ex.Run(ctx)
}

// logsMaxLen turns logs_max_len (0 = never trim) into the queue's option
// (negative = never trim).
func logsMaxLen(cfg *config.Config) int {
	if cfg.LogsMaxLen == 0 {
		return -1
	}
	return cfg.LogsMaxLen
}

// redisRetryMax caps the wait between two attempts to reach Redis at start.
var redisRetryMax = 15 * time.Second

// waitForRedis returns once Redis answers, retrying with a growing pause
// and saying so at every attempt, or with ctx's error when the executor is
// told to stop first. No task can arrive while Redis is unreachable, so
// there is nothing to run meanwhile.
func waitForRedis(ctx context.Context, rdb redis.UniversalClient, addr string, log hclog.Logger) error {
	pause := time.Second
	for attempt := 1; ; attempt++ {
		pingCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := redisqueue.Ping(pingCtx, rdb)
		cancel()
		if err == nil {
			if attempt > 1 {
				log.Info("Redis answers now; starting", "redis_addr", redactAddr(addr), "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A refused password is retried too (an operator may be adding the
		// ACL user now), but the line names the setting to fix.
		what, fix := "Redis is not reachable", "check redis_addr and that Redis runs"
		if f := redisFix(err); f != "" {
			what, fix = "Redis answers but refuses this connection", f
		}
		log.Warn(fmt.Sprintf("%s; retrying in %s (attempt %d; stop with SIGTERM or Ctrl-C; %s)", what, pause, attempt, fix),
			"redis_addr", redactAddr(addr), "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, redisRetryMax)
	}
}
