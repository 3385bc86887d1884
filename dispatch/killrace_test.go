package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/observe"
)

// Kills racing a live leader's moves: each task is pushed (to Q, or to Q
// with a tube, which the leader first sends on to its tube's list) and
// killed a moment later, while the leader moves it from Q to a tube list
// to an executor's assigned list. The kill (an executor's RemoveQueued,
// the finish script refusing when its LREM removed nothing, and then the
// later lists scanned) must find it wherever the leader put it: each task
// ends with exactly one `killed before it started` done and sits in no
// list, so it never runs, and no task is both moved and left with no
// done, or done twice.
func TestKillsRaceTheLeadersMoves(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	members := []string{"kr-a", "kr-b", "kr-c"}
	for _, m := range members {
		e.member(m, 1<<20, true, "", "t1")
		// The kill scans the assigned lists of the executors on Redis, as
		// a dispatched executor's Join puts it there.
		if err := e.rdb.SAdd(ctx, e.q.ExecutorsKey(), m).Err(); err != nil {
			t.Fatal(err)
		}
	}
	d, _ := e.start("kr", e.etcd)
	observe.Eventually(t, "the replica to lead", 10*time.Second, func() bool { return d.Token() != 0 })
	killer := redisqueue.New(redis.NewClient(&redis.Options{Addr: e.rdb.Options().Addr}), redisqueue.Options{Names: e.names, ExecutorID: "killer"})
	t.Cleanup(func() { killer.Close() })

	const tasks, workers = 1500, 6
	ids := make(chan int)
	var mu sync.Mutex
	var notRemoved []string
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			for i := range ids {
				id := fmt.Sprintf("kr%d", i)
				tube := ""
				if i%2 == 1 {
					tube = "t1" // pushed to Q: Q → Q:tube:t1 → assigned
				}
				raw, _ := json.Marshal(task.Task{ID: id, Type: "t", Tube: tube})
				if err := e.rdb.RPush(ctx, e.q.TubeKey(""), raw).Err(); err != nil {
					t.Error(err)
					return
				}
				// At once or up to 0.6 ms later: before, during and after
				// the leader's moves.
				if rng.Intn(2) == 0 {
					time.Sleep(time.Duration(rng.Intn(600)) * time.Microsecond)
				}
				removed, err := killer.RemoveQueued(ctx, id, func(raw []byte) *queue.Finish {
					done := task.Done(task.Ending{ID: id, Type: "t", Executor: "killer", Seq: 1, Time: time.Now(),
						Result: task.Result{Status: task.Killed, ExitCode: -1, Reason: task.KilledBeforeStart}})
					return &queue.Finish{ID: id, State: task.Killed, Done: done, Raw: raw}
				})
				if err != nil {
					t.Error(err)
					return
				}
				if !removed {
					mu.Lock()
					notRemoved = append(notRemoved, id)
					mu.Unlock()
				}
			}
		}()
	}
	for i := range tasks {
		ids <- i
	}
	close(ids)
	wg.Wait()

	dones := map[string]int{}
	for _, raw := range e.rdb.LRange(ctx, e.names.Logs, 0, -1).Val() {
		var l task.Log
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		if l.MsgType == task.MsgDone {
			dones[l.ID]++
			if l.Result == nil || l.Status != task.Killed || l.Reason != task.KilledBeforeStart {
				t.Errorf("%s: done %s (%s), want killed (%s)", l.ID, l.Status, l.Reason, task.KilledBeforeStart)
			}
		}
	}
	left := map[string]string{}
	lists := []string{e.q.TubeKey(""), e.q.TubeKey("t1")}
	for _, m := range members {
		lists = append(lists, e.q.AssignedKey(m))
	}
	for _, l := range lists {
		for _, raw := range e.rdb.LRange(ctx, l, 0, -1).Val() {
			id, _ := task.PeekID([]byte(raw))
			left[id] = l
		}
	}
	for i := range tasks {
		id := fmt.Sprintf("kr%d", i)
		if dones[id] != 1 {
			t.Errorf("%s: %d dones, want exactly one", id, dones[id])
		}
		if l, ok := left[id]; ok {
			t.Errorf("%s killed, yet still in %s: it would run", id, l)
		}
	}
	if len(notRemoved) > 0 {
		t.Errorf("%d kills found no task to remove (it was moved where the scan had passed): %v", len(notRemoved), notRemoved)
	}
	// The moves are what the kills raced: the leader must have moved a
	// good part of the tasks before their kill found them.
	if d.Moves() < tasks/10 {
		t.Errorf("the leader moved %d of %d tasks to an executor before their kill: the race was hardly run", d.Moves(), tasks)
	}
	t.Logf("%d tasks each killed once while the leader moved them; %d had reached an executor's assigned list first", tasks, d.Moves())
}
