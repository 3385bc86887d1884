package redisserver

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	s := StartSentinel(t)
	t.Logf("StartSentinel took %v", time.Since(begin))

	if got := len(s.SentinelAddrs()); got != 3 {
		t.Fatalf("%d sentinels, want 3", got)
	}
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    s.MasterName(),
		SentinelAddrs: s.SentinelAddrs(),
	})
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if err := c.RPush(ctx, "tasks", "before").Err(); err != nil {
		t.Fatal(err)
	}
	// Replication is asynchronous: wait for the replica to have the
	// write, so losing it in the failover would be a real bug.
	if n, err := c.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v; want 1 replica", n, err)
	}

	old := s.MasterAddr(t)
	begin = time.Now()
	addr := s.Failover(t)
	t.Logf("Failover took %v", time.Since(begin))
	if addr == old {
		t.Fatalf("Failover returned the old master %s", old)
	}
	if got := s.MasterAddr(t); got != addr {
		t.Fatalf("MasterAddr() = %s after Failover, want %s", got, addr)
	}

	if err := c.RPush(ctx, "tasks", "after").Err(); err != nil {
		t.Fatalf("write through the failover client after failover: %v", err)
	}
	got, err := c.LRange(ctx, "tasks", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "before" || got[1] != "after" {
		t.Fatalf("tasks = %q, want [before after]", got)
	}
}
