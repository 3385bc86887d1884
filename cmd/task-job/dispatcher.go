package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/config"
	"github.com/taskjob/task-job/dispatch"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/registry"
	"github.com/taskjob/task-job/registry/etcdreg"
)

// registryPrefix is where one deployment's keys live in etcd.
func registryPrefix(cfg *config.Config) string { return "/task-job/" + cfg.QueueName + "/" }

// runDispatcher is "task-job dispatcher": one replica of the dispatcher.
func runDispatcher(args []string, stdout, stderr io.Writer) int {
	fs := quietFlagSet("task-job dispatcher")
	configPath := fs.String("config", "", "config.json: registry, registry_ttl, Redis and queue_name (the executors' config will do)")
	var lf logFlags
	lf.register(fs)
	log, closer, code := parseWithLog(fs, &lf, "dispatcher", args, stdout, stderr)
	if log == nil {
		return code
	}
	defer closer.Close()
	if fs.NArg() > 0 {
		return usageError(stderr, "dispatcher", "unexpected argument %q: dispatcher takes only flags", fs.Arg(0))
	}
	cfg, err := loadConfig(*configPath, log)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailed
	}
	if cfg.Registry == "" {
		fmt.Fprintln(stderr, `task-job dispatcher: the config sets no "registry": the dispatcher finds executors and elects its leader in etcd; set "registry": "etcd://host:2379"`)
		return exitUsage
	}
	if cfg.Transport != config.TransportRedis {
		fmt.Fprintf(stderr, "task-job dispatcher: works on the Redis transport only (transport is %q)\n", cfg.Transport)
		return exitUsage
	}
	ctx, stop := signalContext(log)
	defer stop()
	redisqueue.RouteClientLog(log.Named("redis"))
	rdb, err := redisqueue.Dial(redisqueue.DialOptions{Addr: cfg.RedisAddr, Password: cfg.RedisPassword, DB: cfg.RedisDB, PoolSize: 8 + 2*dispatch.MaxWaiters}) // the waiters of a term that ends may block a second more
	if err != nil {
		fmt.Fprintln(stderr, "task-job dispatcher:", err)
		return exitFailed
	}
	if err := waitForRedis(ctx, rdb, cfg.RedisAddr, log); err != nil {
		rdb.Close()
		if ctx.Err() != nil {
			return exitOK
		}
		fmt.Fprintln(stderr, "task-job dispatcher:", err)
		return exitFailed
	}
	q := redisqueue.New(rdb, redisqueue.Options{
		Names:        redisqueue.Names{Tasks: cfg.QueueName, Control: cfg.QueueControlName, Logs: cfg.LogsChannel},
		MaxTaskBytes: cfg.MaxTaskBytes, Retention: cfg.StatusRetention,
	})
	defer q.Close()
	reg, err := etcdreg.New(etcdreg.Options{Endpoints: cfg.RegistryEndpoints(), Prefix: registryPrefix(cfg), TTL: cfg.RegistryTTL})
	if err != nil {
		fmt.Fprintln(stderr, "task-job dispatcher:", err)
		return exitFailed
	}
	defer reg.Close()
	host, _ := os.Hostname()
	name := fmt.Sprintf("host %s pid %d", host, os.Getpid())
	d := dispatch.New(dispatch.Options{
		Client: reg.Client(), Prefix: reg.Prefix(), ExecutorsPrefix: reg.ExecutorsPrefix(), CordonsPrefix: reg.CordonsPrefix(),
		Queue: q, TTL: cfg.RegistryTTL, Name: name, Logger: log,
	})
	log.Info("dispatcher replica started: campaigning", "registry", cfg.Registry, "queue", cfg.QueueName, "lease", cfg.RegistryTTL, "name", name)
	if err := d.Run(ctx); err != nil {
		log.Error("dispatcher stopped with an error", "error", err)
		return exitFailed
	}
	return exitOK
}

// gov is what cordon, uncordon and drain share: the id, the config's
// Redis and registry, and the audit log they record in (nil: none).
type gov struct {
	*client
	reg   *etcdreg.Registry
	id    string
	audit *audit.Log
	name  string
	by    string
	json  bool
}

// govReport is what cordon, uncordon and drain print with -json.
type govReport struct {
	Executor string `json:"executor"`
	Action   string `json:"action"`
	// Assigned: cordon, the tasks still in the executor's assigned list;
	// drain, those that waited there when it began.
	Assigned *int64 `json:"assigned,omitempty"`
	// Registered: cordon and drain looked the executor up in the
	// registry; Member is its entry there, if any.
	Registered *bool      `json:"registered,omitempty"`
	Member     *govMember `json:"member,omitempty"`
	Message    string     `json:"message"`
}

