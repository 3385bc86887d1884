package redisguard

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskjob/task-job/signature"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/redisserver"
)

func TestRedisGuard(t *testing.T) {
	t.Parallel()
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	g := New(rdb, "Q")

	ok, err := g.FirstUse(ctx, "web", "ab12", 2*time.Second)
	if err != nil || !ok {
		t.Fatalf("first FirstUse = %v, %v; want true", ok, err)
	}
	if ok, err := g.FirstUse(ctx, "web", "ab12", 2*time.Second); err != nil || ok {
		t.Fatalf("second FirstUse = %v, %v; want false", ok, err)
	}
	if ok, err := g.FirstUse(ctx, "ci", "ab12", 2*time.Second); err != nil || !ok {
		t.Fatalf("same mac under another key = %v, %v; want true", ok, err)
	}
	key := g.Key("web", "ab12")
	if key != "Q:sig:web:ab12" {
		t.Fatalf("Key = %q", key)
	}
	pttl, err := rdb.PTTL(ctx, key).Result()
	if err != nil || pttl <= 0 || pttl > 2*time.Second {
		t.Fatalf("PTTL %s = %v, %v; want within (0, 2s]", key, pttl, err)
	}

	// The key expires: the signature is then new again (by then Verify
	// would call it stale).
	if ok, err := g.FirstUse(ctx, "web", "short", 50*time.Millisecond); err != nil || !ok {
		t.Fatal(ok, err)
	}
	time.Sleep(120 * time.Millisecond)
	if ok, err := g.FirstUse(ctx, "web", "short", 50*time.Millisecond); err != nil || !ok {
		t.Fatalf("FirstUse after expiry = %v, %v; want true", ok, err)
	}
}

// TestRedisGuardDown checks an unreachable Redis is an error, not a
// verdict either way.
func TestRedisGuardDown(t *testing.T) {
	t.Parallel()
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	srv.Stop(t)
	now, _ := fixedClock(t0)
	v := NewVerifier(testKeyring(t), Options{Now: now, Replay: New(rdb, "Q")})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := v.Verify(ctx, signedTask("web", secretA, t0))
	if err == nil || errors.Is(err, ErrReplayed) {
		t.Fatalf("Verify with Redis down = %v, want a replay-check error", err)
	}
}

// TestRedisGuardSharedByExecutors runs two Verifiers, as two executors on
// one Redis, and replays each one's task to the other.
func TestRedisGuardSharedByExecutors(t *testing.T) {
	t.Parallel()
	srv := redisserver.Start(t)
	ctx := context.Background()
	now, _ := fixedClock(t0)
	// Each executor has its own connection.
	a := NewVerifier(testKeyring(t), Options{Now: now, Replay: New(srv.Client(t), "Q")})
	b := NewVerifier(testKeyring(t), Options{Now: now, Replay: New(srv.Client(t), "Q")})

	t1 := signedTask("web", secretA, t0)
	if _, err := a.Verify(ctx, t1); err != nil {
		t.Fatalf("executor A, first submission: %v", err)
	}
	if _, err := b.Verify(ctx, t1); !errors.Is(err, ErrReplayed) {
		t.Fatalf("executor B, replay of A's task = %v, want ErrReplayed", err)
	}
	t2 := signedTask("ci", secretB, t0)
	if _, err := b.Verify(ctx, t2); err != nil {
		t.Fatalf("executor B, first submission: %v", err)
	}
	if _, err := a.Verify(ctx, t2); !errors.Is(err, ErrReplayed) {
		t.Fatalf("executor A, replay of B's task = %v, want ErrReplayed", err)
	}

	// Racing: the same task pushed many times and taken by both at once
	// is accepted exactly once.
	t3 := signedTask("web", secretA, t0.Add(time.Second))
	var accepted atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		v := a
		if i%2 == 1 {
			v = b
		}
		wg.Go(func() {
			_, err := v.Verify(ctx, t3)
			switch {
			case err == nil:
				accepted.Add(1)
			case !errors.Is(err, ErrReplayed):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := accepted.Load(); n != 1 {
		t.Fatalf("20 concurrent submissions of one signed task: %d accepted, want 1", n)
	}

	// A deployment with another prefix keeps its own memory.
	c := NewVerifier(testKeyring(t), Options{Now: now, Replay: New(srv.Client(t), "other")})
	if _, err := c.Verify(ctx, t1); err != nil {
		t.Fatalf("verifier with another prefix: %v", err)
	}
}

// TestRedisGuardRetry checks that a call finding its own token (its first
// attempt succeeded but the reply was lost) still counts as a first use,
// while another call's token is a replay.
func TestRedisGuardRetry(t *testing.T) {
	t.Parallel()
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	key := []string{"Q:sig:web:ff"}
	run := func(tok string) int {
		t.Helper()
		n, err := firstUseScript.Run(ctx, rdb, key, tok, 60000).Int()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	first, retried, other := run("t1"), run("t1"), run("t2")
	if first != 1 || retried != 1 || other != 0 {
		t.Fatalf("got %d, %d, %d: want 1 for the setter, 1 for its retry, 0 for another call", first, retried, other)
	}
}

// What the tests share with the signature package's own, through its API.
type (
	Options  = signature.Options
	Verifier = signature.Verifier
)

var (
	NewVerifier = signature.NewVerifier
	Sign        = signature.Sign
	t0          = time.Unix(1764000000, 0)
	secretA     = []byte("0123456789abcdef0123456789abcdef-a")
	secretB     = []byte("0123456789abcdef0123456789abcdef-b")
)

func testKeyring(t testing.TB) *signature.Keyring {
	k, err := signature.NewKeyring(map[string][]byte{"web": secretA, "ci": secretB})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fixedClock returns a clock reading now, movable by the test.
func fixedClock(now time.Time) (func() time.Time, func(time.Time)) {
	return func() time.Time { return now }, func(n time.Time) { now = n }
}

var ErrReplayed = signature.ErrReplayed

func signedTask(keyID string, secret []byte, at time.Time) *task.Task {
	tk := &task.Task{ID: "id-1", Type: "deploy", Tube: "fast", Task: task.Spec{
		Cmdline: "install.sh --env prod", CmdArgs: []string{"feature/x", "", "two words"}, Timeout: 90.5}}
	Sign(tk, keyID, secret, at)
	return tk
}
