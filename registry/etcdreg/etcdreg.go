// Package etcdreg is the registry on etcd. Each executor holds a lease
// (an etcd session) and, under it, the key
//
//	<prefix>executors/<executor id>  → JSON registry.Member
//
// which etcd deletes when the lease ends. The member's incarnation is the
// key's create revision: it grows with every registration, cluster-wide.
package etcdreg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/taskjob/task-job/registry"
)

// Options configure a Registry.
type Options struct {
	Endpoints []string
	// Prefix of every key, e.g. "/task-job/queue_job_task/". Default
	// "/task-job/".
	Prefix string
	// TTL is the lease (whole seconds, at least 1; default 10 s).
	TTL time.Duration
	// Grace is how long after a lost lease the executor's own tasks are
	// stopped (default TTL).
	Grace time.Duration
	// DialTimeout bounds connecting (default 2 s).
	DialTimeout time.Duration
	Logger      hclog.Logger
}

// Registry implements registry.Registry on etcd.
type Registry struct {
	cli *clientv3.Client
	opt Options
}

var (
	_ registry.Registry     = (*Registry)(nil)
	_ registry.Registration = (*Registration)(nil)
)

// New connects (lazily: etcd may be down at first).
func New(opt Options) (*Registry, error) {
	if len(opt.Endpoints) == 0 {
		return nil, errors.New("etcdreg: no endpoints")
	}
	if opt.Prefix == "" {
		opt.Prefix = "/task-job/"
	}
	if !strings.HasSuffix(opt.Prefix, "/") {
		opt.Prefix += "/"
	}
	if opt.TTL <= 0 {
		opt.TTL = 10 * time.Second
	}
	opt.TTL = max(opt.TTL.Truncate(time.Second), time.Second)
	if opt.Grace <= 0 {
		opt.Grace = opt.TTL
	}
	if opt.DialTimeout <= 0 {
		opt.DialTimeout = 2 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = hclog.NewNullLogger()
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   opt.Endpoints,
		DialTimeout: opt.DialTimeout,
		// The client's own per-attempt logs would bury ours.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcdreg: %w", err)
	}
	return &Registry{cli: cli, opt: opt}, nil
}

// Client is the etcd client (for the dispatcher and tests).
func (r *Registry) Client() *clientv3.Client { return r.cli }

// Close closes the client.
func (r *Registry) Close() error { return r.cli.Close() }

func (r *Registry) key(id string) string { return r.opt.Prefix + "executors/" + id }

// Members implements registry.Registry.
func (r *Registry) Members(ctx context.Context) ([]registry.Member, error) {
	resp, err := r.cli.Get(ctx, r.opt.Prefix+"executors/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcdreg: list executors: %w", err)
	}
	out := make([]registry.Member, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var m registry.Member
		if err := json.Unmarshal(kv.Value, &m); err != nil {
			continue // not ours to read; a registry is shared only by executors
		}
		m.Incarnation = kv.CreateRevision
		out = append(out, m)
	}
	return out, nil
}

// Registration implements registry.Registration.
type Registration struct {
	r     *Registry
	m     registry.Member
	hooks registry.Hooks

	inc     atomic.Int64
	running atomic.Int64
	update  chan struct{}

	mu   sync.Mutex
	sess *concurrency.Session

	// keepCtx keeps the leases alive; it ends with Close.
	keepCtx context.Context
	cancel  context.CancelFunc
	done    chan struct{}
}

