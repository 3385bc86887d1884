package history

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/test/redisserver"
)

// broker is the transport a history runs over, as the harness sees it: a
// client that pushes tasks and kills and reads the TaskLog messages, and
// the server, which faults stop and restart (with its data).
type broker interface {
	// name is the word the history's events use for the server
	// ("redis-stop", "broker-start", …).
	name() string
	// keys are an executor's config keys for this transport; addr is what
	// it dials (its proxy's address where the transport has proxies).
	keys(addr string) map[string]any
	// target is the server's address, which each executor reaches through
	// a TCP proxy of its own; "" if the transport cannot be proxied.
	target() string
	// waiting is the line an executor logs when it starts while the
	// server is down (and then waits for it).
	waiting() string
	submit(s taskSpec) error
	kill(id string) error
	// fetch returns the TaskLog messages published since its last call, in
	// their order; final reads to the end of what the server holds now.
	fetch(final bool) ([]logMsg, error)
	// stop stops the server (kill: without a chance to save anything, where
	// the server has that difference); restart brings it back with its data
	// at the same address.
	stop(kill bool)
	restart()
}

// logMsg is one raw TaskLog message and where it was published.
type logMsg struct {
	Part int // partition of the logs topic (Kafka); 0 on Redis
	Pos  int
	Raw  string
}

// redisBroker is a redis-server with persistence; tasks are RPUSHed to
// their lists, kills to the control list, and the logs list is read with
// LRANGE from the last position read.
type redisBroker struct {
	t    testing.TB
	srv  *redisserver.Server
	rdb  *redis.Client
	next int
}

func newRedisBroker(t testing.TB) *redisBroker {
	b := &redisBroker{t: t, srv: redisserver.Start(t, redisserver.Options{Persist: true})}
	b.rdb = redis.NewClient(&redis.Options{Addr: b.srv.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { b.rdb.Close() })
	return b
}

func (b *redisBroker) name() string    { return "redis" }
func (b *redisBroker) target() string  { return b.srv.Addr() }
func (b *redisBroker) waiting() string { return "Redis is not reachable" }

func (b *redisBroker) keys(addr string) map[string]any {
	return map[string]any{"redis_addr": addr, "queue_name": queueName}
}

func (b *redisBroker) submit(s taskSpec) error { return b.push(s.list(), s.taskJSON()) }

func (b *redisBroker) kill(id string) error { return b.push(ctrlList, killJSON(id)) }

func (b *redisBroker) push(list, raw string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return b.rdb.RPush(ctx, list, raw).Err()
}

func (b *redisBroker) fetch(bool) ([]logMsg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	raws, err := b.rdb.LRange(ctx, logsList, int64(b.next), -1).Result()
	if err != nil {
		return nil, err // Redis is down or slow: the list keeps everything
	}
	out := make([]logMsg, 0, len(raws))
	for _, raw := range raws {
		out = append(out, logMsg{Pos: b.next, Raw: raw})
		b.next++
	}
	return out, nil
}

func (b *redisBroker) stop(kill bool) {
	if kill {
		b.srv.Kill(b.t)
	} else {
		b.srv.Stop(b.t)
	}
}

func (b *redisBroker) restart() { b.srv.Restart(b.t) }
