package redisserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// masterName is the name the sentinels monitor the master under.
	masterName = "mymaster"
	// quorum is how many of the three sentinels must agree the master is
	// down; two keeps one slow sentinel from blocking a failover.
	quorum = 2
	// downAfter and failoverTimeout are far below the production defaults
	// (30 s and 3 min) so a failover test finishes in seconds.
	downAfter       = 1000 * time.Millisecond
	failoverTimeout = 3000 * time.Millisecond
	// setupTimeout bounds replica sync and sentinel discovery in
	// StartSentinel; sentinels greet each other every 2 s.
	setupTimeout = 15 * time.Second
	// failoverDeadline bounds Failover from the kill to a usable master.
	failoverDeadline = 30 * time.Second
)

// sentinelTimers are SENTINEL DEBUG settings (Redis ≥ 7.0) for tests.
// A sentinel whose timer is late by more than tilt-trigger (default 2 s)
// assumes the clock jumped and enters TILT, refusing to act for
// tilt-period (default 30 s); a loaded CI machine stalls that long, and a
// failover test then times out. Test machines stall but their clocks do not
// jump, so TILT is made hard to enter and short. Hello messages every
// 500 ms instead of 2 s let the sentinels find each other four times
// sooner, and INFO every second finds role changes sooner.
var sentinelTimers = []any{
	"tilt-trigger", 10000,
	"tilt-period", 3000,
	"publish-period", 500,
	"info-period", 1000,
}

// Sentinel is a monitored master with one replica and three sentinels, for
// testing how clients ride through a failover.
type Sentinel struct {
	data      []*Server // master and replica, in start order
	sentinels []*Server
	clients   []*redis.SentinelClient // one per sentinel, same order
}

// StartSentinel starts a master, one replica of it, and three
// redis-sentinel processes monitoring it as "mymaster" (quorum 2,
// down-after-milliseconds 1000, failover-timeout 3000), all on free
// loopback ports. It returns once the replica is in sync and every
// sentinel knows the replica and the two other sentinels, so that a
// failover can start right away. Everything is stopped at t's cleanup.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	sentinelBin := lookBinary(t, "redis-sentinel")
	// Diskless sync without the default 5 s batching delay brings the
	// replica in sync almost at once.
	fastSync := []string{"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}
	master := Start(t, Options{Args: fastSync})
	replica := Start(t, Options{Args: append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(master.Port())}, fastSync...)})
	s := &Sentinel{data: []*Server{master, replica}}

	ctx := context.Background()
	rc := replica.Client(t)
	err := poll(ctx, setupTimeout, func(ctx context.Context) error {
		info, err := rc.Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("INFO replication on replica: %w", err)
		}
		if !strings.Contains(info, "master_link_status:up") {
			return errors.New("replica link to master is not up")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("redisserver: replica %s did not sync with master %s: %v", replica.Addr(), master.Addr(), err)
	}

	for range 3 {
		dir := t.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		cfg := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d\n"+
			"sentinel down-after-milliseconds %s %d\n"+
			"sentinel failover-timeout %s %d\n",
			masterName, master.Port(), quorum,
			masterName, downAfter.Milliseconds(),
			masterName, failoverTimeout.Milliseconds())
		// Sentinels rewrite their config file with what they learn, so
		// each needs its own writable copy.
		if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
			t.Fatalf("redisserver: write sentinel config: %v", err)
		}
		logFile := filepath.Join(dir, "sentinel.log")
		args := []string{conf,
			"--bind", "127.0.0.1",
			"--protected-mode", "no",
			"--dir", dir,
			"--logfile", logFile,
		}
		sen := startServer(t, sentinelBin, dir, logFile, args)
		c := redis.NewSentinelClient(&redis.Options{Addr: sen.Addr()})
		t.Cleanup(func() { _ = c.Close() })
		if err := c.Process(ctx, redis.NewStatusCmd(ctx, append([]any{"SENTINEL", "DEBUG"}, sentinelTimers...)...)); err != nil {
			t.Fatalf("redisserver: tune sentinel %s timers: %v", sen.Addr(), err)
		}
		s.sentinels = append(s.sentinels, sen)
		s.clients = append(s.clients, c)
	}

	for i, c := range s.clients {
		err := poll(ctx, setupTimeout, func(ctx context.Context) error {
			m, err := c.Master(ctx, masterName).Result()
			if err != nil {
				return fmt.Errorf("SENTINEL MASTER: %w", err)
			}
			if m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" {
				return fmt.Errorf("sentinel knows %s replicas and %s other sentinels, want 1 and 2",
					m["num-slaves"], m["num-other-sentinels"])
			}
			return nil
		})
		if err != nil {
			t.Fatalf("redisserver: sentinel %s not ready: %v\n--- sentinel log ---\n%s",
				s.sentinels[i].Addr(), err, s.sentinels[i].logsSince(0))
		}
	}
	return s
}

