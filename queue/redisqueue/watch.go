package redisqueue

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Waiting for a task without polling.
//
// The take must check a message's length in Redis before moving it (see
// takeScript), and no blocking pop can do that, so Take cannot simply
// block in BLMOVE. Instead it waits for Redis to say that a task list it
// found empty has changed, with client-side caching's invalidation
// messages, which every Redis ≥ 6 sends without any server configuration
// (unlike keyspace notifications) and which plain RPUSH producers trigger:
//
//   - a subscriber connection S listens on __redis__:invalidate;
//   - a tracking connection T has CLIENT TRACKING ON REDIRECT <S's id>, in
//     the default (not BCAST) mode, so Redis remembers exactly the keys T
//     has read and tells S once when one of them is next written;
//   - Take, finding the lists empty, reads their lengths on T (LLEN, which
//     never reads an element): that read and the start of tracking are one
//     step in Redis, so a push right after it cannot be missed. Then it
//     waits for S to hear of a change, and takes again at once.
//
// An idle executor thus sends nothing while it waits, and wakes within a
// round trip of an RPUSH. Anything uncertain falls back to the short poll
// of before and rebuilds both connections: S or T failing, S answering no
// PING, a reconnect on either (a new connection has no tracking), a
// transport other than a single Redis client (Cluster). Every
// RecheckInterval an idle Take looks again anyway, which bounds how long a
// silently dead tracking connection (whose loss S would not see) or a
// Sentinel failover (T still on the old master) could delay a task.

// RecheckInterval is how long an idle Take trusts the tracking connection
// before it looks at the task lists again, and how long the subscriber may
// be silent before it is pinged.
const RecheckInterval = 5 * time.Second

const invalidateChannel = "__redis__:invalidate"

type armResult int

const (
	armDown     armResult = iota // no watch: poll
	armNotEmpty                  // a list has tasks: take at once
	armed                        // empty and tracked: wait for a change
)

type watcher struct {
	base    *redis.Options // the client's, copied at New; nil: no watch possible (polling only)
	recheck time.Duration  // RecheckInterval (shorter in tests)
	// conns counts connections the watch client opened; lastID is the
	// CLIENT ID of the newest. A connection opened after set-up is a
	// reconnect, without tracking.
	conns  atomic.Int64
	lastID atomic.Int64

	startOnce sync.Once
	cancel    context.CancelFunc
	done      chan struct{}

	armMu sync.Mutex // serializes use of the tracking connection

	mu       sync.Mutex
	up       bool
	tc       *redis.Conn
	ps       *redis.PubSub
	setupN   int64         // conns when the session came up
	gen      chan struct{} // closed and replaced on every change and failure
	armedGen chan struct{} // gen the lists were last seen empty under
	armedAt  time.Time

	// wakes counts invalidations heard (for tests).
	wakes atomic.Int64
}

func newWatcher(rdb redis.UniversalClient) *watcher {
	w := &watcher{gen: make(chan struct{}), done: make(chan struct{}), recheck: RecheckInterval}
	if c, ok := rdb.(*redis.Client); ok {
		opt := *c.Options()
		// The client writes to its maintenance-notification settings
		// while it connects; the watch has its own, off.
		opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
		opt.ClientSideCacheConfig = nil
		w.base = &opt
	}
	return w
}

