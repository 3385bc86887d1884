package redisqueue

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/queue/queuetest"
	"github.com/taskjob/task-job/test/redisserver"
)

// TestContract runs the broker contract against a real redis-server.
func TestContract(t *testing.T) {
	queuetest.Run(t, func(t *testing.T, cfg queuetest.Config) queuetest.Env {
		srv := redisserver.Start(t)
		return &contractEnv{rdb: srv.Client(t), names: names, cfg: cfg,
			dial: func() redis.UniversalClient { return redis.NewClient(&redis.Options{Addr: srv.Addr()}) }}
	})
}

// clusterNames are names as a Cluster deployment writes them: one hash
// tag, so that every key is in one slot.
var clusterNames = Names{Tasks: "{q}", Control: "{q}_control", Logs: "{q}_logs"}

// TestContractOnCluster runs the broker contract against a real Redis
// Cluster of three masters.
func TestContractOnCluster(t *testing.T) {
	queuetest.Run(t, func(t *testing.T, cfg queuetest.Config) queuetest.Env {
		c := redisserver.StartCluster(t)
		return &contractEnv{rdb: c.Client(t), names: clusterNames, cfg: cfg,
			dial: func() redis.UniversalClient { return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()}) }}
	})
}

type contractEnv struct {
	rdb   redis.UniversalClient
	dial  func() redis.UniversalClient
	names Names
	cfg   queuetest.Config
}

func (e *contractEnv) Broker(t *testing.T, executor string) queue.Broker {
	q := New(e.dial(), Options{Names: e.names, ExecutorID: executor,
		Retention: e.cfg.Retention, TTL: e.cfg.TTL, MaxTaskBytes: e.cfg.MaxTaskBytes})
	t.Cleanup(func() { q.Close() })
	return q
}

func (e *contractEnv) Submit(t *testing.T, raw []byte) {
	t.Helper()
	if err := e.rdb.RPush(context.Background(), e.names.Tasks, raw).Err(); err != nil {
		t.Fatal(err)
	}
}

func (e *contractEnv) SubmitControl(t *testing.T, raw []byte) {
	t.Helper()
	if err := e.rdb.RPush(context.Background(), e.names.Control, raw).Err(); err != nil {
		t.Fatal(err)
	}
}

func (e *contractEnv) list(t *testing.T, key string) [][]byte {
	t.Helper()
	items, err := e.rdb.LRange(context.Background(), key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, len(items))
	for i, it := range items {
		out[i] = []byte(it)
	}
	return out
}

func (e *contractEnv) Published(t *testing.T) [][]byte { return e.list(t, e.names.Logs) }
func (e *contractEnv) Queued(t *testing.T) [][]byte    { return e.list(t, e.names.Tasks) }

func (e *contractEnv) Expire(t *testing.T, executor string) {
	t.Helper()
	if err := e.rdb.Del(context.Background(), e.names.Tasks+":executor:"+executor).Err(); err != nil {
		t.Fatal(err)
	}
}
