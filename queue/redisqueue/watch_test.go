package redisqueue

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/redisserver"
)

// waitArmed waits until q's Take is waiting for a push (not polling).
func waitArmed(t *testing.T, q *Queue) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ch, _ := q.watch.quiet(); ch != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("Take never started waiting for a push")
		}
		time.Sleep(time.Millisecond)
	}
}

// takeLoop runs Take until ctx ends, sending what it takes.
func takeLoop(ctx context.Context, t *testing.T, q *Queue, got chan<- time.Time) {
	for ctx.Err() == nil {
		d, err := q.Take(ctx)
		if err != nil && ctx.Err() == nil {
			t.Error(err)
			return
		}
		if d != nil {
			got <- time.Now()
		}
	}
}

// commandCalls sums INFO commandstats calls, leaving out the commands the
// test itself sends to ask.
func commandCalls(t *testing.T, rdb *redis.Client) (int, map[string]int) {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	total, per := 0, map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		if name == "info" || name == "config|resetstat" {
			continue
		}
		n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
		total += n
		per[name] = n
	}
	return total, per
}

func idleCalls(t *testing.T, polling bool, idle time.Duration) (int, map[string]int) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	q := New(redis.NewClient(&redis.Options{Addr: srv.Addr()}), Options{Names: names, ExecutorID: fmt.Sprintf("idle-%d", os.Getpid())})
	t.Cleanup(func() { q.Close() })
	if polling {
		q.watch.base = nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan time.Time, 1)
	done := make(chan struct{})
	go func() { defer close(done); takeLoop(ctx, t, q, got) }()
	defer func() { cancel(); <-done }()
	if !polling {
		waitArmed(t, q)
	}
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(idle)
	return commandCalls(t, rdb)
}

// An idle executor must not poll: over the idle time it may look again
// once per RecheckInterval (a take and a length read) and ping its
// subscriber, nothing more. Polling sends about 60 takes a second.
func TestIdleTakeDoesNotPoll(t *testing.T) {
	idle := 2 * time.Second
	if s := os.Getenv("TASKJOB_IDLE_MEASURE"); s != "" {
		idle, _ = time.ParseDuration(s)
	}
	n, per := idleCalls(t, false, idle)
	t.Logf("waiting for a push: %d commands in %v idle (%.2f/s): %v", n, idle, float64(n)/idle.Seconds(), per)
	if limit := 4 * (int(idle/RecheckInterval) + 1); n > limit {
		t.Errorf("%d commands in %v idle, want at most %d: %v", n, idle, limit, per)
	}
	if os.Getenv("TASKJOB_IDLE_MEASURE") != "" {
		n, per := idleCalls(t, true, idle)
		t.Logf("polling: %d commands in %v idle (%.2f/s): %v", n, idle, float64(n)/idle.Seconds(), per)
	}
}

// A blocked Take wakes within about a round trip of an RPUSH.
func TestTakeWakesOnPush(t *testing.T) {
	for _, polling := range []bool{false, true} {
		srv := redisserver.Start(t)
		rdb := srv.Client(t)
		q := New(redis.NewClient(&redis.Options{Addr: srv.Addr()}), Options{Names: names, ExecutorID: fmt.Sprintf("wake-%d", os.Getpid())})
		if polling {
			q.watch.base = nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		got := make(chan time.Time, 1)
		done := make(chan struct{})
		go func() { defer close(done); takeLoop(ctx, t, q, got) }()
		var lat []time.Duration
		for i := range 100 {
			if polling {
				time.Sleep(time.Duration(i%20) * time.Millisecond)
			} else {
				waitArmed(t, q)
			}
			t0 := time.Now()
			rdb.RPush(ctx, names.Tasks, fmt.Sprintf(`{"id":"%d"}`, i))
			select {
			case t1 := <-got:
				lat = append(lat, t1.Sub(t0))
			case <-time.After(5 * time.Second):
				t.Fatalf("task %d not taken within 5 s", i)
			}
		}
		cancel()
		<-done
		q.Close()
		slices.Sort(lat)
		p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
		t.Logf("polling=%v: RPUSH → taken p50 %v p99 %v", polling, p50, p99)
		if !polling && p50 > 20*time.Millisecond {
			t.Errorf("RPUSH → taken p50 %v, want about a millisecond", p50)
		}
	}
}

// An oversized message wakes a waiting Take and is still never read whole.
func TestWaitingTakeRefusesOversized(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	q := New(redis.NewClient(&redis.Options{Addr: srv.Addr()}), Options{Names: names, ExecutorID: fmt.Sprintf("big-%d", os.Getpid()), MaxTaskBytes: 5000})
	defer q.Close()
	ctx := context.Background()
	go func() {
		waitArmed(t, q)
		rdb.RPush(ctx, names.Tasks, `{"id":"big","pad":"`+strings.Repeat("x", 20000)+`"}`)
	}()
	var d = takeWithin(t, q, 5*time.Second)
	if d.Size < 20000 || len(d.Raw) > task.PeekBytes {
		t.Fatalf("oversized delivery: size %d, %d bytes read", d.Size, len(d.Raw))
	}
}

func takeWithin(t *testing.T, q *Queue, limit time.Duration) *queue.Delivery {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		d, err := q.Take(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if d != nil {
			return d
		}
	}
	t.Fatalf("nothing taken within %v", limit)
	return nil
}

// When the watch connections are killed, or Redis restarts, Take falls
// back to polling (no task waits), then waits for pushes again.
func TestWatchSurvivesKilledConnectionsAndRestart(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	q := New(redis.NewClient(&redis.Options{Addr: srv.Addr()}), Options{Names: names, ExecutorID: fmt.Sprintf("kill-%d", os.Getpid())})
	q.watch.recheck = 300 * time.Millisecond
	defer q.Close()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan time.Time, 1)
	done := make(chan struct{})
	go func() { defer close(done); takeLoop(ctx, t, q, got) }()
	defer func() { cancel(); <-done }()
	push := func(what string, within time.Duration) {
		t.Helper()
		t0 := time.Now()
		rdb.RPush(ctx, names.Tasks, `{"id":"`+what+`"}`)
		select {
		case t1 := <-got:
			t.Logf("%s: taken after %v", what, t1.Sub(t0))
		case <-time.After(within):
			t.Fatalf("%s: not taken within %v", what, within)
		}
	}
	waitArmed(t, q)
	push("first", time.Second)

	// The subscriber dies: the session is rebuilt at once.
	waitArmed(t, q)
	if err := rdb.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	push("after the subscriber was killed", 2*time.Second)
	waitArmed(t, q)
	push("subscriber back", 100*time.Millisecond)

	// The tracking connection dies silently (the subscriber hears
	// nothing): the recheck finds it out.
	waitArmed(t, q)
	list, _ := rdb.ClientList(ctx).Result()
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, " flags=t ") {
			id := strings.TrimPrefix(strings.Fields(line)[0], "id=")
			if err := rdb.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
				t.Fatal(err)
			}
			killed++
		}
	}
	if killed != 1 {
		t.Fatalf("killed %d tracking connections, want 1:\n%s", killed, list)
	}
	push("after the tracking connection was killed", 3*time.Second)
	waitArmed(t, q)
	push("tracking back", 100*time.Millisecond)

	srv.Restart(t)
	push("after a Redis restart", 5*time.Second)
	waitArmed(t, q)
	push("after the restart, waiting again", 100*time.Millisecond)
}
