package dispatch

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/registry/etcdreg/etcdtest"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/observe"
	"github.com/taskjob/task-job/test/redisserver"
)

// On a real 3-master Redis Cluster, with the deployment's names under one
// hash tag, the leader's fenced scripts (peek with the assigned counts,
// the window's moves, the waiting notes) run in the tag's slot: it assigns
// the shared list's tasks, sends a tubed one on to its tube's list, gives a
// lost member's tasks back, and a kill finds a task in an assigned list.
func TestDispatcherOnRedisCluster(t *testing.T) {
	c := redisserver.StartCluster(t)
	rdb := c.Client(t)
	ctx := context.Background()
	names := redisqueue.Names{Tasks: "{dq}", Control: "{dq}_control", Logs: "{dq}_logs"}
	q := redisqueue.New(redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()}), redisqueue.Options{Names: names})
	t.Cleanup(func() { q.Close() })
	e := &env{t: t, q: q, etcd: etcdtest.Start(t).Endpoint(), names: names}
	assigned := func(id string) []string { return rdb.LRange(ctx, q.AssignedKey(id), 0, -1).Val() }

	e.member("e1", 10, true)
	g2 := e.member("e2", 10, true)
	// A kill scans the assigned lists of the executors on Redis, where a
	// dispatched executor's Join puts it.
	if err := rdb.SAdd(ctx, q.ExecutorsKey(), "e1", "e2").Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		rdb.RPush(ctx, names.Tasks, fmt.Sprintf(`{"id":"u%d"}`, i))
	}
	rdb.RPush(ctx, names.Tasks, `{"id":"g1","tube":"gpu"}`) // nobody serves gpu
	d, _ := e.start("d", e.etcd)
	observe.Eventually(t, "the six untubed tasks assigned", 10*time.Second, func() bool {
		return len(assigned("e1"))+len(assigned("e2")) == 6
	})
	if d.Token() <= 0 {
		t.Errorf("leading with token %d", d.Token())
	}
	observe.Eventually(t, "the gpu task in its tube's list, with its reason", 10*time.Second, func() bool {
		return rdb.LLen(ctx, "{dq}:tube:gpu").Val() == 1 && rdb.HGet(ctx, q.StatusKey("g1"), "waiting").Val() != ""
	})
	if n := rdb.LLen(ctx, names.Tasks).Val(); n != 0 {
		t.Errorf("%d tasks left in the shared list", n)
	}

	// e2 lost: its tasks go back and end on e1.
	if err := g2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	observe.Eventually(t, "e2's tasks given back and placed on e1", 10*time.Second, func() bool {
		return len(assigned("e2")) == 0 && len(assigned("e1")) == 6
	})

	// A kill takes a task out of e1's assigned list, with its done.
	killer := redisqueue.New(redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()}), redisqueue.Options{Names: names, ExecutorID: "killer"})
	t.Cleanup(func() { killer.Close() })
	removed, err := killer.RemoveQueued(ctx, "u3", func(raw []byte) *queue.Finish {
		return &queue.Finish{ID: "u3", State: task.Killed, Done: []byte(`{"id":"u3","msg_type":"done"}`), Raw: raw}
	})
	if err != nil || !removed {
		t.Fatalf("RemoveQueued(u3) = %v, %v; want it taken out of e1's assigned list", removed, err)
	}
	if n := len(assigned("e1")); n != 5 {
		t.Errorf("e1 holds %d after the kill, want 5", n)
	}
	if st, _ := killer.Status(ctx, "u3"); st == nil || st.State != task.Killed {
		t.Errorf("status of u3 = %+v, want killed", st)
	}
}