type govMember struct {
	Dispatched bool `json:"dispatched"`
	Running    int  `json:"running"`
	Slots      int  `json:"slots"`
}

// report prints what was done: the message, or with -json the record.
func (g *gov) report(stdout io.Writer, rep govReport, m *registry.Member, found bool) {
	if found {
		registered := m != nil
		rep.Registered = &registered
		if m != nil {
			rep.Member = &govMember{Dispatched: m.Dispatched, Running: m.Running, Slots: m.Slots}
		}
	}
	if g.json {
		b, _ := json.Marshal(rep)
		fmt.Fprintln(stdout, string(b))
		return
	}
	fmt.Fprintln(stdout, rep.Message)
}

func (g *gov) close() {
	if g.audit != nil {
		g.audit.Close()
	}
	g.reg.Close()
	g.rdb.Close()
}

// record writes a control record of what the command does to g.id,
// before it is done, as the executors and the management API record
// theirs: the record's executor is the one concerned, By who asked.
func (g *gov) record(action, reason string) error {
	if g.audit == nil {
		return nil
	}
	err := g.audit.Append(audit.Record{Kind: audit.KindControl, Executor: g.id, Action: action, By: g.by, Reason: reason})
	if err != nil {
		return fmt.Errorf("not done: the audit log cannot be written: %w", err)
	}
	return nil
}

// governance is the shared part of cordon, uncordon and drain: the id,
// the config, the registry and the audit log.
func governance(name string, args []string, stdout, stderr io.Writer, extra func(cc *clientCommand)) (*gov, int) {
	cc := newClientCommand(name, stdout, stderr)
	cc.interspersed = true
	auditFile := cc.fs.String("audit_file", "", "the audit log to record this in, overriding the config's audit_file (which a running executor holds: one writer per log)")
	asJSON := cc.fs.Bool("json", false, "print what was done as one JSON object (errors stay on stderr)")
	if extra != nil {
		extra(cc)
	}
	c, code := cc.connect(args, 1, 1, "executor id")
	if c == nil {
		return nil, code
	}
	if c.cfg.Registry == "" {
		c.rdb.Close()
		return nil, usageError(stderr, name, `the config sets no "registry": cordons are kept in the fleet's etcd registry; give -config=FILE with "registry": "etcd://host:2379"`)
	}
	path := *auditFile
	if path == "" {
		path = c.cfg.AuditFile
	}
	var al *audit.Log
	if path != "" {
		host, _ := os.Hostname()
		var err error
		if al, err = audit.Open(path, audit.Options{MaxBytes: c.cfg.AuditMaxBytes, Executor: "cli:" + host}); err != nil {
			c.rdb.Close()
			hint := ""
			if errors.Is(err, audit.ErrLocked) {
				hint = "; give -audit_file=FILE a log of its own"
			}
			fmt.Fprintf(stderr, "task-job %s: not done: the audit log cannot be opened: %v%s\n", name, err, hint)
			return nil, exitFailed
		}
	}
	reg, err := etcdreg.New(etcdreg.Options{Endpoints: c.cfg.RegistryEndpoints(), Prefix: registryPrefix(c.cfg), DialTimeout: pingTimeout})
	if err != nil {
		if al != nil {
			al.Close()
		}
		c.rdb.Close()
		fmt.Fprintf(stderr, "task-job %s: %v\n", name, err)
		return nil, exitFailed
	}
	return &gov{client: c, reg: reg, id: cc.fs.Arg(0), audit: al, name: name, by: whoAmI(), json: *asJSON}, 0
}

func whoAmI() string {
	host, _ := os.Hostname()
	who := fmt.Sprintf("host %s pid %d", host, os.Getpid())
	if u, err := user.Current(); err == nil {
		who = u.Username + " on " + who
	}
	return who
}

// member looks id up in the registry (nil when it is not registered).
func member(ctx context.Context, reg *etcdreg.Registry, id string) (*registry.Member, error) {
	ms, err := reg.Members(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.ID == id {
			return &m, nil
		}
	}
	return nil, nil
}

func registered(m *registry.Member) string {
	switch {
	case m == nil:
		return "it is not registered now; the cordon holds when it registers"
	case !m.Dispatched:
		return `it is registered but not "dispatched": it takes from the shared lists itself, which a cordon does not stop`
	}
	return fmt.Sprintf("it runs %d of %d tasks", m.Running, m.Slots)
}

