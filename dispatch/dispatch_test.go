package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/registry"
	"github.com/taskjob/task-job/registry/etcdreg"
	"github.com/taskjob/task-job/registry/etcdreg/etcdtest"
	"github.com/taskjob/task-job/test/observe"
	"github.com/taskjob/task-job/test/redisserver"
)

var _ Queue = (*redisqueue.Queue)(nil)

type env struct {
	t     *testing.T
	rdb   *redis.Client
	q     *redisqueue.Queue
	etcd  string
	names redisqueue.Names
}

func newEnv(t *testing.T) *env { return newEnvOn(t, etcdtest.Start(t).Endpoint()) }

// newEnvOn is newEnv with the etcd at endpoint.
func newEnvOn(t *testing.T, endpoint string) *env {
	srv := redisserver.Start(t)
	names := redisqueue.Names{Tasks: "dq", Control: "dq_control", Logs: "dq_logs"}
	q := redisqueue.New(redis.NewClient(&redis.Options{Addr: srv.Addr()}), redisqueue.Options{Names: names})
	t.Cleanup(func() { q.Close() })
	return &env{t: t, rdb: srv.Client(t), q: q, etcd: endpoint, names: names}
}

func (e *env) registry(endpoint string) *etcdreg.Registry {
	r, err := etcdreg.New(etcdreg.Options{Endpoints: []string{endpoint}, Prefix: "/task-job/dq/", TTL: time.Second, DialTimeout: time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { r.Close() })
	return r
}

// start runs a replica whose etcd client reaches etcd at endpoint.
func (e *env) start(name, endpoint string) (*Dispatcher, context.CancelFunc) {
	return e.startWith(name, endpoint, nil)
}

// startWith is start with options changed by set (a 1 s TTL before).
func (e *env) startWith(name, endpoint string, set func(*Options)) (*Dispatcher, context.CancelFunc) {
	r := e.registry(endpoint)
	opt := Options{Client: r.Client(), Prefix: r.Prefix(), ExecutorsPrefix: r.ExecutorsPrefix(), CordonsPrefix: r.CordonsPrefix(),
		Queue: e.q, TTL: time.Second, Name: name}
	if set != nil {
		set(&opt)
	}
	d := New(opt)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	e.t.Cleanup(stop)
	return d, stop
}

// member registers an executor that takes nothing: what is assigned to
// it stays in its list.
func (e *env) member(id string, slots int, dispatched bool, tubes ...string) *etcdreg.Registration {
	if len(tubes) == 0 {
		tubes = []string{""}
	}
	g, err := e.registry(e.etcd).Register(context.Background(), registry.Member{ID: id, Tubes: tubes, Slots: slots, Dispatched: dispatched}, registry.Hooks{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { g.Close(context.Background()) })
	return g
}

func (e *env) assigned(id string) []string {
	return e.rdb.LRange(context.Background(), e.q.AssignedKey(id), 0, -1).Val()
}

// Two replicas: one leads; when it is cut off from etcd the other leads
// with a larger token and the first one's moves are refused; when that one
// stops cleanly, the first (reconnected) leads again, with a larger token
// still. Against the embedded etcd and Debian's etcd-server.
func TestLeaderFailoverFencesTheOldLeader(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { testLeaderFailover(t, newEnv(t)) })
	t.Run("etcd-server", func(t *testing.T) { testLeaderFailover(t, newEnvOn(t, etcdtest.StartProcess(t).Endpoint())) })
}

func testLeaderFailover(t *testing.T, e *env) {
	ctx := context.Background()
	proxy := etcdtest.NewProxy(t, e.etcd)
	a, _ := e.start("a", proxy.Addr())
	observe.Eventually(t, "a to lead", 10*time.Second, func() bool { return a.Token() != 0 })
	b, stopB := e.start("b", e.etcd)
	time.Sleep(300 * time.Millisecond)
	if b.Token() != 0 {
		t.Fatalf("two leaders: a %d, b %d", a.Token(), b.Token())
	}
	old := a.Token()

	proxy.Cut() // a is partitioned: its lease expires, b takes over
	observe.Eventually(t, "b to lead after a was cut off", 10*time.Second, func() bool { return b.Token() != 0 })
	if b.Token() <= old {
		t.Fatalf("b's token %d is not above a's %d", b.Token(), old)
	}
	e.rdb.RPush(ctx, "dq", `{"id":"t1"}`)
	if _, err := e.q.Move(ctx, old, "dq", 0, e.q.AssignedKey("x"), "*", ""); !errors.Is(err, queue.ErrFenced) {
		t.Fatalf("a move with the deposed leader's token: %v, want fenced", err)
	}
	if _, err := e.q.ReturnAssigned(ctx, old, "x"); !errors.Is(err, queue.ErrFenced) {
		t.Fatalf("a give-back with the deposed leader's token: %v, want fenced", err)
	}
	if n := e.rdb.LLen(ctx, "dq").Val(); n != 1 {
		t.Fatalf("the fenced move moved a task: %d left", n)
	}
	observe.Eventually(t, "a to step down", 10*time.Second, func() bool { return a.Token() == 0 })

	proxy.Heal()
	second := b.Token()
	stopB() // resigns: a leads at once
	observe.Eventually(t, "a to lead again", 10*time.Second, func() bool { return a.Token() != 0 })
	if a.Token() <= second {
		t.Fatalf("a's new token %d is not above b's %d", a.Token(), second)
	}
}

// Placement: only dispatched, uncordoned members that serve a task's tube
// get it, each at most its slots waiting; a member that leaves has its
// assigned tasks given back and placed on another.
func TestPlacementCordonAndLostMember(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	reg := e.registry(e.etcd)
	e.member("plain", 10, false) // not dispatched: gets nothing
	e.member("e1", 10, true)
	g2 := e.member("e2", 4, true, "", "gpu")
	if err := reg.SetCordon(ctx, "e1", registry.Cordon{By: "test"}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		e.rdb.RPush(ctx, "dq", fmt.Sprintf(`{"id":"u%d"}`, i))
	}
	e.rdb.RPush(ctx, "dq", `{"id":"g1","tube":"gpu"}`)
	e.rdb.RPush(ctx, "dq:tube:gpu", `{"id":"g2","tube":"gpu"}`)
	e.rdb.RPush(ctx, "dq:tube:cpu", `{"id":"c1","tube":"cpu"}`)
	d, _ := e.start("d", e.etcd)
	observe.Eventually(t, "e2 to get its 4 slots' worth", 10*time.Second, func() bool { return len(e.assigned("e2")) == 4 })
	time.Sleep(200 * time.Millisecond)
	if got := e.assigned("e1"); len(got) != 0 {
		t.Errorf("cordoned e1 was assigned %v", got)
	}
	if got := e.assigned("plain"); len(got) != 0 {
		t.Errorf("an executor that is not dispatched was assigned %v", got)
	}
	if n := e.rdb.LLen(ctx, "dq:tube:cpu").Val(); n != 1 {
		t.Errorf("a tube nobody serves lost its task")
	}
	if got := len(e.assigned("e2")); got != 4 {
		t.Errorf("e2 (4 slots) has %d assigned", got)
	}
	// The rest waits: in the shared list, the gpu task in its tube's.
	if n := e.rdb.LLen(ctx, "dq").Val() + e.rdb.LLen(ctx, "dq:tube:gpu").Val(); n != 3 {
		t.Errorf("%d tasks wait, want 3", n)
	}

	// e1 back in service, e2 lost: everything ends on e1, but the gpu
	// tasks, which nobody else serves, wait in their tube.
	if _, err := reg.Uncordon(ctx, "e1"); err != nil {
		t.Fatal(err)
	}
	observe.Eventually(t, "e1 to take the waiting untubed tasks", 10*time.Second, func() bool {
		return len(e.assigned("e1")) == 1
	})
	if err := g2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	observe.Eventually(t, "e2's tasks to be given back and placed on e1", 10*time.Second, func() bool {
		return len(e.assigned("e2")) == 0 && len(e.assigned("e1")) == 5 && e.rdb.LLen(ctx, "dq:tube:gpu").Val() == 2
	})
	if d.Moves() < 9 {
		t.Errorf("%d moves", d.Moves())
	}

	// Drained: e1's waiting tasks go back to the shared list.
	if err := reg.SetCordon(ctx, "e1", registry.Cordon{Drain: true}); err != nil {
		t.Fatal(err)
	}
	observe.Eventually(t, "drained e1's tasks back in the shared list", 10*time.Second, func() bool {
		return len(e.assigned("e1")) == 0 && e.rdb.LLen(ctx, "dq").Val() == 5
	})
	// In e1's order: u4 came first, then e2's four.
	if first := e.rdb.LIndex(ctx, "dq", 0).Val(); first != `{"id":"u4"}` {
		t.Errorf("given back out of order: head %s", first)
	}
}

// register adds m to the registry until the test ends.
func (e *env) register(m registry.Member) *etcdreg.Registration {
	g, err := e.registry(e.etcd).Register(context.Background(), m, registry.Hooks{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { g.Close(context.Background()) })
	return g
}

// waiting is the reason id's status gives for waiting ("" for none).
func (e *env) waiting(id string) string {
	st, err := e.q.Status(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	if st == nil {
		return ""
	}
	return st.Waiting
}

// Constraints pick executors by label; a task nobody can take waits with
// the reason in its status, without holding up the tasks behind it, and
// loses the reason once it is assigned.
func TestConstraintsAndWaitingReasons(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	reg := e.registry(e.etcd)
	e.register(registry.Member{ID: "a", Tubes: []string{""}, Slots: 10, Dispatched: true, Labels: map[string]string{"gpu": "a100", "zone": "b"}})
	e.register(registry.Member{ID: "b", Tubes: []string{"", "ml"}, Slots: 10, Dispatched: true, Labels: map[string]string{"gpu": "t4"}})
	e.register(registry.Member{ID: "c", Tubes: []string{"batch"}, Slots: 10})
	e.register(registry.Member{ID: "d", Tubes: []string{"locked"}, Slots: 10, Dispatched: true})
	e.register(registry.Member{ID: "f", Tubes: []string{"small"}, Slots: 1, Dispatched: true})
	if err := reg.SetCordon(ctx, "d", registry.Cordon{By: "test"}); err != nil {
		t.Fatal(err)
	}
	msg := func(id, tube, constraints string) string {
		return fmt.Sprintf(`{"id":%q,"tube":%q,"constraints":%s,"task":{"cmdline":"x"}}`, id, tube, constraints)
	}
	e.rdb.RPush(ctx, "dq",
		msg("h1", "", `{"gpu":"h100"}`), msg("p1", "", `{}`), msg("a1", "", `{"gpu":"a100"}`),
		msg("t1", "", `{"gpu":"t4"}`), msg("z1", "", `{"gpu":"a100","zone":"c"}`), msg("n1", "nobody", `null`))
	e.rdb.RPush(ctx, "dq:tube:batch", msg("x1", "batch", `{}`))
	e.rdb.RPush(ctx, "dq:tube:locked", msg("k1", "locked", `{}`))
	e.rdb.RPush(ctx, "dq:tube:small", msg("s1", "small", `{}`), msg("s2", "small", `{}`))
	e.start("d", e.etcd)

	observe.Eventually(t, "the placeable tasks to be assigned", 10*time.Second, func() bool {
		return len(e.assigned("a"))+len(e.assigned("b")) == 3 && len(e.assigned("f")) == 1
	})
	if got := strings.Join(e.assigned("a"), " "); !strings.Contains(got, `"a1"`) || strings.Contains(got, `"t1"`) {
		t.Errorf("a (gpu=a100) was assigned %s", got)
	}
	if got := strings.Join(e.assigned("b"), " "); !strings.Contains(got, `"t1"`) || strings.Contains(got, `"a1"`) {
		t.Errorf("b (gpu=t4) was assigned %s", got)
	}
	want := map[string]string{
		"h1": `no registered executor serving the untubed list has the labels it asks for (gpu=h100); serving it: a, b`,
		"z1": `no registered executor serving the untubed list has the labels it asks for (gpu=a100, zone=c); serving it: a, b`,
		"n1": `no registered executor serves tube "nobody"`,
		"x1": `the executors that could take it are not dispatched (they take from the lists themselves): c`,
		"k1": `every executor that could take it is cordoned: d`,
		"s2": `every executor that could take it has as many tasks assigned as it has slots: f`,
	}
	observe.Eventually(t, "every waiting task to say why", 10*time.Second, func() bool {
		for id, w := range want {
			if e.waiting(id) != w {
				return false
			}
		}
		return true
	})
	// The two that wait in the shared list kept their order; the tubed
	// one went on to its tube's list.
	if got := e.rdb.LRange(ctx, "dq", 0, -1).Val(); len(got) != 2 || !strings.Contains(got[0], `"h1"`) || !strings.Contains(got[1], `"z1"`) {
		t.Errorf("the shared list holds %v, want h1, z1", got)
	}
	if n := e.rdb.LLen(ctx, "dq:tube:nobody").Val(); n != 1 {
		t.Errorf("the tube nobody serves holds %d tasks", n)
	}
	for _, id := range []string{"p1", "a1", "t1", "s1"} {
		if w := e.waiting(id); w != "" {
			t.Errorf("assigned %s still says it waits: %q", id, w)
		}
	}

	// An executor with the labels asked for arrives, d is uncordoned:
	// their tasks go, and no longer say they wait.
	e.register(registry.Member{ID: "g", Tubes: []string{""}, Slots: 10, Dispatched: true, Labels: map[string]string{"gpu": "h100"}})
	if _, err := reg.Uncordon(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	observe.Eventually(t, "h1 on g and k1 on d", 10*time.Second, func() bool {
		return len(e.assigned("g")) == 1 && len(e.assigned("d")) == 1
	})
	if w := e.waiting("h1"); w != "" {
		t.Errorf("h1 assigned, still waiting: %q", w)
	}
	if w := e.waiting("k1"); w != "" {
		t.Errorf("k1 assigned, still waiting: %q", w)
	}
	observe.Eventually(t, "z1's reason to name g too", 10*time.Second, func() bool {
		return e.waiting("z1") == strings.Replace(want["z1"], "a, b", "a, b, g", 1)
	})
}

// A push to the empty shared list wakes an idle leader at once, however
// long its poll: each of a few tasks pushed one at a time is assigned
// well within the poll.
func TestIdleLeaderWakesOnAPush(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.member("e1", 100, true)
	const poll = 20 * time.Second
	d, _ := e.startWith("d", e.etcd, func(o *Options) { o.Poll = poll })
	observe.Eventually(t, "d to lead", 10*time.Second, func() bool { return d.Token() != 0 })
	for i := range 3 {
		time.Sleep(300 * time.Millisecond) // idle: its last pass found nothing
		start := time.Now()
		e.rdb.RPush(ctx, "dq", fmt.Sprintf(`{"id":"w%d"}`, i))
		observe.Eventually(t, fmt.Sprintf("task %d to be assigned", i), poll/2, func() bool { return len(e.assigned("e1")) == i+1 })
		if took := time.Since(start); took > poll/4 {
			t.Errorf("task %d assigned after %v: the leader waited for its poll (%v)", i, took, poll)
		}
	}
	if n := e.rdb.LLen(ctx, "dq").Val(); n != 0 {
		t.Errorf("%d tasks left in the shared list", n)
	}
}

// A task pushed to a tube's own list wakes an idle leader too, as one
// pushed to the shared list does: it is placed at once, not at the poll.
func TestIdleLeaderWakesOnAPushToATube(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.member("e1", 100, true, "", "gpu")
	const poll = 20 * time.Second
	d, _ := e.startWith("d", e.etcd, func(o *Options) { o.Poll = poll })
	observe.Eventually(t, "d to lead", 10*time.Second, func() bool { return d.Token() != 0 })
	for i := range 3 {
		time.Sleep(300 * time.Millisecond) // idle: its last pass found nothing
		start := time.Now()
		e.rdb.RPush(ctx, "dq:tube:gpu", fmt.Sprintf(`{"id":"g%d","tube":"gpu"}`, i))
		observe.Eventually(t, fmt.Sprintf("task %d to be assigned", i), poll/2, func() bool { return len(e.assigned("e1")) == i+1 })
		if took := time.Since(start); took > poll/4 {
			t.Errorf("task %d assigned after %v: the leader waited for its poll (%v)", i, took, poll)
		}
	}
}

// A leader that stops resigns (its lease revoked), so the other replica
// leads at once, not a lease later.
func TestStoppedLeaderResigns(t *testing.T) {
	e := newEnv(t)
	const ttl = 10 * time.Second
	long := func(o *Options) { o.TTL = ttl }
	a, stopA := e.startWith("a", e.etcd, long)
	observe.Eventually(t, "a to lead", 10*time.Second, func() bool { return a.Token() != 0 })
	b, _ := e.startWith("b", e.etcd, long)
	time.Sleep(300 * time.Millisecond)
	stopped := time.Now()
	stopA()
	observe.Eventually(t, "b to lead", 2*ttl, func() bool { return b.Token() != 0 })
	if took := time.Since(stopped); took > ttl/2 {
		t.Errorf("b led %v after a stopped: a did not resign (lease %v)", took, ttl)
	}
}

// A leader cut off from etcd still stops within a few seconds: it gives
// up resigning and revoking once its lease would have expired anyway.
func TestLeaderCutOffFromEtcdStopsPromptly(t *testing.T) {
	e := newEnv(t)
	proxy := etcdtest.NewProxy(t, e.etcd)
	a, stopA := e.start("a", proxy.Addr())
	observe.Eventually(t, "a to lead", 10*time.Second, func() bool { return a.Token() != 0 })
	proxy.Cut()
	start := time.Now()
	stopA()
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("stopping a leader cut off from etcd took %v", took)
	}
}