// MasterName returns the name the sentinels monitor the master under, for
// redis.FailoverOptions.MasterName.
func (s *Sentinel) MasterName() string { return masterName }

// SentinelAddrs returns the sentinels' addresses, for
// redis.FailoverOptions.SentinelAddrs.
func (s *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(s.sentinels))
	for i, sen := range s.sentinels {
		addrs[i] = sen.Addr()
	}
	return addrs
}

// MasterAddr returns the master's address as the first sentinel that
// answers reports it, which is what a failover-aware client would use.
func (s *Sentinel) MasterAddr(t testing.TB) string {
	t.Helper()
	addr, err := s.masterAddr(context.Background())
	if err != nil {
		t.Fatalf("redisserver: %v", err)
	}
	return addr
}

func (s *Sentinel) masterAddr(ctx context.Context) (string, error) {
	var errs []error
	for i, c := range s.clients {
		hp, err := c.GetMasterAddrByName(ctx, masterName).Result()
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("sentinel %s: %w", s.sentinels[i].Addr(), err))
		case len(hp) != 2:
			errs = append(errs, fmt.Errorf("sentinel %s: master address %q is not host and port", s.sentinels[i].Addr(), hp))
		default:
			return net.JoinHostPort(hp[0], hp[1]), nil
		}
	}
	return "", fmt.Errorf("no sentinel reports a master for %q: %w", masterName, errors.Join(errs...))
}

// Failover kills the current master with SIGKILL and waits (at most 30 s)
// until the sentinels report a new master that answers PING and reports
// role master, then returns its address. The killed master stays down, so
// the setup has no replica left and a second Failover fails the test.
func (s *Sentinel) Failover(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	old := s.MasterAddr(t)
	var victim *Server
	candidates := 0
	for _, d := range s.data {
		switch {
		case d.Addr() == old:
			victim = d
		case d.Running():
			candidates++
		}
	}
	if victim == nil {
		t.Fatalf("redisserver: sentinels report master %s, which is not one of this setup's servers", old)
	}
	if candidates == 0 {
		t.Fatalf("redisserver: no running replica of %s left to promote", old)
	}
	victim.Kill(t)

	var addr string
	err := poll(ctx, failoverDeadline, func(ctx context.Context) error {
		a, err := s.masterAddr(ctx)
		if err != nil {
			return err
		}
		if a == old {
			return fmt.Errorf("sentinels still report the killed master %s", old)
		}
		if err := ping(a); err != nil {
			return fmt.Errorf("new master %s: %w", a, err)
		}
		if err := checkRoleMaster(ctx, a); err != nil {
			return err
		}
		addr = a
		return nil
	})
	if err != nil {
		var logs strings.Builder
		for _, sen := range s.sentinels {
			fmt.Fprintf(&logs, "--- sentinel %s log ---\n%s", sen.Addr(), sen.logsSince(0))
		}
		t.Fatalf("redisserver: failover from %s: %v\n%s", old, err, logs.String())
	}
	return addr
}

// checkRoleMaster asks the server at addr for its ROLE: a promoted replica
// answers PING before it has finished becoming master.
func checkRoleMaster(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	role, err := c.Do(ctx, "ROLE").Slice()
	if err != nil {
		return fmt.Errorf("ROLE on %s: %w", addr, err)
	}
	if len(role) == 0 || role[0] != "master" {
		return fmt.Errorf("%s reports role %v, want master", addr, role)
	}
	return nil
}
