package kafkaguard

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/taskjob/task-job/signature"
	"github.com/taskjob/task-job/task"
)

// startKafka starts franz-go's in-process broker with a two-partition
// signatures topic, as the Kafka transport creates it.
func startKafka(t *testing.T) (*kfake.Cluster, []kgo.Opt, string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	base := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	cl, err := kgo.NewClient(base...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topic := "q_signatures"
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 2, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	return c, base, topic
}

func newGuard(t *testing.T, base []kgo.Opt, topic string) *Guard {
	t.Helper()
	g, err := New(base, topic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

func TestFirstUse(t *testing.T) {
	t.Parallel()
	_, base, topic := startKafka(t)
	g := newGuard(t, base, topic)
	ctx := context.Background()
	if ok, err := g.FirstUse(ctx, "web", "ab12", time.Minute); err != nil || !ok {
		t.Fatalf("first FirstUse = %v, %v; want true", ok, err)
	}
	if ok, err := g.FirstUse(ctx, "web", "ab12", time.Minute); err != nil || ok {
		t.Fatalf("second FirstUse = %v, %v; want false", ok, err)
	}
	if ok, err := g.FirstUse(ctx, "ci", "ab12", time.Minute); err != nil || !ok {
		t.Fatalf("same mac under another key = %v, %v; want true", ok, err)
	}
	// A use expires: the signature is then new again (by then Verify
	// would call it stale).
	if ok, err := g.FirstUse(ctx, "web", "short", 50*time.Millisecond); err != nil || !ok {
		t.Fatal(ok, err)
	}
	time.Sleep(120 * time.Millisecond)
	if ok, err := g.FirstUse(ctx, "web", "short", 50*time.Millisecond); err != nil || !ok {
		t.Fatalf("FirstUse after expiry = %v, %v; want true", ok, err)
	}
}

// TestSharedByExecutors runs three guards, as three executors on one
// cluster, over a randomized history: every signature used many times, in
// a shuffled order, from all three at once, is a first use exactly once;
// and a guard started afterwards, as a restarted executor, knows them all.
func TestSharedByExecutors(t *testing.T) {
	t.Parallel()
	_, base, topic := startKafka(t)
	guards := []*Guard{newGuard(t, base, topic), newGuard(t, base, topic), newGuard(t, base, topic)}
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, seed))
	t.Logf("seed %d", seed)
	const sigs, uses = 12, 6
	type call struct{ sig, guard int }
	var calls []call
	for s := range sigs {
		for range uses {
			calls = append(calls, call{s, rng.IntN(len(guards))})
		}
	}
	rng.Shuffle(len(calls), func(i, j int) { calls[i], calls[j] = calls[j], calls[i] })
	var first [sigs]atomic.Int32
	var wg sync.WaitGroup
	for i, c := range calls {
		pause := time.Duration(rng.IntN(3000)) * time.Microsecond
		wg.Go(func() {
			time.Sleep(pause)
			ok, err := guards[c.guard].FirstUse(context.Background(), "web", fmt.Sprintf("mac%d", c.sig), time.Minute)
			if err != nil {
				t.Errorf("call %d: %v", i, err)
			}
			if ok {
				first[c.sig].Add(1)
			}
		})
	}
	wg.Wait()
	for s := range sigs {
		if n := first[s].Load(); n != 1 {
			t.Errorf("signature %d, used %d times across 3 guards: %d first uses, want 1 (seed %d)", s, uses, n, seed)
		}
	}
	late := newGuard(t, base, topic)
	for s := range sigs {
		if ok, err := late.FirstUse(context.Background(), "web", fmt.Sprintf("mac%d", s), time.Minute); err != nil || ok {
			t.Errorf("a guard started later, signature %d: %v, %v; want a replay", s, ok, err)
		}
	}
}

// TestVerifiersShareTheGuard checks the guard where the executor uses it:
// behind signature.Verifier, a task accepted by one executor is a replay
// to the other.
func TestVerifiersShareTheGuard(t *testing.T) {
	t.Parallel()
	_, base, topic := startKafka(t)
	keys, err := signature.NewKeyring(map[string][]byte{"web": []byte("0123456789abcdef0123456789abcdef-a")})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clock := func() time.Time { return now }
	a := signature.NewVerifier(keys, signature.Options{Now: clock, Replay: newGuard(t, base, topic)})
	b := signature.NewVerifier(keys, signature.Options{Now: clock, Replay: newGuard(t, base, topic)})
	tk := &task.Task{ID: "id-1", Type: "deploy", Task: task.Spec{Cmdline: "install.sh --env prod"}}
	signature.Sign(tk, "web", []byte("0123456789abcdef0123456789abcdef-a"), now)
	ctx := context.Background()
	if _, err := a.Verify(ctx, tk); err != nil {
		t.Fatalf("executor A, first submission: %v", err)
	}
	if _, err := b.Verify(ctx, tk); !errors.Is(err, signature.ErrReplayed) {
		t.Fatalf("executor B, the same task again = %v, want ErrReplayed", err)
	}
}

// TestProduceCut: a produce that fails on the wire is retried by the
// client, and the retry is still the first use.
func TestProduceCut(t *testing.T) {
	t.Parallel()
	c, base, topic := startKafka(t)
	g := newGuard(t, base, topic)
	var cut atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		cut.Add(1)
		return nil, errors.New("cut"), true
	})
	if ok, err := g.FirstUse(context.Background(), "web", "cut", time.Minute); err != nil || !ok {
		t.Fatalf("FirstUse across a cut produce = %v, %v; want true", ok, err)
	}
	if cut.Load() == 0 {
		t.Fatal("the fault was never injected")
	}
	if ok, err := g.FirstUse(context.Background(), "web", "cut", time.Minute); err != nil || ok {
		t.Fatalf("the same signature again = %v, %v; want false", ok, err)
	}
}

