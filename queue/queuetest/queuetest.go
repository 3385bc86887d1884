// Package queuetest is the broker contract as a test suite: what an
// executor relies on from its transport (package queue's interfaces),
// stated as tests that every transport must pass. The Redis transport and
// the in-memory one run it; the next transport runs it too:
//
//	func TestContract(t *testing.T) {
//		queuetest.Run(t, func(t *testing.T, cfg queuetest.Config) queuetest.Env { ... })
//	}
//
// The suite speaks to the transport only through the queue interfaces and
// through Env, the few things a client or the passing of time does (push a
// task, push a kill, read what was published, let a liveness expire).
package queuetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/task"
)

// Config is what the suite asks of a new Env.
type Config struct {
	// TTL is the executors' liveness TTL.
	TTL time.Duration
	// MaxTaskBytes is max_task_bytes: longer messages are taken oversized.
	MaxTaskBytes int
	// Retention is how long an ended id's status is kept.
	Retention time.Duration
}

// Env is one fresh, empty transport instance, shared by any number of
// executors, plus what clients and time do to it.
type Env interface {
	// Broker returns a broker for the executor id; the Env closes it at the
	// end of the test. Two calls with one id are two processes claiming the
	// same identity.
	Broker(t *testing.T, executor string) queue.Broker
	// Submit appends a task message to the task list, as a client does.
	Submit(t *testing.T, raw []byte)
	// SubmitControl appends a control (kill) message to the shared control
	// list, as a client does.
	SubmitControl(t *testing.T, raw []byte)
	// Published returns every message on the logs channel so far, in
	// order: output lines and dones.
	Published(t *testing.T) [][]byte
	// Queued returns the task list, head first.
	Queued(t *testing.T) [][]byte
	// Expire ends the executor's liveness now, as if it had been paused or
	// cut off past its TTL.
	Expire(t *testing.T, executor string)
}

// DefaultConfig is what Run asks for.
var DefaultConfig = Config{TTL: 400 * time.Millisecond, MaxTaskBytes: 1024, Retention: time.Hour}

// Run runs the contract, each case on a fresh Env from newEnv.
func Run(t *testing.T, newEnv func(t *testing.T, cfg Config) Env) {
	RunExcept(t, newEnv, nil)
}

// RunExcept runs the contract but for the cases named in differs, each
// with the reason why the transport does otherwise by design (a topic is
// not a list). Those are logged, so the output says what was not checked;
// a name that is no case fails, so the list cannot outlive its cases.
func RunExcept(t *testing.T, newEnv func(t *testing.T, cfg Config) Env, differs map[string]string) {
	for name := range differs {
		if !slices.ContainsFunc(cases, func(c contractCase) bool { return c.name == name }) {
			t.Fatalf("queuetest: no case %q", name)
		}
	}
	for _, c := range cases {
		if why, ok := differs[c.name]; ok {
			t.Logf("%s: not run on this transport: %s", c.name, why)
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			c.f(t, &suite{Env: newEnv(t, DefaultConfig), cfg: DefaultConfig, t: t})
		})
	}
}

type suite struct {
	Env
	cfg Config
	t   *testing.T
}

type contractCase struct {
	name string
	f    func(*testing.T, *suite)
}

