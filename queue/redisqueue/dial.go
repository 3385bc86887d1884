package redisqueue

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DialOptions say how to reach Redis.
type DialOptions struct {
	// Addr is "host:port", a "redis://" or "rediss://" URL, or
	// "sentinel://MASTER@host:port,host:port" for a Sentinel setup, or
	// "cluster://host:port,host:port" (seed nodes) for Redis Cluster.
	Addr     string
	Password string
	DB       int
	// PoolSize should cover the blocking pops (three per executor) plus the
	// concurrent claims and the publisher.
	PoolSize int
}

// Dial builds a client for opts. It does not wait for Redis to answer: an
// executor starts (and keeps running tasks) while Redis is down.
func Dial(opts DialOptions) (redis.UniversalClient, error) {
	const dialTimeout = 2 * time.Second
	switch {
	case strings.HasPrefix(opts.Addr, "sentinel://"):
		rest := strings.TrimPrefix(opts.Addr, "sentinel://")
		master, addrs, ok := strings.Cut(rest, "@")
		if !ok || master == "" || addrs == "" {
			return nil, fmt.Errorf("queue: redis_addr %q: want sentinel://MASTER@host:port[,host:port...]", opts.Addr)
		}
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:    master,
			SentinelAddrs: strings.Split(addrs, ","),
			Password:      opts.Password,
			DB:            opts.DB,
			PoolSize:      opts.PoolSize,
			DialTimeout:   dialTimeout,
		}), nil
	case strings.HasPrefix(opts.Addr, "cluster://"):
		addrs := strings.TrimPrefix(opts.Addr, "cluster://")
		if addrs == "" || opts.DB != 0 {
			return nil, fmt.Errorf("queue: redis_addr %q: want cluster://host:port[,host:port...] and database 0", opts.Addr)
		}
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:       strings.Split(addrs, ","),
			Password:    opts.Password,
			PoolSize:    opts.PoolSize,
			DialTimeout: dialTimeout,
		}), nil
	case strings.Contains(opts.Addr, "://"):
		o, err := redis.ParseURL(opts.Addr)
		if err != nil {
			return nil, fmt.Errorf("queue: redis_addr: %w", err)
		}
		if opts.Password != "" {
			o.Password = opts.Password
		}
		if opts.DB != 0 {
			o.DB = opts.DB
		}
		o.PoolSize, o.DialTimeout = opts.PoolSize, dialTimeout
		return redis.NewClient(o), nil
	default:
		return redis.NewClient(&redis.Options{
			Addr: opts.Addr, Password: opts.Password, DB: opts.DB,
			PoolSize: opts.PoolSize, DialTimeout: dialTimeout,
		}), nil
	}
}

// Ping checks that Redis answers, for start-up messages and the CLI.
func Ping(ctx context.Context, rdb redis.UniversalClient) error {
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("queue: redis does not answer: %w", err)
	}
	return nil
}
