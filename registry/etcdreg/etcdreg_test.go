package etcdreg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/taskjob/task-job/registry"
	"github.com/taskjob/task-job/registry/etcdreg/etcdtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The embedded server and the gRPC client keep a few goroutines
		// beyond Close.
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/pkg/v3/schedule.(*fifo).run"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/etcdserver.(*EtcdServer).Start"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/pkg/v3/traceutil.(*Trace).Step"),
		goleak.IgnoreAnyFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/storage/backend.(*backend).run"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc.(*addrConn).resetTransportAndUnlock"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
	)
}

func newRegistry(t *testing.T, endpoint string, ttl time.Duration) *Registry {
	t.Helper()
	r, err := New(Options{Endpoints: []string{endpoint}, Prefix: "/tj-test/", TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func member(name string) registry.Member {
	return registry.Member{ID: fmt.Sprintf("%s-%d", name, os.Getpid()), Host: "h", Labels: map[string]string{"gpu": "a100"},
		Tubes: []string{"build", ""}, Slots: 4, Version: "test"}
}

func find(t *testing.T, r *Registry, id string) *registry.Member {
	t.Helper()
	ms, err := r.Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID == id {
			return &m
		}
	}
	return nil
}

func eventually(t *testing.T, what string, within time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// onEachEtcd runs f against the embedded etcd and against Debian's
// etcd-server (an older release than the client's), each in a subtest.
func onEachEtcd(t *testing.T, f func(t *testing.T, endpoint string)) {
	t.Run("embedded", func(t *testing.T) { f(t, etcdtest.Start(t).Endpoint()) })
	t.Run("etcd-server", func(t *testing.T) { f(t, etcdtest.StartProcess(t).Endpoint()) })
}

func TestRegisterListUpdateClose(t *testing.T) { onEachEtcd(t, testRegisterListUpdateClose) }

func testRegisterListUpdateClose(t *testing.T, endpoint string) {
	r := newRegistry(t, endpoint, time.Second)
	ctx := context.Background()
	m := member("a")
	g, err := r.Register(ctx, m, registry.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	got := find(t, r, m.ID)
	if got == nil || got.Incarnation == 0 || got.Incarnation != g.Incarnation() || got.Labels["gpu"] != "a100" ||
		got.Slots != 4 || strings.Join(got.Tubes, ",") != "build," || !strings.Contains(got.Holder, fmt.Sprint(os.Getpid())) {
		t.Fatalf("registered %+v (incarnation %d)", got, g.Incarnation())
	}
	g.SetRunning(3)
	eventually(t, "running count published", 2*time.Second, func() bool { m := find(t, r, m.ID); return m != nil && m.Running == 3 })
	if err := g.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if find(t, r, m.ID) != nil {
		t.Error("still registered after Close")
	}
}

func TestIdentityTaken(t *testing.T) {
	srv := etcdtest.Start(t)
	r := newRegistry(t, srv.Endpoint(), time.Second)
	ctx := context.Background()
	g, err := r.Register(ctx, member("dup"), registry.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close(ctx)
	other := member("dup")
	other.Holder = "host elsewhere pid 1"
	start := time.Now()
	_, err = r.Register(ctx, other, registry.Hooks{})
	if !errors.Is(err, registry.ErrIdentityTaken) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second Register = %v; want ErrIdentityTaken naming the holder", err)
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("gave up after %v; it waits two TTLs for a dead holder to expire", d)
	}
}

type events struct {
	mu  sync.Mutex
	log []string
	at  map[string]time.Time
	inc int64
}

func (e *events) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.log = append(e.log, s)
	if e.at == nil {
		e.at = map[string]time.Time{}
	}
	e.at[s] = time.Now()
}

func (e *events) has(s string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.at[s]
	return ok
}

// Cut off from etcd, an executor loses its lease: it stops taking work at
// once, stops its tasks after the grace, and registers again with a new
// incarnation once etcd is back. The rest of the fleet sees it go.
func TestPartitionedExecutorFencesItself(t *testing.T) {
	onEachEtcd(t, testPartitionedExecutorFencesItself)
}

func testPartitionedExecutorFencesItself(t *testing.T, endpoint string) {
	proxy := etcdtest.NewProxy(t, endpoint)
	ttl := time.Second
	cut := newRegistry(t, proxy.Addr(), ttl)
	observer := newRegistry(t, endpoint, ttl)
	ctx := context.Background()
	var ev events
	m := member("part")
	g, err := cut.Register(ctx, m, registry.Hooks{
		Lost:       func() { ev.add("lost") },
		Fence:      func() { ev.add("fence") },
		Registered: func(inc int64) { ev.add("registered"); ev.mu.Lock(); ev.inc = inc; ev.mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close(ctx)
	first := g.Incarnation()

	cutAt := time.Now()
	proxy.Cut()
	eventually(t, "the fleet sees the lease expire", 5*time.Second, func() bool { return find(t, observer, m.ID) == nil })
	eventually(t, "the executor notices it lost its lease", 5*time.Second, func() bool { return ev.has("lost") })
	eventually(t, "the executor fences its tasks", 5*time.Second, func() bool { return ev.has("fence") })
	ev.mu.Lock()
	lostAfter, graceTaken := ev.at["lost"].Sub(cutAt), ev.at["fence"].Sub(ev.at["lost"])
	ev.mu.Unlock()
	t.Logf("lost %v after the cut, fenced %v after that", lostAfter, graceTaken)
	if lostAfter > 3*ttl {
		t.Errorf("lost noticed %v after the cut; the lease is %v", lostAfter, ttl)
	}
	if graceTaken < ttl-50*time.Millisecond {
		t.Errorf("fenced %v after the loss; the grace is %v", graceTaken, ttl)
	}
	if ev.has("registered") {
		t.Fatal("registered again while still cut off")
	}

	proxy.Heal()
	eventually(t, "registered again", 10*time.Second, func() bool { return ev.has("registered") })
	again := find(t, observer, m.ID)
	if again == nil || again.Incarnation <= first || again.Incarnation != g.Incarnation() {
		t.Fatalf("after healing: %+v, incarnation %d (first %d)", again, g.Incarnation(), first)
	}
	ev.mu.Lock()
	if got := strings.Join(ev.log, ","); got != "lost,fence,registered" {
		t.Errorf("hooks called %s, want lost,fence,registered", got)
	}
	ev.mu.Unlock()
}

// A short cut-off (within the grace) still fences: the fleet may already
// have counted the executor dead. It comes back only after the fence.
func TestShortLossStillFencesBeforeTakingAgain(t *testing.T) {
	srv := etcdtest.Start(t)
	r := newRegistry(t, srv.Endpoint(), time.Second)
	ctx := context.Background()
	var ev events
	g, err := r.Register(ctx, member("short"), registry.Hooks{
		Lost: func() { ev.add("lost") }, Fence: func() { ev.add("fence") }, Registered: func(int64) { ev.add("registered") },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close(ctx)
	// The lease is revoked behind the executor's back (an operator, or
	// etcd having expired it).
	if _, err := r.Client().Revoke(ctx, g.session().Lease()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "registered again", 10*time.Second, func() bool { return ev.has("registered") })
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if got := strings.Join(ev.log, ","); got != "lost,fence,registered" {
		t.Errorf("hooks called %s, want lost,fence,registered", got)
	}
}

// etcd itself restarted (Debian's etcd-server, stopped for longer than the
// lease) while an executor is registered: the executor counts its lease
// lost and fences its tasks, and once etcd is back it is registered again,
// once, with a new incarnation, and its running count is published again.
func TestEtcdRestartedWhileRegistered(t *testing.T) {
	etcd := etcdtest.StartProcess(t)
	ttl := time.Second
	r := newRegistry(t, etcd.Endpoint(), ttl)
	ctx := context.Background()
	var ev events
	m := member("restart")
	g, err := r.Register(ctx, m, registry.Hooks{
		Lost: func() { ev.add("lost") }, Fence: func() { ev.add("fence") }, Registered: func(int64) { ev.add("registered") },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close(ctx)
	first := g.Incarnation()

	etcd.Stop()
	eventually(t, "the executor to count its lease lost while etcd is down", 10*time.Second, func() bool { return ev.has("lost") })
	eventually(t, "the executor to fence its tasks while etcd is down", 10*time.Second, func() bool { return ev.has("fence") })
	if ev.has("registered") {
		t.Fatal("registered again while etcd is down")
	}
	etcd.Start()
	eventually(t, "registered again once etcd is back", 30*time.Second, func() bool { return ev.has("registered") })
	g.SetRunning(2)
	eventually(t, "the registry to show the new incarnation and its running count", 10*time.Second, func() bool {
		got := find(t, r, m.ID)
		return got != nil && got.Incarnation == g.Incarnation() && got.Running == 2
	})
	if g.Incarnation() <= first {
		t.Errorf("incarnation %d after the restart, was %d", g.Incarnation(), first)
	}
	ms, err := r.Members(ctx)
	if err != nil || len(ms) != 1 {
		t.Errorf("members after the restart: %+v, %v", ms, err)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if got := strings.Join(ev.log, ","); got != "lost,fence,registered" {
		t.Errorf("hooks called %s, want lost,fence,registered", got)
	}
}
