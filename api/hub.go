package api

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/task"
)

// hub follows the logs feed (the pub/sub channel on which executors
// publish each batch of TaskLog messages) with one subscription for the
// whole server, and hands each message to the streams that watch its task.
// A stream that cannot keep up is closed rather than allowed to slow the
// others or grow without bound; its client reconnects with Last-Event-ID
// and reads what it missed from the task's log stream.
type hub struct {
	mu      sync.Mutex
	byID    map[string]map[*watcher]struct{}
	allDone map[*watcher]struct{}
	live    bool
}

type watcher struct {
	ch     chan []byte
	closed chan struct{}
	once   sync.Once
}

func (w *watcher) close() { w.once.Do(func() { close(w.closed) }) }

// watcherBuffer is how many messages a stream may fall behind by.
const watcherBuffer = 4096

func newHub() *hub {
	return &hub{byID: map[string]map[*watcher]struct{}{}, allDone: map[*watcher]struct{}{}}
}

// watch registers a stream of id's messages ("" = every done). It returns
// nil while the feed is not subscribed.
func (h *hub) watch(id string) *watcher {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.live {
		return nil
	}
	w := &watcher{ch: make(chan []byte, watcherBuffer), closed: make(chan struct{})}
	if id == "" {
		h.allDone[w] = struct{}{}
	} else {
		if h.byID[id] == nil {
			h.byID[id] = map[*watcher]struct{}{}
		}
		h.byID[id][w] = struct{}{}
	}
	return w
}

func (h *hub) unwatch(id string, w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if id == "" {
		delete(h.allDone, w)
	} else if m := h.byID[id]; m != nil {
		delete(m, w)
		if len(m) == 0 {
			delete(h.byID, id)
		}
	}
	w.close()
}

// resetLocked closes every stream: after the subscription was re-made,
// messages may have been missed, and each client catches up on reconnect.
func (h *hub) resetLocked() {
	for _, m := range h.byID {
		for w := range m {
			w.close()
		}
	}
	for w := range h.allDone {
		w.close()
	}
	h.byID = map[string]map[*watcher]struct{}{}
	h.allDone = map[*watcher]struct{}{}
}

func send(w *watcher, line []byte) {
	select {
	case w.ch <- line:
	default:
		w.close() // fell behind: the client resumes from the task's stream
	}
}

// dispatch hands each message of a feed payload to its watchers. Most
// messages are output lines no one watches (an open task list follows
// dones only), so a line is looked into only when someone may want it:
// the feed's cost is what the executors sharing this machine pay.
func (h *hub) dispatch(payload string) {
	h.mu.Lock()
	idle := len(h.byID) == 0 && len(h.allDone) == 0
	lines := len(h.byID) > 0
	h.mu.Unlock()
	if idle {
		return
	}
	for _, l := range bytes.Split([]byte(payload), []byte{'\n'}) {
		done := bytes.Contains(l, []byte(`"msg_type":"done"`))
		if !done && !lines {
			continue
		}
		id, _ := task.PeekID(l)
		if id == "" {
			continue
		}
		h.mu.Lock()
		for w := range h.byID[id] {
			send(w, l)
		}
		if done {
			for w := range h.allDone {
				send(w, l)
			}
		}
		h.mu.Unlock()
	}
}

// run follows channel until ctx ends; ready is called at the first
// subscription.
func (h *hub) run(ctx context.Context, rdb redis.UniversalClient, channel string, ready func(), log hclog.Logger) error {
	sub := rdb.Subscribe(ctx, channel)
	defer sub.Close()
	ch := sub.ChannelWithSubscriptions(redis.WithChannelSize(watcherBuffer), redis.WithChannelHealthCheckInterval(10*time.Second))
	first := true
	for {
		select {
		case <-ctx.Done():
			h.mu.Lock()
			h.live = false
			h.resetLocked()
			h.mu.Unlock()
			return nil
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind != "subscribe" {
					continue
				}
				h.mu.Lock()
				if !first {
					log.Info("logs feed subscribed again; live streams reconnect and catch up")
					h.resetLocked()
				}
				h.live = true
				h.mu.Unlock()
				if first {
					first = false
					ready()
				}
			case *redis.Message:
				h.dispatch(m.Payload)
			}
		}
	}
}