func runCordon(args []string, stdout, stderr io.Writer) int {
	g, code := governance("cordon", args, stdout, stderr, nil)
	if g == nil {
		return code
	}
	defer g.close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := member(ctx, g.reg, g.id)
	if err == nil {
		err = g.record("cordon", "the dispatcher assigns it no new tasks")
	}
	if err == nil {
		err = g.reg.SetCordon(ctx, g.id, registry.Cordon{By: g.by})
		g.failed("cordon", err)
	}
	if err != nil {
		fmt.Fprintf(stderr, "task-job cordon: %v (registry %s)\n", err, g.cfg.Registry)
		return exitFailed
	}
	n := g.rdb.LLen(ctx, g.q.AssignedKey(g.id)).Val()
	g.report(stdout, govReport{Executor: g.id, Action: "cordon", Assigned: &n,
		Message: fmt.Sprintf("cordoned %s: the dispatcher assigns it no new tasks; the %d already assigned to it stay there (task-job drain %s gives them back); %s",
			g.id, n, g.id, registered(m))}, m, true)
	return exitOK
}

// failed records that action, recorded as asked, was not done after all.
func (g *gov) failed(action string, err error) {
	if err != nil {
		_ = g.record(action, "not done: "+err.Error())
	}
}

func runUncordon(args []string, stdout, stderr io.Writer) int {
	g, code := governance("uncordon", args, stdout, stderr, nil)
	if g == nil {
		return code
	}
	defer g.close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.record("uncordon", "the dispatcher may assign it tasks again"); err != nil {
		fmt.Fprintf(stderr, "task-job uncordon: %v\n", err)
		return exitFailed
	}
	had, err := g.reg.Uncordon(ctx, g.id)
	g.failed("uncordon", err)
	if err != nil {
		fmt.Fprintf(stderr, "task-job uncordon: %v (registry %s)\n", err, g.cfg.Registry)
		return exitFailed
	}
	if !had {
		g.failed("uncordon", errors.New("it was not cordoned"))
		fmt.Fprintf(stderr, "task-job uncordon: %s was not cordoned; nothing changed\n", g.id)
		return exitFailed
	}
	g.report(stdout, govReport{Executor: g.id, Action: "uncordon", Message: fmt.Sprintf("uncordoned %s: the dispatcher assigns it tasks again", g.id)}, nil, false)
	return exitOK
}

func runDrain(args []string, stdout, stderr io.Writer) int {
	var timeout *time.Duration
	g, code := governance("drain", args, stdout, stderr, func(cc *clientCommand) {
		timeout = cc.fs.Duration("timeout", 10*time.Second, "how long to wait for the dispatcher leader to give the assigned tasks back")
	})
	if g == nil {
		return code
	}
	defer g.close()
	id := g.id
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second+*timeout)
	defer cancel()
	m, err := member(ctx, g.reg, id)
	before := g.rdb.LLen(ctx, g.q.AssignedKey(id)).Val()
	if err == nil {
		err = g.record("drain", "the dispatcher assigns it no new tasks and gives its assigned, untaken ones back; running ones finish")
	}
	if err == nil {
		err = g.reg.SetCordon(ctx, id, registry.Cordon{Drain: true, By: g.by})
		g.failed("drain", err)
	}
	if err != nil {
		fmt.Fprintf(stderr, "task-job drain: %v (registry %s)\n", err, g.cfg.Registry)
		return exitFailed
	}
	deadline := time.Now().Add(*timeout)
	for {
		n, err := g.rdb.LLen(ctx, g.q.AssignedKey(id)).Result()
		if err != nil {
			fmt.Fprintf(stderr, "task-job drain: cordoned %s, but: %v\n", id, g.redisError(err))
			return exitFailed
		}
		if n == 0 {
			g.report(stdout, govReport{Executor: id, Action: "drain", Assigned: &before,
				Message: fmt.Sprintf("drained %s: cordoned, and its assigned list is empty (%d tasks waited there: given back to the shared list, or taken by it first); %s",
					id, before, registered(m))}, m, true)
			return exitOK
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(stderr, "task-job drain: cordoned %s, but %d tasks are still assigned to it after %v: is a dispatcher (task-job dispatcher) running on this registry and queue? The leader gives them back when it sees the drain.\n",
				id, n, *timeout)
			return exitTimeout
		}
		time.Sleep(50 * time.Millisecond)
	}
}