// TestBrokersDown: an unreachable cluster is an error within the guard's
// timeout, not a verdict either way.
func TestBrokersDown(t *testing.T) {
	t.Parallel()
	c, base, topic := startKafka(t)
	g := newGuard(t, base, topic)
	g.timeout = time.Second
	c.Close()
	start := time.Now()
	ok, err := g.FirstUse(context.Background(), "web", "down", time.Minute)
	if err == nil || ok {
		t.Fatalf("FirstUse with the brokers down = %v, %v; want an error", ok, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("FirstUse with the brokers down took %v, want about its 1 s timeout", d)
	}
}

// TestFold checks the rules every reader applies, record by record: the
// first record of a key holds it until it expires by a later record's
// clock, and what is not a guard's record changes nothing.
func TestFold(t *testing.T) {
	g := &Guard{uses: map[string]use{}, next: map[int32]int64{}}
	rec := func(off int64, key, tok string, at, exp int64) {
		g.apply(&kgo.Record{Key: []byte(key), Offset: off,
			Value: fmt.Appendf(nil, `{"token":%q,"t":%d,"expires":%d}`, tok, at, exp)})
	}
	rec(0, "k", "a", 1000, 2000)
	rec(1, "k", "b", 1500, 2500) // within a's use: loses
	if g.uses["k"].token != "a" {
		t.Fatalf("after a later record within the first use: %+v", g.uses["k"])
	}
	rec(2, "k", "c", 2000, 3000) // at a's expiry: takes the key
	if g.uses["k"].token != "c" {
		t.Fatalf("after a record at the expiry: %+v", g.uses["k"])
	}
	g.apply(&kgo.Record{Key: []byte("k"), Offset: 3, Value: []byte("not json")})
	g.apply(&kgo.Record{Key: []byte("k"), Offset: 4, Value: []byte(`{"t":9999}`)})
	if g.uses["k"].token != "c" || g.next[0] != 5 {
		t.Fatalf("foreign records changed the fold: %+v, next %d", g.uses["k"], g.next[0])
	}
	// Pruning forgets only uses long expired by the newest record.
	rec(5, "old", "o", 100, 200)
	rec(6, "new", "n", 200+pruneSlack.Milliseconds()+1, 10*pruneSlack.Milliseconds())
	g.prune()
	if _, ok := g.uses["old"]; ok {
		t.Fatal("a use expired a minute before the newest record was kept")
	}
	if _, ok := g.uses["new"]; !ok {
		t.Fatal("a live use was pruned")
	}
}
