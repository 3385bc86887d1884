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
		return &contractEnv{srv: srv, rdb: srv.Client(t), cfg: cfg}
	})
}

type contractEnv struct {
	srv *redisserver.Server
	rdb *redis.Client
	cfg queuetest.Config
}

func (e *contractEnv) Broker(t *testing.T, executor string) queue.Broker {
	q := New(redis.NewClient(&redis.Options{Addr: e.srv.Addr()}), Options{Names: names, ExecutorID: executor,
		Retention: e.cfg.Retention, TTL: e.cfg.TTL, MaxTaskBytes: e.cfg.MaxTaskBytes})
	t.Cleanup(func() { q.Close() })
	return q
}

func (e *contractEnv) Submit(t *testing.T, raw []byte) {
	t.Helper()
	if err := e.rdb.RPush(context.Background(), names.Tasks, raw).Err(); err != nil {
		t.Fatal(err)
	}
}

func (e *contractEnv) SubmitControl(t *testing.T, raw []byte) {
	t.Helper()
	if err := e.rdb.RPush(context.Background(), names.Control, raw).Err(); err != nil {
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

func (e *contractEnv) Published(t *testing.T) [][]byte { return e.list(t, names.Logs) }
func (e *contractEnv) Queued(t *testing.T) [][]byte    { return e.list(t, names.Tasks) }

func (e *contractEnv) Expire(t *testing.T, executor string) {
	t.Helper()
	if err := e.rdb.Del(context.Background(), "q:executor:"+executor).Err(); err != nil {
		t.Fatal(err)
	}
}
