package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

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
	rdb, err := redisqueue.Dial(redisqueue.DialOptions{Addr: cfg.RedisAddr, Password: cfg.RedisPassword, DB: cfg.RedisDB, PoolSize: 8})
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

// governance is the shared part of cordon, uncordon and drain: the id,
// the config, and the registry.
func governance(name string, args []string, stdout, stderr io.Writer, extra func(cc *clientCommand)) (*client, *etcdreg.Registry, string, int) {
	cc := newClientCommand(name, stdout, stderr)
	cc.interspersed = true
	if extra != nil {
		extra(cc)
	}
	c, code := cc.connect(args, 1, 1, "executor id")
	if c == nil {
		return nil, nil, "", code
	}
	if c.cfg.Registry == "" {
		c.rdb.Close()
		return nil, nil, "", usageError(stderr, name, `the config sets no "registry": cordons are kept in the fleet's etcd registry; give -config=FILE with "registry": "etcd://host:2379"`)
	}
	reg, err := etcdreg.New(etcdreg.Options{Endpoints: c.cfg.RegistryEndpoints(), Prefix: registryPrefix(c.cfg), DialTimeout: pingTimeout})
	if err != nil {
		c.rdb.Close()
		fmt.Fprintf(stderr, "task-job %s: %v\n", name, err)
		return nil, nil, "", exitFailed
	}
	return c, reg, cc.fs.Arg(0), 0
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
	c, reg, id, code := governance("cordon", args, stdout, stderr, nil)
	if c == nil {
		return code
	}
	defer c.rdb.Close()
	defer reg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := member(ctx, reg, id)
	if err == nil {
		err = reg.SetCordon(ctx, id, registry.Cordon{By: whoAmI()})
	}
	if err != nil {
		fmt.Fprintf(stderr, "task-job cordon: %v (registry %s)\n", err, c.cfg.Registry)
		return exitFailed
	}
	n := c.rdb.LLen(ctx, c.q.AssignedKey(id)).Val()
	fmt.Fprintf(stdout, "cordoned %s: the dispatcher assigns it no new tasks; the %d already assigned to it stay there (task-job drain %s gives them back); %s\n",
		id, n, id, registered(m))
	return exitOK
}

func runUncordon(args []string, stdout, stderr io.Writer) int {
	c, reg, id, code := governance("uncordon", args, stdout, stderr, nil)
	if c == nil {
		return code
	}
	defer c.rdb.Close()
	defer reg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	had, err := reg.Uncordon(ctx, id)
	if err != nil {
		fmt.Fprintf(stderr, "task-job uncordon: %v (registry %s)\n", err, c.cfg.Registry)
		return exitFailed
	}
	if !had {
		fmt.Fprintf(stderr, "task-job uncordon: %s was not cordoned; nothing changed\n", id)
		return exitFailed
	}
	fmt.Fprintf(stdout, "uncordoned %s: the dispatcher assigns it tasks again\n", id)
	return exitOK
}

func runDrain(args []string, stdout, stderr io.Writer) int {
	var timeout *time.Duration
	c, reg, id, code := governance("drain", args, stdout, stderr, func(cc *clientCommand) {
		timeout = cc.fs.Duration("timeout", 10*time.Second, "how long to wait for the dispatcher leader to give the assigned tasks back")
	})
	if c == nil {
		return code
	}
	defer c.rdb.Close()
	defer reg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second+*timeout)
	defer cancel()
	m, err := member(ctx, reg, id)
	before := c.rdb.LLen(ctx, c.q.AssignedKey(id)).Val()
	if err == nil {
		err = reg.SetCordon(ctx, id, registry.Cordon{Drain: true, By: whoAmI()})
	}
	if err != nil {
		fmt.Fprintf(stderr, "task-job drain: %v (registry %s)\n", err, c.cfg.Registry)
		return exitFailed
	}
	deadline := time.Now().Add(*timeout)
	for {
		n, err := c.rdb.LLen(ctx, c.q.AssignedKey(id)).Result()
		if err != nil {
			fmt.Fprintf(stderr, "task-job drain: cordoned %s, but: %v\n", id, c.redisError(err))
			return exitFailed
		}
		if n == 0 {
			fmt.Fprintf(stdout, "drained %s: cordoned, and its assigned list is empty (%d tasks waited there: given back to the shared list, or taken by it first); %s\n",
				id, before, registered(m))
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
