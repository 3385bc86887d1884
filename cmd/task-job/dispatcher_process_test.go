//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/registry"
	"github.com/taskjob/task-job/registry/etcdreg"
	"github.com/taskjob/task-job/registry/etcdreg/etcdtest"
	"github.com/taskjob/task-job/test/observe"
	"github.com/taskjob/task-job/test/redisserver"
	"github.com/taskjob/task-job/test/tcpproxy"
)

// replicaPair is two `task-job dispatcher` processes on one registry and
// queue, in front of members that take nothing: every task the leaders
// assign stays in an assigned list, where the test counts it.
type replicaPair struct {
	t        *testing.T
	rdb      *redis.Client
	q        *redisqueue.Queue
	members  []string
	replicas [2]*mainProcess
	// links are the replicas' own ways to Redis.
	links [2]*tcpproxy.Proxy

	mu     sync.Mutex
	pushed []string
}

const leadingLine = "dispatcher: leading"

func startReplicaPair(t *testing.T, queueName string) *replicaPair {
	srv := redisserver.Start(t)
	etcd := etcdtest.Start(t)
	p := &replicaPair{t: t, rdb: srv.Client(t)}
	p.q = redisqueue.New(redis.NewClient(&redis.Options{Addr: srv.Addr()}),
		redisqueue.Options{Names: redisqueue.Names{Tasks: queueName, Control: queueName + "_control", Logs: queueName + "_logs"}})
	t.Cleanup(func() { p.q.Close() })
	reg, err := etcdreg.New(etcdreg.Options{Endpoints: []string{etcd.Endpoint()}, Prefix: "/task-job/" + queueName + "/", TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	for i := range 3 {
		id := fmt.Sprintf("%s-m%d-%d", queueName, i, os.Getpid())
		g, err := reg.Register(context.Background(), registry.Member{ID: id, Tubes: []string{""}, Slots: 1 << 20, Dispatched: true}, registry.Hooks{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close(context.Background()) })
		p.members = append(p.members, id)
	}
	for i := range p.replicas {
		link, err := tcpproxy.New(srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(link.Close)
		p.links[i] = link
		cfg, _ := json.Marshal(map[string]any{
			"redis_addr": link.Addr(), "queue_name": queueName, "cmd_dir": t.TempDir(),
			"registry": "etcd://" + etcd.Endpoint(), "registry_ttl": "2s",
		})
		path := filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(path, cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		p.replicas[i] = startMain(t, fmt.Sprintf("dispatcher %d", i), "dispatcher", "-config="+path)
	}
	return p
}

// leader waits for one replica to lead and returns its index.
func (p *replicaPair) leader() int {
	observe.Eventually(p.t, "a dispatcher replica to lead", 30*time.Second, func() bool {
		return strings.Contains(p.replicas[0].log.String(), leadingLine) || strings.Contains(p.replicas[1].log.String(), leadingLine)
	})
	leader := 0
	if !strings.Contains(p.replicas[0].log.String(), leadingLine) {
		leader = 1
	}
	time.Sleep(200 * time.Millisecond)
	if strings.Contains(p.replicas[1-leader].log.String(), leadingLine) {
		p.t.Fatal("both replicas lead")
	}
	return leader
}

// stream pushes tasks to the shared list in small batches until stop is
// closed (or the test ends) or n were pushed.
func (p *replicaPair) stream(n int, stop <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	ended := make(chan struct{})
	p.t.Cleanup(func() { close(ended); <-done })
	go func() {
		defer close(done)
		for i := 0; i < n; {
			select {
			case <-stop:
				return
			case <-ended:
				return
			case <-time.After(5 * time.Millisecond):
			}
			var batch []any
			var ids []string
			for range 10 {
				id := fmt.Sprintf("k%d", i)
				ids = append(ids, id)
				batch = append(batch, fmt.Sprintf(`{"id":%q,"type":"t"}`, id))
				i++
			}
			if err := p.rdb.RPush(context.Background(), p.q.TubeKey(""), batch...).Err(); err != nil {
				p.t.Errorf("push: %v", err)
				return
			}
			p.mu.Lock()
			p.pushed = append(p.pushed, ids...)
			p.mu.Unlock()
		}
	}()
	return done
}

func (p *replicaPair) assignedCount() int {
	n := 0
	for _, m := range p.members {
		n += int(p.rdb.LLen(context.Background(), p.q.AssignedKey(m)).Val())
	}
	return n
}

func (p *replicaPair) epoch() int64 {
	n, _ := strconv.ParseInt(p.rdb.Get(context.Background(), p.q.EpochKey()).Val(), 10, 64)
	return n
}

// checkOnce waits for the shared list to empty and then checks that each
// pushed task sits in exactly one member's assigned list, once.
func (p *replicaPair) checkOnce() {
	t := p.t
	ctx := context.Background()
	p.mu.Lock()
	pushed := append([]string(nil), p.pushed...)
	p.mu.Unlock()
	observe.Eventually(t, fmt.Sprintf("all %d tasks to be assigned", len(pushed)), 60*time.Second, func() bool {
		return p.rdb.LLen(ctx, p.q.TubeKey("")).Val() == 0 && p.assignedCount() >= len(pushed)
	})
	seen := map[string]int{}
	per := map[string]int{}
	for _, m := range p.members {
		for _, raw := range p.rdb.LRange(ctx, p.q.AssignedKey(m), 0, -1).Val() {
			var v struct{ ID string }
			if err := json.Unmarshal([]byte(raw), &v); err != nil {
				t.Errorf("assigned to %s: %q: %v", m, raw, err)
			}
			seen[v.ID]++
			per[m]++
		}
	}
	for _, id := range pushed {
		if seen[id] != 1 {
			t.Errorf("%s assigned %d times, want once", id, seen[id])
		}
		delete(seen, id)
	}
	for id, n := range seen {
		t.Errorf("%s (%d times) was assigned but never pushed", id, n)
	}
	t.Logf("%d tasks, each assigned once: %v", len(pushed), per)
}

// A leader SIGKILLed while it assigns a stream of tasks: the other
// replica takes over once its lease expires, and every task is assigned
// exactly once, none lost (the kill lands between or inside the atomic
// moves, never halfway through one).
func TestDispatcherLeaderKilledMidAssignment(t *testing.T) {
	p := startReplicaPair(t, "kq")
	i := p.leader()
	leader, survivor := p.replicas[i], p.replicas[1-i]
	first := p.epoch()
	done := p.stream(4000, nil)
	observe.Eventually(t, "the leader to assign a first part of the stream", 30*time.Second, func() bool { return p.assignedCount() >= 500 })
	if err := leader.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := p.assignedCount()
	observe.Eventually(t, "the other replica to lead", 30*time.Second, func() bool { return strings.Contains(survivor.log.String(), leadingLine) })
	<-done
	p.checkOnce()
	if e := p.epoch(); e <= first {
		t.Errorf("epoch %d after the takeover, was %d: the new leader did not fence the old", e, first)
	}
	t.Logf("killed after %d assignments; epoch %d → %d", killedAt, first, p.epoch())
}

// movesMark is in every move a leader asks of Redis (redisqueue's
// moveMark, one of the move script's arguments) and in nothing else.
var movesMark = []byte("task-job: being moved")

func (p *replicaPair) refused() int64 {
	n, _ := strconv.ParseInt(p.rdb.Get(context.Background(), p.q.RefusedKey()).Val(), 10, 64)
	return n
}

// A leader SIGSTOPped past its lease while it assigns a stream, with one
// of its moves on the way to Redis (held in its link, as a slow network
// would): the other replica leads with a larger token; the held move
// arrives once the paused leader is resumed, and the epoch check refuses
// it (counted in Q:dispatch:refused). The resumed replica steps down and
// does not lead again, and every task is assigned exactly once.
func TestDispatcherLeaderPausedPastItsLeaseIsFenced(t *testing.T) {
	p := startReplicaPair(t, "sq")
	i := p.leader()
	paused, successor, link := p.replicas[i], p.replicas[1-i], p.links[i]
	stop := make(chan struct{})
	done := p.stream(1<<30, stop)
	observe.Eventually(t, "the leader to assign a first part of the stream", 30*time.Second, func() bool { return p.assignedCount() >= 300 })
	first := p.epoch()
	link.HoldAt(func(chunk []byte) bool { return bytes.Contains(chunk, movesMark) })
	observe.Eventually(t, "one of the leader's moves to be held on its way", 30*time.Second, link.Holding)
	if err := paused.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Before startMain's cleanup, which a stopped process would ignore.
	t.Cleanup(func() { _ = paused.cmd.Process.Signal(syscall.SIGCONT) })
	observe.Eventually(t, "the other replica to lead", 30*time.Second, func() bool { return strings.Contains(successor.log.String(), leadingLine) })
	if e := p.epoch(); e <= first {
		t.Fatalf("the successor leads but the epoch is %d, was %d", e, first)
	}
	// The successor assigns while the old leader sleeps.
	at := p.assignedCount()
	observe.Eventually(t, "the successor to assign", 30*time.Second, func() bool { return p.assignedCount() >= at+100 })
	if n := p.refused(); n != 0 {
		t.Fatalf("%d writes refused before the paused leader woke", n)
	}
	if err := paused.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	link.Heal()
	observe.Eventually(t, "the resumed leader's late move to be refused by the epoch check", 30*time.Second, func() bool { return p.refused() >= 1 })
	observe.Eventually(t, "the resumed replica to step down", 30*time.Second, func() bool {
		return strings.Contains(paused.log.String(), "no longer leading")
	})
	time.Sleep(500 * time.Millisecond)
	close(stop)
	<-done
	p.checkOnce()
	if n := strings.Count(paused.log.String(), leadingLine); n != 1 {
		t.Errorf("the paused replica led %d times, want once (the successor still leads)", n)
	}
	t.Logf("epoch %d → %d; %d late writes refused", first, p.epoch(), p.refused())
}