// Register registers m, waiting up to two TTLs for an earlier holder of
// the id to expire (a previous run that died), and keeps it registered
// until Close: see registry.Hooks for what happens when the lease is lost.
func (r *Registry) Register(ctx context.Context, m registry.Member, hooks registry.Hooks) (*Registration, error) {
	if m.Holder == "" {
		host, _ := os.Hostname()
		m.Holder = fmt.Sprintf("host %s pid %d", host, os.Getpid())
	}
	for _, h := range []*func(){&hooks.Lost, &hooks.Fence} {
		if *h == nil {
			*h = func() {}
		}
	}
	if hooks.Registered == nil {
		hooks.Registered = func(int64) {}
	}
	g := &Registration{r: r, m: m, hooks: hooks, update: make(chan struct{}, 1), done: make(chan struct{})}
	g.keepCtx, g.cancel = context.WithCancel(context.Background())
	deadline := time.Now().Add(2 * r.opt.TTL)
	for {
		err := g.register(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, registry.ErrIdentityTaken) || time.Now().After(deadline) {
			g.cancel()
			return nil, err
		}
		select {
		case <-ctx.Done():
			g.cancel()
			return nil, ctx.Err()
		case <-time.After(r.opt.TTL / 5):
		}
	}
	go g.loop(g.keepCtx)
	return g, nil
}

// register makes a new session and puts the member key on it, unless
// another holder has the id.
func (g *Registration) register(ctx context.Context) error {
	r := g.r
	ctx, cancel := context.WithTimeout(ctx, r.opt.TTL)
	defer cancel()
	// Grant under the deadline (a session would wait for etcd forever),
	// then keep the lease alive for as long as the registration lasts.
	lease, err := r.cli.Grant(ctx, int64(r.opt.TTL/time.Second))
	if err != nil {
		return fmt.Errorf("etcdreg: open a lease: %w", err)
	}
	sess, err := concurrency.NewSession(r.cli, concurrency.WithLease(lease.ID), concurrency.WithContext(g.keepCtx))
	if err != nil {
		return fmt.Errorf("etcdreg: open a lease: %w", err)
	}
	m := g.m
	m.Running = int(g.running.Load())
	val, _ := json.Marshal(m)
	key := r.key(m.ID)
	resp, err := r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(sess.Lease()))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		_ = sess.Close()
		return fmt.Errorf("etcdreg: register %q: %w", m.ID, err)
	}
	if !resp.Succeeded {
		_ = sess.Close()
		holder := "another process"
		if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) == 1 {
			var other registry.Member
			if json.Unmarshal(kvs[0].Value, &other) == nil && other.Holder != "" {
				holder = other.Holder
			}
		}
		return fmt.Errorf("%w: executor id %q is registered by %s; give each executor its own executor_id", registry.ErrIdentityTaken, m.ID, holder)
	}
	g.mu.Lock()
	g.sess = sess
	g.mu.Unlock()
	g.inc.Store(resp.Header.Revision)
	return nil
}

// Incarnation implements registry.Registration.
func (g *Registration) Incarnation() int64 { return g.inc.Load() }

// SetRunning implements registry.Registration.
func (g *Registration) SetRunning(n int) {
	if g.running.Swap(int64(n)) != int64(n) {
		select {
		case g.update <- struct{}{}:
		default:
		}
	}
}

// Close implements registry.Registration: the key goes with the lease.
func (g *Registration) Close(ctx context.Context) error {
	g.cancel()
	<-g.done
	g.mu.Lock()
	sess := g.sess
	g.sess = nil
	g.mu.Unlock()
	if sess == nil {
		return nil
	}
	_, err := g.r.cli.Revoke(ctx, sess.Lease())
	sess.Orphan()
	if err != nil {
		return fmt.Errorf("etcdreg: deregister: %w", err)
	}
	return nil
}

func (g *Registration) session() *concurrency.Session {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sess
}