var cases = []contractCase{
	{"TakeMovesToTakenInOrder", testTake},
	{"TakeWaitsForATaskAndHonoursCtx", testTakeBlocks},
	{"OversizedIsTakenWithoutItsBody", testOversized},
	{"ClaimIsPerDelivery", testClaimPerDelivery},
	{"ConcurrentClaimsHaveOneWinner", testConcurrentClaims},
	{"FinishPublishesAtMostOnce", testFinishOnce},
	{"FinishIsFencedByToken", testFinishFenced},
	{"EndedIDStaysDuplicate", testEndedDuplicate},
	{"DropAndRequeue", testDropRequeue},
	{"PublishKeepsOrder", testPublishOrder},
	{"KillRouting", testKillRouting},
	{"KillOfATakenUnclaimedTask", testKillTakenUnclaimed},
	{"KillBeforeTheTaskExists", testKillBeforeTask},
	{"RemoveQueued", testRemoveQueued},
	{"ControlsAndForwarding", testControls},
	{"JoinHeartbeatLeave", testMembership},
	{"SecondHolderOfAnIDIsRefused", testIdentityTaken},
	{"RecoverReportsLostAndRequeues", testRecover},
	{"RecoveredClaimsAreFenced", testRecoveredFenced},
	{"RecoverRacesFinishWithOneDone", testRecoverRacesFinish},
	{"Status", testStatus},
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func raw(id string) []byte {
	return []byte(fmt.Sprintf(`{"id":%q,"type":"t","task":{"cmdline":"x"}}`, id))
}

func line(id string, seq uint64) []byte {
	return (&task.Log{ID: id, Type: "t", MsgType: task.MsgStdout, Data: fmt.Sprint("line ", seq), Seq: seq, Executor: "x"}).Marshal()
}

func done(id string, st task.State) []byte {
	return task.Done(task.Ending{ID: id, Type: "t", Executor: "x", Time: time.Now(), Result: task.Result{Status: st}})
}

func finish(d *queue.Delivery, id string, st task.State) queue.Message {
	return queue.Message{Finish: &queue.Finish{ID: id, State: st, Done: done(id, st), Raw: d.Raw, Claimed: true, Token: d.Token}}
}

func (s *suite) take(b queue.Broker) *queue.Delivery {
	s.t.Helper()
	for range 3 {
		d, err := b.Take(ctxT(s.t))
		if err != nil {
			s.t.Fatalf("Take: %v", err)
		}
		if d != nil {
			return d
		}
	}
	s.t.Fatal("Take found no task")
	return nil
}

func (s *suite) claim(b queue.Broker, d *queue.Delivery, id string) queue.Claim {
	s.t.Helper()
	c, err := b.Claim(ctxT(s.t), d, id)
	if err != nil {
		s.t.Fatalf("Claim %s: %v", id, err)
	}
	return c
}

func (s *suite) publish(b queue.Broker, msgs ...queue.Message) []bool {
	s.t.Helper()
	ok, err := b.Publish(ctxT(s.t), msgs)
	if err != nil {
		s.t.Fatalf("Publish: %v", err)
	}
	if len(ok) != len(msgs) {
		s.t.Fatalf("Publish answered %d results for %d messages", len(ok), len(msgs))
	}
	return ok
}

func (s *suite) taken(b queue.Broker) [][]byte {
	s.t.Helper()
	got, err := b.Taken(ctxT(s.t))
	if err != nil {
		s.t.Fatalf("Taken: %v", err)
	}
	return got
}

// dones returns the published dones of id.
func (s *suite) dones(id string) []task.Log {
	s.t.Helper()
	var out []task.Log
	for _, m := range s.Published(s.t) {
		var l task.Log
		if json.Unmarshal(m, &l) == nil && l.ID == id && l.MsgType == task.MsgDone {
			out = append(out, l)
		}
	}
	return out
}

func (s *suite) wantDones(id string, n int) []task.Log {
	s.t.Helper()
	d := s.dones(id)
	if len(d) != n {
		s.t.Errorf("%s has %d dones, want %d", id, len(d), n)
	}
	return d
}

func join(t *testing.T, b queue.Broker) {
	t.Helper()
	if err := b.Join(ctxT(t)); err != nil {
		t.Fatalf("Join: %v", err)
	}
}

func same(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func testTake(t *testing.T, s *suite) {
	a := s.Broker(t, "a")
	s.Submit(t, raw("1"))
	s.Submit(t, raw("2"))
	d1, d2 := s.take(a), s.take(a)
	if !bytes.Equal(d1.Raw, raw("1")) || !bytes.Equal(d2.Raw, raw("2")) {
		t.Errorf("took %q then %q, want the task list's order", d1.Raw, d2.Raw)
	}
	if d1.Token == "" || d1.Token == d2.Token {
		t.Errorf("tokens %q and %q: each take needs its own", d1.Token, d2.Token)
	}
	if d1.Size != 0 || d1.Taken.IsZero() {
		t.Errorf("delivery %+v: want Size 0 and Taken set", d1)
	}
	if got := s.taken(a); !same(got, [][]byte{raw("1"), raw("2")}) {
		t.Errorf("Taken = %q", got)
	}
	if q := s.Queued(t); len(q) != 0 {
		t.Errorf("task list still holds %q", q)
	}
	if got := s.taken(s.Broker(t, "b")); len(got) != 0 {
		t.Errorf("another executor's Taken = %q", got)
	}
}

func testTakeBlocks(t *testing.T, s *suite) {
	a := s.Broker(t, "a")
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	d, err := a.Take(ctx)
	if d != nil || (err != nil && ctx.Err() == nil) {
		t.Errorf("Take of an empty list = %v, %v", d, err)
	}
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Errorf("Take ignored its ctx: returned after %v", el)
	}
	// One plain Take returns within about a second when nothing comes.
	start = time.Now()
	if d, err := a.Take(context.Background()); d != nil || err != nil {
		t.Errorf("Take of an empty list = %v, %v", d, err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("an empty Take took %v, want about a second", el)
	}
	// A task pushed while Take waits is returned at once.
	got := make(chan *queue.Delivery, 1)
	go func() {
		d, _ := a.Take(context.Background())
		got <- d
	}()
	time.Sleep(50 * time.Millisecond)
	s.Submit(t, raw("late"))
	select {
	case d := <-got:
		if d == nil || !bytes.Equal(d.Raw, raw("late")) {
			t.Errorf("waiting Take = %+v", d)
		}
	case <-time.After(3 * time.Second):
		t.Error("a waiting Take did not return the task pushed meanwhile")
	}
}

func testOversized(t *testing.T, s *suite) {
	a := s.Broker(t, "a")
	big := append([]byte(`{"id":"big","pad":"`), bytes.Repeat([]byte("x"), s.cfg.MaxTaskBytes)...)
	big = append(big, `"}`...)
	s.Submit(t, big)
	d := s.take(a)
	if d.Size != len(big) || len(d.Raw) > task.PeekBytes || !bytes.HasPrefix(big, d.Raw) || d.Digest == "" || d.Token == "" {
		t.Errorf("oversized delivery: size %d (want %d), %d raw bytes, digest %q, token %q", d.Size, len(big), len(d.Raw), d.Digest, d.Token)
	}
	if got := s.taken(a); len(got) != 0 {
		t.Errorf("an oversized message is in Taken: %d entries", len(got))
	}
	if err := a.Requeue(ctxT(t), d); err != nil {
		t.Fatal(err)
	}
	if q := s.Queued(t); len(q) != 0 {
		t.Errorf("Requeue put an oversized message back: %d entries", len(q))
	}
	// Its done (a refusal) is published like any other.
	if c := s.claim(a, d, "big"); c != queue.Claimed {
		t.Fatalf("claim of the oversized message = %v", c)
	}
	if ok := s.publish(a, finish(d, "big", task.Rejected)); !ok[0] {
		t.Error("the oversized message's done was not published")
	}
	s.wantDones("big", 1)
}

func testClaimPerDelivery(t *testing.T, s *suite) {
	a, b := s.Broker(t, "a"), s.Broker(t, "b")
	s.Submit(t, raw("A"))
	s.Submit(t, raw("A"))
	s.Submit(t, raw("A"))
	d1, d2, d3 := s.take(a), s.take(a), s.take(b)
	if c := s.claim(a, d1, "A"); c != queue.Claimed {
		t.Fatalf("first claim = %v", c)
	}
	if c := s.claim(a, d1, "A"); c != queue.Claimed {
		t.Errorf("the same delivery's retried claim = %v, want claimed", c)
	}
	if c := s.claim(a, d2, "A"); c != queue.Duplicate {
		t.Errorf("a second copy on the same executor = %v, want duplicate", c)
	}
	if c := s.claim(b, d3, "A"); c != queue.Duplicate {
		t.Errorf("a copy on another executor = %v, want duplicate", c)
	}
	if c := s.claim(a, d1, "A"); c != queue.Claimed {
		t.Errorf("the owner's claim after the duplicates = %v, want claimed", c)
	}
	if err := a.Drop(ctxT(t), d2); err != nil {
		t.Fatal(err)
	}
	if err := b.Drop(ctxT(t), d3); err != nil {
		t.Fatal(err)
	}
	if got := s.taken(a); !same(got, [][]byte{raw("A")}) {
		t.Errorf("Taken after dropping the duplicate = %q, want the owner's delivery", got)
	}
	if got := s.taken(b); len(got) != 0 {
		t.Errorf("b's Taken after the drop = %q", got)
	}
	s.wantDones("A", 0)
}

func testConcurrentClaims(t *testing.T, s *suite) {
	const n = 8
	bs := make([]queue.Broker, n)
	ds := make([]*queue.Delivery, n)
	for i := range bs {
		bs[i] = s.Broker(t, fmt.Sprint("e", i))
		s.Submit(t, raw("race"))
	}
	for i := range bs {
		ds[i] = s.take(bs[i])
	}
	var wg sync.WaitGroup
	claims := make([]queue.Claim, n)
	errs := make([]error, n)
	for i := range bs {
		wg.Go(func() { claims[i], errs[i] = bs[i].Claim(context.Background(), ds[i], "race") })
	}
	wg.Wait()
	won := -1
	for i, c := range claims {
		if errs[i] != nil {
			t.Fatalf("claim %d: %v", i, errs[i])
		}
		switch c {
		case queue.Claimed:
			if won >= 0 {
				t.Errorf("both %d and %d claimed one id", won, i)
			}
			won = i
		case queue.Duplicate:
		default:
			t.Errorf("claim %d = %v", i, c)
		}
	}
	if won < 0 {
		t.Fatal("no claim won")
	}
	// Every executor now tries to finish: only the winner's done counts.
	for i := range bs {
		wg.Go(func() {
			ok, err := bs[i].Publish(context.Background(), []queue.Message{finish(ds[i], "race", task.Succeeded)})
			if err != nil {
				t.Errorf("publish %d: %v", i, err)
			} else if ok[0] != (i == won) {
				t.Errorf("executor %d's finish applied = %v (winner %d)", i, ok[0], won)
			}
		})
	}
	wg.Wait()
	s.wantDones("race", 1)
}

func testFinishOnce(t *testing.T, s *suite) {
	a := s.Broker(t, "a")
	s.Submit(t, raw("7"))
	d := s.take(a)
	s.claim(a, d, "7")
	batch := []queue.Message{{Log: line("7", 1)}, finish(d, "7", task.Succeeded)}
	for i := range 3 {
		ok := s.publish(a, batch...)
		if !ok[1] {
			t.Errorf("publish %d = %v: a retried finish that took effect reports so again", i, ok)
		}
		if ok[0] != (i == 0) {
			t.Errorf("publish %d = %v: the line takes effect only while its task runs, never after its done", i, ok)
		}
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := a.Publish(context.Background(), batch); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	dones := s.wantDones("7", 1)
	if len(dones) == 1 && dones[0].Status != task.Succeeded {
		t.Errorf("done %+v", dones[0])
	}
	if got := s.taken(a); len(got) != 0 {
		t.Errorf("Taken after the finish = %q", got)
	}
	// A batch retried after its task ended repeats no line: whoever reads
	// the list takes the done as the task's end.
	lines, afterDone := 0, false
	for _, m := range s.Published(t) {
		if bytes.Equal(m, line("7", 1)) {
			lines++
			if afterDone {
				t.Errorf("a line of 7 after its done: %s", m)
			}
		}
		if id, _ := task.PeekID(m); id == "7" && bytes.Contains(m, []byte(`"msg_type":"done"`)) {
			afterDone = true
		}
	}
	if lines != 1 {
		t.Errorf("%d copies of the output line for 7 publishes, want 1", lines)
	}
}

func testFinishFenced(t *testing.T, s *suite) {
	a, b := s.Broker(t, "a"), s.Broker(t, "b")
	s.Submit(t, raw("F"))
	s.Submit(t, raw("F"))
	owner, dup := s.take(a), s.take(a)
	s.claim(a, owner, "F")
	s.claim(a, dup, "F")
	// Another delivery of the id on the same executor cannot end it.
	if ok := s.publish(a, finish(dup, "F", task.Failed)); ok[0] {
		t.Error("a duplicate delivery's finish was published")
	}
	// Nor can a made-up token, nor another executor with the owner's token.
	forged := finish(owner, "F", task.Failed)
	forged.Finish.Token = "forged"
	if ok := s.publish(a, forged); ok[0] {
		t.Error("a finish with a wrong token was published")
	}
	if ok := s.publish(b, finish(owner, "F", task.Failed)); ok[0] {
		t.Error("another executor's finish with the owner's token was published")
	}
	s.wantDones("F", 0)
	if ok := s.publish(a, finish(owner, "F", task.Succeeded)); !ok[0] {
		t.Error("the owner's finish was not published")
	}
	if d := s.wantDones("F", 1); len(d) == 1 && d[0].Status != task.Succeeded {
		t.Errorf("done %+v, want the owner's", d[0])
	}
}

func testEndedDuplicate(t *testing.T, s *suite) {
	a, b := s.Broker(t, "a"), s.Broker(t, "b")
	s.Submit(t, raw("E"))
	d := s.take(a)
	s.claim(a, d, "E")
	s.publish(a, finish(d, "E", task.Succeeded))
	if c := s.claim(a, d, "E"); c != queue.Duplicate {
		t.Errorf("the ended delivery's claim again = %v, want duplicate", c)
	}
	s.Submit(t, raw("E"))
	d2 := s.take(b)
	if c := s.claim(b, d2, "E"); c != queue.Duplicate {
		t.Errorf("a new copy of an ended id = %v, want duplicate (within the retention)", c)
	}
	if ok := s.publish(b, finish(d2, "E", task.Failed)); ok[0] {
		t.Error("a second done was published for an ended id")
	}
	s.wantDones("E", 1)
}

func testDropRequeue(t *testing.T, s *suite) {
	a, b := s.Broker(t, "a"), s.Broker(t, "b")
	s.Submit(t, raw("1"))
	s.Submit(t, raw("2"))
	s.Submit(t, []byte("not json"))
	d1, d2, bad := s.take(a), s.take(a), s.take(a)
	if err := a.Drop(ctxT(t), bad); err != nil {
		t.Fatal(err)
	}
	if got := s.taken(a); !same(got, [][]byte{raw("1"), raw("2")}) {
		t.Errorf("Taken after Drop = %q", got)
	}
	// Requeue puts it back at the head, where it was, for anyone to take.
	if err := a.Requeue(ctxT(t), d2); err != nil {
		t.Fatal(err)
	}
	if err := a.Requeue(ctxT(t), d1); err != nil {
		t.Fatal(err)
	}
	s.Submit(t, raw("3"))
	if q := s.Queued(t); !same(q, [][]byte{raw("1"), raw("2"), raw("3")}) {
		t.Errorf("task list after Requeue = %q", q)
	}
	if got := s.taken(a); len(got) != 0 {
		t.Errorf("Taken after Requeue = %q", got)
	}
	d := s.take(b)
	if !bytes.Equal(d.Raw, raw("1")) {
		t.Errorf("took %q after the requeue, want 1", d.Raw)
	}
	if c := s.claim(b, d, "1"); c != queue.Claimed {
		t.Errorf("claim of a requeued task = %v", c)
	}
	if len(s.Published(t)) != 0 {
		t.Errorf("Drop or Requeue published %q", s.Published(t))
	}
}

func testPublishOrder(t *testing.T, s *suite) {
	a := s.Broker(t, "a")
	s.Submit(t, raw("x"))
	s.Submit(t, raw("y"))
	dx, dy := s.take(a), s.take(a)
	s.claim(a, dx, "x")
	s.claim(a, dy, "y")
	want := [][]byte{line("x", 1), line("y", 1), line("x", 2), done("x", task.Succeeded), line("y", 2)}
	msgs := []queue.Message{{Log: want[0]}, {Log: want[1]}, {Log: want[2]},
		{Finish: &queue.Finish{ID: "x", State: task.Succeeded, Done: want[3], Raw: dx.Raw, Claimed: true, Token: dx.Token}},
		{Log: want[4]}}
	if ok := s.publish(a, msgs...); !ok[0] || !ok[3] || !ok[4] {
		t.Errorf("applied %v", ok)
	}
	more := []queue.Message{{Log: line("y", 3)}, finish(dy, "y", task.Failed)}
	s.publish(a, more...)
	want = append(want, line("y", 3), more[1].Finish.Done)
	if got := s.Published(t); !same(got, want) {
		t.Errorf("published, in order:\n%s\nwant:\n%s", bytes.Join(got, []byte("\n")), bytes.Join(want, []byte("\n")))
	}
	// A line of no task, or of a task with no record, is published; a
	// line of a task another executor runs is not this executor's to give.
	b := s.Broker(t, "b")
	s.Submit(t, raw("z"))
	dz := s.take(b)
	s.claim(b, dz, "z")
	if ok := s.publish(a, queue.Message{Log: []byte("no task")}, queue.Message{Log: line("unknown", 1)}, queue.Message{Log: line("z", 1)}); !ok[0] || !ok[1] || ok[2] {
		t.Errorf("applied %v, want true, true, false", ok)
	}
	if got := s.Published(t); len(got) != len(want)+2 {
		t.Errorf("%d published, want %d", len(got), len(want)+2)
	}
	// An empty batch is fine.
	if ok, err := a.Publish(ctxT(t), nil); err != nil || len(ok) != 0 {
		t.Errorf("empty Publish = %v, %v", ok, err)
	}
}

func testKillRouting(t *testing.T, s *suite) {
	a, b := s.Broker(t, "a"), s.Broker(t, "b")
	s.Submit(t, raw("run"))
	s.Submit(t, raw("ended"))
	s.Submit(t, raw("wait"))
	d := s.take(a)
	s.claim(a, d, "run")
	de := s.take(a)
	s.claim(a, de, "ended")
	s.publish(a, finish(de, "ended", task.Succeeded))
	if r, err := b.RouteKill(ctxT(t), "run"); err != nil || r != (queue.Route{Executor: "a"}) {
		t.Errorf("route of a running task = %+v, %v; want executor a", r, err)
	}
	if r, err := b.RouteKill(ctxT(t), "ended"); err != nil || r != (queue.Route{Ended: task.Succeeded}) {
		t.Errorf("route of an ended task = %+v, %v", r, err)
	}
	if r, err := b.RouteKill(ctxT(t), "wait"); err != nil || r != (queue.Route{Queued: true}) {
		t.Errorf("route of a queued task = %+v, %v", r, err)
	}
	// Killed again while queued: still queued, and the task, when taken,
	// is cancelled.
	if r, _ := b.RouteKill(ctxT(t), "wait"); !r.Queued {
		t.Errorf("second route of a queued task = %+v", r)
	}
	dw := s.take(b)
	if c := s.claim(b, dw, "wait"); c != queue.CancelledWhileQueued {
		t.Errorf("claim of a task killed while queued = %v", c)
	}
	// Once claimed (even cancelled), a kill goes to its owner.
	if r, _ := a.RouteKill(ctxT(t), "wait"); r.Executor != "b" {
		t.Errorf("route of a claimed cancelled task = %+v, want executor b", r)
	}
	if ok := s.publish(b, finish(dw, "wait", task.Killed)); !ok[0] {
		t.Error("the cancelled task's finish was not published")
	}
	if d := s.wantDones("wait", 1); len(d) == 1 && d[0].Status != task.Killed {
		t.Errorf("done %+v", d[0])
	}
}

func testKillTakenUnclaimed(t *testing.T, s *suite) {
	a, b := s.Broker(t, "a"), s.Broker(t, "b")
	s.Submit(t, raw("m3"))
	d := s.take(a)
	if r, _ := b.RouteKill(ctxT(t), "m3"); !r.Queued {
		t.Fatalf("route of a taken, unclaimed task = %+v, want queued", r)
	}
	if c := s.claim(a, d, "m3"); c != queue.CancelledWhileQueued {
		t.Fatalf("claim = %v, want cancelled-while-queued", c)
	}
	if c := s.claim(a, d, "m3"); c != queue.CancelledWhileQueued {
		t.Errorf("retried claim = %v, want cancelled-while-queued again", c)
	}
	if ok := s.publish(a, finish(d, "m3", task.Killed)); !ok[0] {
		t.Fatal("the finish of the cancelled task was not published")
	}
	if st, err := a.Status(ctxT(t), "m3"); err != nil || st == nil || st.State != task.Killed {
		t.Errorf("status %+v, %v; want killed", st, err)
	}
	s.wantDones("m3", 1)
	if got := s.taken(a); len(got) != 0 {
		t.Errorf("Taken = %q", got)
	}
}

func testKillBeforeTask(t *testing.T, s *suite) {
	a, b := s.Broker(t, "a"), s.Broker(t, "b")
	if r, err := b.RouteKill(ctxT(t), "later"); err != nil || !r.Queued {
		t.Fatalf("route of an id never seen = %+v, %v; want queued (remembered)", r, err)
	}
	s.Submit(t, raw("later"))
	s.Submit(t, raw("other"))
	d := s.take(a)
	if c := s.claim(a, d, "later"); c != queue.CancelledWhileQueued {
		t.Errorf("claim after an early kill = %v, want cancelled-while-queued", c)
	}
	if c := s.claim(a, s.take(a), "other"); c != queue.Claimed {
		t.Errorf("an id with no kill = %v", c)
	}
	if ok := s.publish(a, finish(d, "later", task.Killed)); !ok[0] {
		t.Error("the early-killed task's finish was not published")
	}
	s.wantDones("later", 1)
	// The kill was used once: a copy pushed later is a duplicate, not a
	// second kill.
	s.Submit(t, raw("later"))
	if c := s.claim(b, s.take(b), "later"); c != queue.Duplicate {
		t.Errorf("a later copy = %v, want duplicate", c)
	}
}

func testRemoveQueued(t *testing.T, s *suite) {
	a, b := s.Broker(t, "a"), s.Broker(t, "b")
	s.Submit(t, raw("head"))
	s.Submit(t, raw("wait"))
	s.Submit(t, raw("tail"))
	if r, _ := b.RouteKill(ctxT(t), "wait"); !r.Queued {
		t.Fatalf("route = %+v", r)
	}
	var gotRaw []byte
	removed, err := b.RemoveQueued(ctxT(t), "wait", func(r []byte) *queue.Finish {
		gotRaw = r
		return &queue.Finish{ID: "wait", State: task.Killed, Done: done("wait", task.Killed), Raw: r}
	})
	if err != nil || !removed {
		t.Fatalf("RemoveQueued = %v, %v", removed, err)
	}
	if !bytes.Equal(gotRaw, raw("wait")) {
		t.Errorf("the finish was built from %q", gotRaw)
	}
	if q := s.Queued(t); !same(q, [][]byte{raw("head"), raw("tail")}) {
		t.Errorf("task list after RemoveQueued = %q", q)
	}
	if d := s.wantDones("wait", 1); len(d) == 1 && d[0].Status != task.Killed {
		t.Errorf("done %+v", d[0])
	}
	if st, _ := b.Status(ctxT(t), "wait"); st == nil || st.State != task.Killed {
		t.Errorf("status %+v", st)
	}
	// Not there (any more): nothing happens.
	removed, err = b.RemoveQueued(ctxT(t), "wait", func(r []byte) *queue.Finish {
		t.Error("f called for an id not in the task list")
		return nil
	})
	if err != nil || removed {
		t.Errorf("second RemoveQueued = %v, %v", removed, err)
	}
	// A task taken meanwhile is not removed from its executor.
	d := s.take(a)
	b.RouteKill(ctxT(t), "head")
	if removed, _ := b.RemoveQueued(ctxT(t), "head", func(r []byte) *queue.Finish {
		return &queue.Finish{ID: "head", State: task.Killed, Done: done("head", task.Killed), Raw: r}
	}); removed {
		t.Error("RemoveQueued removed a task already taken")
	}
	if c := s.claim(a, d, "head"); c != queue.CancelledWhileQueued {
		t.Errorf("claim = %v", c)
	}
	s.wantDones("head", 0)
}

func testControls(t *testing.T, s *suite) {
	a, b := s.Broker(t, "a"), s.Broker(t, "b")
	kill := []byte(`{"id":"x","type":"kill"}`)
	s.SubmitControl(t, kill)
	c, err := a.TakeControl(ctxT(t))
	if err != nil || c == nil || !bytes.Equal(c.Raw, kill) || c.Forwarded {
		t.Fatalf("TakeControl = %+v, %v", c, err)
	}
	// Taken by a, it is no one else's.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if c2, _ := b.TakeControl(ctx); c2 != nil {
		t.Errorf("a control taken by a was taken again by b: %q", c2.Raw)
	}
	if err := a.AckControl(ctxT(t), c); err != nil {
		t.Fatal(err)
	}
	fw := []byte(`{"id":"y","type":"kill"}`)
	if err := b.Forward(ctxT(t), "a", fw); err != nil {
		t.Fatal(err)
	}
	f, err := a.TakeForwarded(ctxT(t))
	if err != nil || f == nil || !bytes.Equal(f.Raw, fw) || !f.Forwarded {
		t.Fatalf("TakeForwarded = %+v, %v", f, err)
	}
	if err := a.AckControl(ctxT(t), f); err != nil {
		t.Fatal(err)
	}
	// An empty forwarded list returns within about a second.
	start := time.Now()
	if f, err := b.TakeForwarded(context.Background()); f != nil || err != nil {
		t.Errorf("b's TakeForwarded = %+v, %v", f, err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("an empty TakeForwarded took %v", el)
	}
}

func testMembership(t *testing.T, s *suite) {
	a, b := s.Broker(t, "a"), s.Broker(t, "b")
	join(t, a)
	join(t, a) // again from the same process: a no-op
	join(t, b)
	if m, err := a.Executors(ctxT(t)); err != nil || !m["a"] || !m["b"] {
		t.Errorf("Executors = %v, %v", m, err)
	}
	if err := a.Heartbeat(ctxT(t)); err != nil {
		t.Errorf("Heartbeat = %v", err)
	}
	s.Expire(t, "a")
	if m, _ := b.Executors(ctxT(t)); m["a"] {
		t.Errorf("an expired executor looks alive: %v", m)
	}
	if err := a.Heartbeat(ctxT(t)); !errors.Is(err, queue.ErrLivenessLost) {
		t.Errorf("Heartbeat after its liveness expired = %v, want ErrLivenessLost", err)
	}
	if err := a.Heartbeat(ctxT(t)); err != nil {
		t.Errorf("the next Heartbeat = %v, want renewed", err)
	}
	if m, _ := b.Executors(ctxT(t)); !m["a"] {
		t.Errorf("a renewed executor looks dead: %v", m)
	}
	if err := b.Leave(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if m, _ := a.Executors(ctxT(t)); len(m) != 1 || !m["a"] {
		t.Errorf("Executors after b left = %v", m)
	}
	// A left executor's id is free at once.
	join(t, s.Broker(t, "b"))
}

func testIdentityTaken(t *testing.T, s *suite) {
	first := s.Broker(t, "a")
	join(t, first)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // keep the first one alive
		for {
			select {
			case <-stop:
				return
			case <-time.After(s.cfg.TTL / 4):
				_ = first.Heartbeat(context.Background())
			}
		}
	})
	second := s.Broker(t, "a")
	err := second.Join(ctxT(t))
	close(stop)
	wg.Wait()
	if !errors.Is(err, queue.ErrIdentityTaken) {
		t.Fatalf("a second Join under a live id = %v, want ErrIdentityTaken", err)
	}
	// The first one's liveness lapses; the second takes the id; the first
	// then hears that it is taken.
	s.Expire(t, "a")
	join(t, second)
	if err := first.Heartbeat(ctxT(t)); !errors.Is(err, queue.ErrIdentityTaken) {
		t.Errorf("the first holder's Heartbeat = %v, want ErrIdentityTaken", err)
	}
	if err := second.Heartbeat(ctxT(t)); err != nil {
		t.Errorf("the holder's Heartbeat = %v", err)
	}
}

func testRecover(t *testing.T, s *suite) {
	dead, peer, other := s.Broker(t, "dead"), s.Broker(t, "peer"), s.Broker(t, "other")
	join(t, dead)
	join(t, peer)
	join(t, other)
	s.Submit(t, raw("started"))
	s.Submit(t, raw("taken"))
	s.Submit(t, []byte("not json"))
	s.Submit(t, raw("dup"))
	s.Submit(t, raw("dup"))
	s.Submit(t, raw("cancelled"))
	ds := s.take(dead)
	s.claim(dead, ds, "started")
	s.take(dead)
	s.take(dead)
	dd := s.take(dead) // a duplicate it had not dropped yet
	do := s.take(other)
	s.claim(other, do, "dup")
	if c := s.claim(dead, dd, "dup"); c != queue.Duplicate {
		t.Fatalf("claim = %v", c)
	}
	dc := s.take(dead) // taken, killed, not yet claimed
	_ = dc
	peer.RouteKill(ctxT(t), "cancelled")
	s.SubmitControl(t, []byte(`{"id":"k","type":"kill"}`))
	if c, _ := dead.TakeControl(ctxT(t)); c == nil {
		t.Fatal("no control taken")
	}
	// Alive: a peer must not touch it.
	if r, err := peer.Recover(ctxT(t), "dead"); err != nil || r != (queue.Recovered{}) {
		t.Fatalf("recovered a live executor: %+v, %v", r, err)
	}
	s.Expire(t, "dead")
	r, err := peer.Recover(ctxT(t), "dead")
	if err != nil || r.Lost != 1 || r.Requeued != 3 || r.Controls != 1 {
		t.Fatalf("Recover = %+v, %v; want 1 lost, 3 requeued (taken, unreadable, cancelled), 1 control", r, err)
	}
	if d := s.wantDones("started", 1); len(d) == 1 && (d[0].Status != task.Lost || d[0].Executor != "peer") {
		t.Errorf("lost done %+v", d[0])
	}
	if st, _ := peer.Status(ctxT(t), "started"); st == nil || st.State != task.Lost {
		t.Errorf("status of the started task: %+v", st)
	}
	q := s.Queued(t)
	if len(q) != 3 {
		t.Errorf("task list after recovery = %q, want the 3 unstarted ones", q)
	}
	for _, m := range q {
		if bytes.Equal(m, raw("dup")) || bytes.Equal(m, raw("started")) {
			t.Errorf("recovery requeued %q", m)
		}
	}
	// The cancelled one is still cancelled for whoever takes it.
	for range 3 {
		d := s.take(peer)
		if id, _ := task.PeekID(d.Raw); id == "cancelled" {
			if c := s.claim(peer, d, "cancelled"); c != queue.CancelledWhileQueued {
				t.Errorf("claim of the requeued cancelled task = %v", c)
			}
		}
	}
	if c, _ := other.TakeControl(ctxT(t)); c == nil {
		t.Error("the dead executor's unhandled control was not put back")
	}
	if m, _ := peer.Executors(ctxT(t)); m["dead"] {
		t.Errorf("the dead executor is still registered: %v", m)
	}
	if got := s.taken(dead); len(got) != 0 {
		t.Errorf("the dead executor's Taken after recovery = %q", got)
	}
	if r, _ := other.Recover(ctxT(t), "dead"); r != (queue.Recovered{}) {
		t.Errorf("a second recovery: %+v", r)
	}
	s.wantDones("started", 1)
	s.wantDones("dup", 0)
}

func testRecoveredFenced(t *testing.T, s *suite) {
	paused, peer := s.Broker(t, "paused"), s.Broker(t, "peer")
	join(t, paused)
	s.Submit(t, raw("p1"))
	s.Submit(t, raw("p2"))
	d1, d2 := s.take(paused), s.take(paused)
	s.claim(paused, d1, "p1")
	s.claim(paused, d2, "p2")
	claims := map[string]string{"p1": d1.Token, "p2": d2.Token}
	if own, err := paused.Owned(ctxT(t), claims); err != nil || !own["p1"] || !own["p2"] {
		t.Fatalf("Owned before = %v, %v", own, err)
	}
	if own, err := paused.Owned(ctxT(t), map[string]string{"p1": "another token"}); err != nil || own["p1"] {
		t.Errorf("Owned with a token that is not the claim's = %v, %v", own, err)
	}
	s.Expire(t, "paused")
	if r, err := peer.Recover(ctxT(t), "paused"); err != nil || r.Lost != 2 {
		t.Fatalf("Recover = %+v, %v", r, err)
	}
	if err := paused.Heartbeat(ctxT(t)); !errors.Is(err, queue.ErrLivenessLost) {
		t.Errorf("Heartbeat after the expiry = %v, want ErrLivenessLost", err)
	}
	if own, err := paused.Owned(ctxT(t), claims); err != nil || own["p1"] || own["p2"] {
		t.Errorf("Owned after recovery = %v, %v; want neither", own, err)
	}
	late := line("p1", 9)
	if ok := s.publish(paused, queue.Message{Log: late}, finish(d1, "p1", task.Succeeded)); ok[0] || ok[1] {
		t.Errorf("a fenced executor's line and done applied = %v, want neither", ok)
	}
	for _, m := range s.Published(t) {
		if bytes.Equal(m, late) {
			t.Error("a line of a task reported lost was published after its lost done")
		}
	}
	if r, _ := peer.RouteKill(ctxT(t), "p2"); r.Ended != task.Lost {
		t.Errorf("route of a task reported lost = %+v", r)
	}
	s.wantDones("p1", 1)
	s.wantDones("p2", 1)
}

// The executor's finish and a peer's recovery of it race (it was paused
// past its TTL just as its task ended): exactly one of them publishes.
func testRecoverRacesFinish(t *testing.T, s *suite) {
	const n = 10
	paused, peer := s.Broker(t, "paused"), s.Broker(t, "peer")
	join(t, paused)
	ds := make([]*queue.Delivery, n)
	for i := range n {
		s.Submit(t, raw(fmt.Sprint("r", i)))
	}
	for i := range n {
		ds[i] = s.take(paused)
		s.claim(paused, ds[i], fmt.Sprint("r", i))
	}
	s.Expire(t, "paused")
	var wg sync.WaitGroup
	applied := make([]bool, n)
	for i := range n {
		wg.Go(func() {
			ok, err := paused.Publish(context.Background(), []queue.Message{finish(ds[i], fmt.Sprint("r", i), task.Succeeded)})
			if err != nil {
				t.Error(err)
				return
			}
			applied[i] = ok[0]
		})
	}
	var r queue.Recovered
	wg.Go(func() {
		var err error
		r, err = peer.Recover(context.Background(), "paused")
		if err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
	finished := 0
	for i := range n {
		id := fmt.Sprint("r", i)
		d := s.wantDones(id, 1)
		if len(d) == 1 && (d[0].Status == task.Lost) == applied[i] {
			t.Errorf("%s: finish applied %v, but the done is %s", id, applied[i], d[0].Status)
		}
		if applied[i] {
			finished++
		}
	}
	if finished+r.Lost != n {
		t.Errorf("%d finished + %d lost != %d", finished, r.Lost, n)
	}
	if got := s.taken(paused); len(got) != 0 {
		t.Errorf("Taken after the race = %q", got)
	}
}

func testStatus(t *testing.T, s *suite) {
	a, b := s.Broker(t, "a"), s.Broker(t, "b")
	if st, err := a.Status(ctxT(t), "never"); err != nil || st != nil {
		t.Errorf("status of an unknown id = %+v, %v; want nil, nil", st, err)
	}
	s.Submit(t, raw("s"))
	d := s.take(a)
	s.claim(a, d, "s")
	if st, err := b.Status(ctxT(t), "s"); err != nil || st == nil || st.State != task.Running || st.Executor != "a" || st.ID != "s" {
		t.Errorf("status of a running task = %+v, %v", st, err)
	}
	s.publish(a, finish(d, "s", task.Failed))
	st, err := b.Status(ctxT(t), "s")
	if err != nil || st == nil || st.State != task.Failed {
		t.Errorf("status of an ended task = %+v, %v", st, err)
	}
	if st != nil {
		var l task.Log
		if json.Unmarshal(st.Done, &l) != nil || l.ID != "s" || l.Status != task.Failed {
			t.Errorf("status's done = %q", st.Done)
		}
	}
}
