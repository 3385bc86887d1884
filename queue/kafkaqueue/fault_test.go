package kafkaqueue

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/taskjob/task-job/queue"
)

// A claim whose produce is cut (the broker closes the connection) is
// retried by the client and still decides once.
func TestClaimProduceCut(t *testing.T) {
	c := startKafka(t)
	q := open(t, c, testNames(), execID("a"))
	submit(t, q, "cut1")
	d := take(t, q)
	var cut atomic.Int32
	// The next produce is the claim's (newer produce requests name topics
	// by id, so the first one is cut whatever it names).
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		cut.Add(1)
		return nil, errors.New("cut"), true
	})
	if cl, err := q.Claim(context.Background(), d, "cut1"); err != nil || cl != queue.Claimed {
		t.Fatalf("claim across a cut produce: %v %v", cl, err)
	}
	if cut.Load() == 0 {
		t.Fatal("the fault was never injected")
	}
	if !finish(t, q, d, "cut1", true) {
		t.Fatal("finish")
	}
	if n := dones(t, c, q)["cut1"]; n != 1 {
		t.Fatalf("%d dones, want 1", n)
	}
}

// When the offset commit fails (the coordinator refuses it), the task
// record is delivered again to the next member, whose claim is a duplicate:
// the task is not run twice.
func TestCommitRefusedRedeliveryIsDuplicate(t *testing.T) {
	c := startKafka(t)
	names := testNames()
	a := open(t, c, names, execID("a"))
	var refused atomic.Int32
	c.ControlKey(int16(kmsg.OffsetCommit), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		refused.Add(1)
		req := r.(*kmsg.OffsetCommitRequest)
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = 29 // GROUP_AUTHORIZATION_FAILED: not retried
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	submit(t, a, "rc1")
	d := take(t, a)
	if cl, err := a.Claim(context.Background(), d, "rc1"); err != nil || cl != queue.Claimed {
		t.Fatalf("claim: %v %v", cl, err)
	}
	if refused.Load() == 0 {
		t.Fatal("no commit was attempted")
	}
	a.Close()
	b := open(t, c, names, execID("b"))
	d2 := take(t, b)
	if cl, err := b.Claim(context.Background(), d2, "rc1"); err != nil || cl != queue.Duplicate {
		t.Fatalf("claim of the redelivered task: %v %v", cl, err)
	}
}

var errCrash = errors.New("crashed here")

// An executor that dies between a task's finish record and its done's
// produce leaves the done only in the status topic. Whoever recovers that
// executor — its own next start, or a peer that sees it dead — publishes
// the done to the logs topic, once, however many recover it.
func TestDoneRepublishedAfterCrashBeforeIt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		crash  func(*Options) // where the first process stops
		byPeer bool
		want   int32 // dones the recovery produces
	}{
		{"restart, crash before the done", func(o *Options) { o.crashBeforeDone = func(string) error { return errCrash } }, false, 1},
		{"peers, crash before the done", func(o *Options) { o.crashBeforeDone = func(string) error { return errCrash } }, true, 1},
		// The done was out: the recovery finds it in the logs topic.
		{"restart, crash after the done", func(o *Options) { o.crashAfterDone = func(string) error { return errCrash } }, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startKafka(t)
			names := testNames()
			ctx := context.Background()
			id := execID("a")
			a := open(t, c, names, id, tc.crash)
			submit(t, a, "rp1")
			d := take(t, a)
			if cl, err := a.Claim(ctx, d, "rp1"); err != nil || cl != queue.Claimed {
				t.Fatalf("claim: %v %v", cl, err)
			}
			if _, err := a.Publish(ctx, []queue.Message{{Finish: finishOf(a, d, "rp1")}}); !errors.Is(err, errCrash) {
				t.Fatalf("the crash was not reached: %v", err)
			}
			a.Close() // no Leave: the process died
			var recovered []*Queue
			if tc.byPeer {
				recovered = []*Queue{open(t, c, names, execID("b")), open(t, c, names, execID("c"))}
				if err := ExpireExecutor(ctx, recovered[0].Client(), a.topics, id); err != nil {
					t.Fatal(err)
				}
			} else {
				recovered = []*Queue{open(t, c, names, id)}
			}
			var published atomic.Int32
			errs := make(chan error, len(recovered))
			for _, q := range recovered {
				go func() {
					r, err := q.Recover(ctx, id)
					published.Add(int32(r.Republished))
					errs <- err
				}()
			}
			for range recovered {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if n := dones(t, c, recovered[0])["rp1"]; n != 1 {
				t.Fatalf("%d dones of rp1 in the logs topic, want 1", n)
			}
			if published.Load() != tc.want {
				t.Fatalf("%d dones republished, want %d", published.Load(), tc.want)
			}
			// A second recovery finds the published record and does nothing.
			if r, err := recovered[0].Recover(ctx, id); err != nil || r.Republished != 0 {
				t.Fatalf("second recovery: %+v %v", r, err)
			}
		})
	}
}

// Every produce request cut once (the connection closes before the
// reply) while a task publishes its line and finishes: the client retries
// each, and the line and the done reach the logs topic once each.
func TestPublishProducesCut(t *testing.T) {
	c := startKafka(t)
	q := open(t, c, testNames(), execID("a"))
	submit(t, q, "pc1")
	d := take(t, q)
	if cl, err := q.Claim(context.Background(), d, "pc1"); err != nil || cl != queue.Claimed {
		t.Fatalf("claim: %v %v", cl, err)
	}
	var seen, cut atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if seen.Add(1)%2 == 1 {
			cut.Add(1)
			return nil, errors.New("cut"), true
		}
		return nil, nil, false
	})
	if !finish(t, q, d, "pc1", true) {
		t.Fatal("finish across cut produces did not take effect")
	}
	if cut.Load() < 3 { // the line, the finish record, the done
		t.Fatalf("%d produces cut, want at least 3", cut.Load())
	}
	if n := dones(t, c, q)["pc1"]; n != 1 {
		t.Fatalf("%d dones, want 1", n)
	}
	if n := lines(t, c, q)["pc1"]; n != 1 {
		t.Fatalf("%d output lines, want 1", n)
	}
}

// The group coordinator answers a claim's commit NOT_COORDINATOR once (it
// moved): the client finds it again and commits, so a new member of the
// group does not get the task again.
func TestCommitNotCoordinatorRetried(t *testing.T) {
	c := startKafka(t)
	names := testNames()
	a := open(t, c, names, execID("a"))
	var answered atomic.Int32
	c.ControlKey(int16(kmsg.OffsetCommit), func(r kmsg.Request) (kmsg.Response, error, bool) {
		answered.Add(1)
		req := r.(*kmsg.OffsetCommitRequest)
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = 16 // NOT_COORDINATOR: retried after a new lookup
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	submit(t, a, "nc1")
	d := take(t, a)
	if cl, err := a.Claim(context.Background(), d, "nc1"); err != nil || cl != queue.Claimed {
		t.Fatalf("claim: %v %v", cl, err)
	}
	if answered.Load() != 1 {
		t.Fatalf("the fault was injected %d times, want 1", answered.Load())
	}
	a.Close()
	b := open(t, c, names, execID("b"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if d, err := b.Take(ctx); err != nil && ctx.Err() == nil {
			t.Fatal(err)
		} else if d != nil {
			t.Fatalf("the task was delivered again after its commit was retried: %q", d.Raw)
		}
	}
}
