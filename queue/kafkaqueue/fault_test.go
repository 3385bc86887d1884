package kafkaqueue

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

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