// ensure starts the watch on first use, so that a Queue that never takes
// (the CLI, the API) opens no extra connections.
func (w *watcher) ensure(log func(msg string, args ...any)) {
	w.startOnce.Do(func() {
		if w.base == nil {
			close(w.done)
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		w.cancel = cancel
		go w.run(ctx, log)
	})
}

func (w *watcher) close() {
	w.startOnce.Do(func() { close(w.done) })
	if w.cancel != nil {
		w.cancel()
		// A receive does not watch its context: closing the subscriber
		// ends it.
		w.mu.Lock()
		if w.ps != nil {
			_ = w.ps.Close()
		}
		w.mu.Unlock()
	}
	<-w.done
}

func (w *watcher) run(ctx context.Context, log func(msg string, args ...any)) {
	defer close(w.done)
	wait := 100 * time.Millisecond
	failing := false
	for {
		err := w.session(ctx, func() {
			if failing {
				log("waiting for tasks without polling again")
			}
			failing, wait = false, 100*time.Millisecond
		})
		w.setDown()
		if ctx.Err() != nil {
			return
		}
		if !failing {
			log("cannot watch the task lists for pushes; taking by short polls meanwhile", "error", err)
			failing = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, w.recheck)
	}
}

// session sets up the subscriber and the tracking connection, then relays
// invalidations until something fails.
func (w *watcher) session(ctx context.Context, upNow func()) error {
	opt := *w.base
	prev := opt.OnConnect
	opt.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		if prev != nil {
			if err := prev(ctx, cn); err != nil {
				return err
			}
		}
		id, err := cn.ClientID(ctx).Result()
		if err != nil {
			return err
		}
		w.lastID.Store(id)
		w.conns.Add(1)
		return nil
	}
	// RESP2: a RESP3 redirect target would get invalidations as push
	// messages, which the subscriber does not read.
	opt.Protocol = 2
	opt.PoolSize, opt.MinIdleConns, opt.MaxIdleConns = 1, 0, 1
	wc := redis.NewClient(&opt)
	defer wc.Close()

	ps := wc.Subscribe(ctx, invalidateChannel)
	defer ps.Close()
	w.mu.Lock()
	w.ps = ps // for close, which must end a blocked receive
	w.mu.Unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	msg, err := ps.ReceiveTimeout(ctx, w.recheck)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", invalidateChannel, err)
	}
	if _, ok := msg.(*redis.Subscription); !ok {
		return fmt.Errorf("subscribe to %s: unexpected reply %T", invalidateChannel, msg)
	}
	subID := w.lastID.Load()
	tc := wc.Conn()
	defer func() {
		// Down first, so that no new arm starts on tc, then wait for one
		// in progress before closing it.
		w.setDown()
		w.armMu.Lock()
		_ = tc.Close()
		w.armMu.Unlock()
	}()
	if err := tc.Do(ctx, "CLIENT", "TRACKING", "ON", "REDIRECT", subID).Err(); err != nil {
		return fmt.Errorf("turn on tracking: %w", err)
	}

	w.mu.Lock()
	w.up, w.tc, w.ps, w.setupN = true, tc, ps, w.conns.Load()
	w.bumpLocked()
	w.mu.Unlock()
	upNow()

	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, w.recheck)
		var ne net.Error
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &ne) && ne.Timeout():
			if pinged {
				return errors.New("the subscriber did not answer a PING")
			}
			if err := ps.Ping(ctx); err != nil {
				return fmt.Errorf("ping the subscriber: %w", err)
			}
			pinged = true
			continue
		default:
			return fmt.Errorf("subscriber: %w", err)
		}
		pinged = false
		switch msg.(type) {
		case *redis.Message:
			w.wakes.Add(1)
			w.mu.Lock()
			w.bumpLocked()
			w.mu.Unlock()
		case *redis.Pong:
		default:
			// A new subscription means the subscriber reconnected: it has a
			// new id, and the tracking connection still redirects to the old.
			return fmt.Errorf("subscriber: unexpected %T (reconnected)", msg)
		}
		if w.conns.Load() != w.setupN {
			return errors.New("a watch connection reconnected")
		}
	}
}

// bumpLocked wakes every waiter. w.mu must be held.
func (w *watcher) bumpLocked() {
	close(w.gen)
	w.gen = make(chan struct{})
	w.armedGen = nil
}

func (w *watcher) setDown() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.up, w.tc, w.ps = false, nil, nil
	w.bumpLocked()
}

// quiet returns, while the lists were last seen empty less than
// RecheckInterval ago and nothing changed since, a channel closed on the
// next change, and when to look again regardless. Otherwise nil.
func (w *watcher) quiet() (<-chan struct{}, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.up || w.armedGen == nil || w.armedGen != w.gen {
		return nil, time.Time{}
	}
	until := w.armedAt.Add(w.recheck)
	if !time.Now().Before(until) {
		return nil, time.Time{}
	}
	return w.gen, until
}

// arm reads the lengths of keys on the tracking connection, which makes
// Redis report their next change.
func (w *watcher) arm(ctx context.Context, keys []string) armResult {
	w.mu.Lock()
	up, tc, ps, gen := w.up, w.tc, w.ps, w.gen
	w.mu.Unlock()
	if !up {
		return armDown
	}
	w.armMu.Lock()
	defer w.armMu.Unlock()
	// Never let the caller's cancellation cut a command short: the
	// connection would be replaced by one without tracking.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	cmds, err := tc.Pipelined(cctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.LLen(cctx, k)
		}
		return nil
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.tc != tc || !w.up {
		return armDown
	}
	if err != nil || w.conns.Load() != w.setupN {
		// Make the session start over (closing the subscriber ends its
		// loop); until then Take polls.
		w.up = false
		w.bumpLocked()
		_ = ps.Close()
		return armDown
	}
	for _, c := range cmds {
		if n, _ := c.(*redis.IntCmd).Result(); n > 0 {
			return armNotEmpty
		}
	}
	if w.gen != gen {
		return armNotEmpty // changed while we looked
	}
	w.armedGen, w.armedAt = gen, time.Now()
	return armed
}
