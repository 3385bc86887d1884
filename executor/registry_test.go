package executor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/jail"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/task"
)

// The registry hooks: paused, the executor takes nothing; stopped as lost,
// its tasks end lost with a done each; resumed, it takes again.
func TestRegistryHooksPauseAndStopAsLost(t *testing.T) {
	c := newCluster(t)
	c.script("long.sh", "exec sleep 30")
	c.script("quick.sh", "exit 0")
	j, err := jail.New(jail.Options{Dir: c.dir})
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("reg-%d", os.Getpid())
	q := redisqueue.New(redis.NewClient(&redis.Options{Addr: c.redis.Addr()}),
		redisqueue.Options{Names: names, ExecutorID: id, Retention: time.Hour, TTL: time.Second})
	ex, err := New(Options{
		ExecutorID: id, Concurrency: 2, KillGrace: time.Second, ShutdownGrace: 5 * time.Second,
		TTL: time.Second, SpoolDir: filepath.Join(t.TempDir(), "spool"), Env: []string{"PATH=/usr/bin:/bin"},
		Jail: j, Runner: c.runner, Broker: q,
		Logger: hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Warn, Output: testWriter{t}}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = ex.Run(ctx); q.Close() }()
	defer func() { cancel(); <-done }()

	c.submit("long", "long.sh", nil, 0)
	for deadline := time.Now().Add(10 * time.Second); ex.Running() != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("long did not start within 10 s")
		}
	}
	ex.PauseTaking()
	time.Sleep(1200 * time.Millisecond) // a Take in flight returns within a second
	c.submit("later", "quick.sh", nil, 0)
	time.Sleep(time.Second)
	if n := c.rdb.LLen(context.Background(), names.Tasks).Val(); n != 1 {
		t.Fatalf("paused, the executor took a task: %d left queued", n)
	}
	if n := ex.StopAllLost(); n != 1 {
		t.Fatalf("StopAllLost stopped %d tasks, want 1", n)
	}
	d := c.done("long", 10*time.Second)
	if d.Status != task.Lost || !strings.Contains(d.Reason, "registry lease") {
		t.Errorf("stopped task's done: %+v", d)
	}
	ex.ResumeTaking()
	if d := c.done("later", 10*time.Second); d.Status != task.Succeeded {
		t.Errorf("after resuming: %+v", d)
	}
}
