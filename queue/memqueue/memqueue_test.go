package memqueue

import (
	"errors"
	"testing"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/queue/queuetest"
)

// TestContract runs the broker contract the Redis transport passes too.
func TestContract(t *testing.T) {
	queuetest.Run(t, func(t *testing.T, cfg queuetest.Config) queuetest.Env {
		return &env{h: NewHub(), cfg: cfg}
	})
}

type env struct {
	h   *Hub
	cfg queuetest.Config
}

func (e *env) Broker(t *testing.T, executor string) queue.Broker {
	q := e.h.New(Options{ExecutorID: executor, Retention: e.cfg.Retention, TTL: e.cfg.TTL, MaxTaskBytes: e.cfg.MaxTaskBytes})
	t.Cleanup(func() { q.Close() })
	return q
}

func (e *env) Submit(_ *testing.T, raw []byte)        { e.h.Push(raw) }
func (e *env) SubmitControl(_ *testing.T, raw []byte) { e.h.PushControl(raw) }
func (e *env) Published(*testing.T) [][]byte          { return e.h.Published() }
func (e *env) Queued(*testing.T) [][]byte             { return e.h.Queued() }
func (e *env) Expire(_ *testing.T, executor string)   { e.h.Expire(executor) }

// An outage fails every call, and the state is all there after it.
func TestSetDownFailsEveryCallUntilUp(t *testing.T) {
	h := NewHub()
	q := h.New(Options{ExecutorID: "a"})
	h.Push([]byte(`{"id":"1"}`))
	h.SetDown(true)
	ctx := t.Context()
	if _, err := q.Take(ctx); !errors.Is(err, ErrDown) {
		t.Errorf("Take while down = %v", err)
	}
	if _, err := q.Publish(ctx, []queue.Message{{Log: []byte("x")}}); !errors.Is(err, ErrDown) {
		t.Errorf("Publish while down = %v", err)
	}
	if err := q.Heartbeat(ctx); !errors.Is(err, ErrDown) {
		t.Errorf("Heartbeat while down = %v", err)
	}
	h.SetDown(false)
	if d, err := q.Take(ctx); err != nil || d == nil || string(d.Raw) != `{"id":"1"}` {
		t.Errorf("Take after the outage = %+v, %v", d, err)
	}
	if len(h.Published()) != 0 {
		t.Errorf("published while down: %q", h.Published())
	}
	q.Close()
	if _, err := q.Taken(ctx); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Taken after Close = %v", err)
	}
}
