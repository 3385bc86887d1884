package executor

import (
	"context"
	"sync"
	"time"

	"github.com/taskjob/task-job/queue"
)

// held counts the deliveries this executor holds, by their bytes: from the
// moment a take returns until the delivery is dropped, put back, or its
// finish has been applied in Redis. The same bytes can be held twice (a
// task submitted twice), hence a count.
type held struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *held) add(raw []byte) {
	h.mu.Lock()
	if h.n == nil {
		h.n = map[string]int{}
	}
	h.n[string(raw)]++
	h.mu.Unlock()
}

func (h *held) release(raw []byte) {
	h.mu.Lock()
	if h.n[string(raw)]--; h.n[string(raw)] <= 0 {
		delete(h.n, string(raw))
	}
	h.mu.Unlock()
}

func (h *held) count(raw string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[raw]
}

// sweepLoop finds tasks in this executor's processing list that nothing
// here holds, and puts them back on the queue. That happens when a take's
// reply is lost on a broken connection: Redis moved the task, this process
// never saw it, and the client retried. Without the sweep such a task would
// wait for the executor's next restart. An entry must be unheld in two
// sweeps a TTL apart, so a take whose reply is just arriving is left alone.
func (e *Executor) sweepLoop(ctx context.Context) {
	t := time.NewTicker(e.opt.TTL)
	defer t.Stop()
	var prev map[string]int
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		taken, err := e.opt.Broker.Taken(ctx)
		if err != nil {
			prev = nil
			continue
		}
		inList := map[string]int{}
		for _, raw := range taken {
			inList[string(raw)]++
		}
		unheld := map[string]int{}
		for raw, n := range inList {
			if extra := n - e.held.count(raw); extra > 0 {
				unheld[raw] = extra
			}
		}
		for raw, n := range unheld {
			for range min(n, prev[raw]) {
				d := &queue.Delivery{Raw: []byte(raw)}
				if err := e.opt.Broker.Requeue(ctx, d); err != nil {
					e.log.Warn("could not put back a task nothing here holds; will retry", "error", err)
					break
				}
				e.log.Warn("put back a task found in this executor's processing list that nothing here holds (a reply lost on a broken connection)",
					"bytes", len(raw))
			}
		}
		prev = unheld
	}
}