func (g *Registration) loop(ctx context.Context) {
	defer close(g.done)
	log := g.r.opt.Logger
	for {
		sess := g.session()
		if !g.serve(ctx, sess) {
			return
		}
		// The lease is lost.
		g.inc.Store(0)
		log.Error("lost the registry lease: taking no more work; this executor's tasks stop after the grace unless it is back",
			"grace", g.r.opt.Grace)
		g.hooks.Lost()
		// The fence runs on time, whatever registering again is doing.
		fenced := make(chan struct{})
		fence := time.AfterFunc(g.r.opt.Grace, func() {
			log.Error("registry grace over: stopping this executor's tasks and reporting them lost")
			g.hooks.Fence()
			close(fenced)
		})
		// Revoke the old lease if etcd still has it (the client gave up
		// before the server expired it), so the id is free.
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, _ = g.r.cli.Revoke(rctx, sess.Lease())
		cancel()
		sess.Orphan()
		wait := 100 * time.Millisecond
		for {
			err := g.register(ctx)
			if err == nil {
				break
			}
			log.Warn("cannot register again yet", "error", err)
			select {
			case <-ctx.Done():
				fence.Stop()
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, g.r.opt.TTL/2)
		}
		// Tasks of the lost incarnation stop before any of the new one
		// is taken.
		select {
		case <-ctx.Done():
			if fence.Stop() {
				return
			}
			<-fenced
			return
		case <-fenced:
		}
		log.Info("registered again", "incarnation", g.inc.Load())
		g.hooks.Registered(g.inc.Load())
	}
}

// serve keeps the registration's value current until the lease is lost
// (true) or ctx ends (false).
func (g *Registration) serve(ctx context.Context, sess *concurrency.Session) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-sess.Done():
			return true
		case <-g.update:
			m := g.m
			m.Running = int(g.running.Load())
			val, _ := json.Marshal(m)
			key := g.r.key(m.ID)
			// Only while the key is still this lease's.
			pctx, cancel := context.WithTimeout(ctx, g.r.opt.TTL)
			_, _ = g.r.cli.Txn(pctx).
				If(clientv3.Compare(clientv3.LeaseValue(key), "=", sess.Lease())).
				Then(clientv3.OpPut(key, string(val), clientv3.WithLease(sess.Lease()))).
				Commit()
			cancel()
			select {
			case <-ctx.Done():
				return false
			case <-sess.Done():
				return true
			case <-time.After(200 * time.Millisecond): // coalesce
			}
		}
	}
}

// Prefix is the prefix of every key of this registry.
func (r *Registry) Prefix() string { return r.opt.Prefix }

// ExecutorsPrefix is the prefix of the member keys.
func (r *Registry) ExecutorsPrefix() string { return r.opt.Prefix + "executors/" }

// CordonsPrefix is the prefix of the cordon keys,
// <prefix>cordons/<executor id> → JSON registry.Cordon, kept without a
// lease (a cordon outlives the executor's registration and a restart).
func (r *Registry) CordonsPrefix() string { return r.opt.Prefix + "cordons/" }

// SetCordon records c for executor id, replacing an earlier cordon.
func (r *Registry) SetCordon(ctx context.Context, id string, c registry.Cordon) error {
	if c.Since == "" {
		c.Since = time.Now().UTC().Format(time.RFC3339)
	}
	val, _ := json.Marshal(c)
	if _, err := r.cli.Put(ctx, r.CordonsPrefix()+id, string(val)); err != nil {
		return fmt.Errorf("etcdreg: cordon %q: %w", id, err)
	}
	return nil
}

// Uncordon removes id's cordon; false if it had none.
func (r *Registry) Uncordon(ctx context.Context, id string) (bool, error) {
	resp, err := r.cli.Delete(ctx, r.CordonsPrefix()+id)
	if err != nil {
		return false, fmt.Errorf("etcdreg: uncordon %q: %w", id, err)
	}
	return resp.Deleted > 0, nil
}

// Cordons lists the cordons, by executor id.
func (r *Registry) Cordons(ctx context.Context) (map[string]registry.Cordon, error) {
	resp, err := r.cli.Get(ctx, r.CordonsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcdreg: list cordons: %w", err)
	}
	out := make(map[string]registry.Cordon, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var c registry.Cordon
		_ = json.Unmarshal(kv.Value, &c) // an unreadable cordon still cordons
		out[strings.TrimPrefix(string(kv.Key), r.CordonsPrefix())] = c
	}
	return out, nil
}
