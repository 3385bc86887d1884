package signature

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/task"
)

var (
	exampleSecret = []byte("hNq3vYt0Lw8rXc2Pz5KmB7dFg1JsE9aUo4iR6eVbQyM=")
	exampleTS     = int64(1764000000)
)

func exampleTask() *task.Task {
	return &task.Task{ID: "101", Type: "test", Tube: "", Task: task.Spec{
		Cmdline: "install.sh", CmdArgs: []string{"feature/homestead"}, Timeout: 3600}}
}

// TestWorkedExample pins the vector in the package documentation, which
// other languages' signers are checked against.
func TestWorkedExample(t *testing.T) {
	const (
		wantCanonical = "15:task-job-sig-v1\n3:web\n10:1764000000\n3:101\n4:test\n0:\n10:install.sh\n7:3600000\n1:1\n17:feature/homestead\n"
		wantMAC       = "40aa30eaeb2bfd75b2311405160ed21fcf368e23070050cb985c9f65f4f5791e"
		wantJSON      = `{"id":"101","type":"test","tube":"","task":{"cmdline":"install.sh","cmd_args":["feature/homestead"],"timeout":3600},` +
			`"sig":{"key":"web","ts":1764000000,"mac":"40aa30eaeb2bfd75b2311405160ed21fcf368e23070050cb985c9f65f4f5791e"}}`
	)
	tk := exampleTask()
	if got := string(Canonical(tk, "web", exampleTS)); got != wantCanonical {
		t.Fatalf("Canonical =\n%q\nwant\n%q", got, wantCanonical)
	}
	if got := MAC(exampleSecret, tk, "web", exampleTS); got != wantMAC {
		t.Fatalf("MAC = %s, want %s", got, wantMAC)
	}
	Sign(tk, "web", exampleSecret, time.Unix(exampleTS, 0))
	raw, err := json.Marshal(tk)
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) != wantJSON {
		t.Fatalf("signed JSON =\n%s\nwant\n%s", raw, wantJSON)
	}
	// The documented JSON parses and verifies at its own ts.
	parsed, err := task.Parse([]byte(wantJSON), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(mustKeyring(t, map[string][]byte{"web": exampleSecret}),
		Options{Now: func() time.Time { return time.Unix(exampleTS, 0) }})
	if id, err := v.Verify(context.Background(), parsed); err != nil || id != "web" {
		t.Fatalf("Verify(documented task) = %q, %v; want web, nil", id, err)
	}
}

// TestKillWorkedExample pins the README's signed kill.
func TestKillWorkedExample(t *testing.T) {
	const (
		wantCanonical = "16:task-job-kill-v1\n3:web\n10:1764000000\n3:101\n4:kill\n"
		wantMAC       = "67e610334f910fa0319df5ff33124f063b8501c2fd8179d57e649fd881a961b0"
	)
	c := &task.Control{ID: "101", Type: task.ControlKill}
	if got := string(CanonicalKill(c, "web", exampleTS)); got != wantCanonical {
		t.Fatalf("CanonicalKill =\n%q\nwant\n%q", got, wantCanonical)
	}
	if got := KillMAC(exampleSecret, c, "web", exampleTS); got != wantMAC {
		t.Fatalf("KillMAC = %s, want %s", got, wantMAC)
	}
	parsed, err := task.ParseControl([]byte(`{"id":"101","type":"kill","sig":{"key":"web","ts":1764000000,"mac":"` + wantMAC + `"}}`))
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(mustKeyring(t, map[string][]byte{"web": exampleSecret}),
		Options{Now: func() time.Time { return time.Unix(exampleTS, 0) }})
	if id, err := v.VerifyKill(parsed); err != nil || id != "web" {
		t.Fatalf("VerifyKill(documented kill) = %q, %v; want web, nil", id, err)
	}
	// A task's MAC over the same fields never passes for a kill.
	parsed.Sig.MAC = MAC(exampleSecret, exampleTask(), "web", exampleTS)
	if _, err := v.VerifyKill(parsed); err == nil {
		t.Error("a task's MAC passed for a kill")
	}
}

func TestTimeoutMillis(t *testing.T) {
	tests := []struct {
		in   float64
		want int64
	}{
		{0, 0}, {-1, 0}, {math.Inf(-1), 0}, {math.NaN(), 0}, {0.0004, 0},
		{0.0005, 1}, {0.0015, 2}, {1.5, 1500}, {3600, 3600000}, {0.1, 100},
		{math.Inf(1), math.MaxInt64}, {1e300, math.MaxInt64},
		{task.MaxTimeout.Seconds(), task.MaxTimeout.Milliseconds()},
	}
	for _, tt := range tests {
		if got := TimeoutMillis(task.Seconds(tt.in)); got != tt.want {
			t.Errorf("TimeoutMillis(%v) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func mustKeyring(t testing.TB, keys map[string][]byte) *Keyring {
	t.Helper()
	k, err := NewKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var (
	secretA = []byte("0123456789abcdef0123456789abcdef-a")
	secretB = []byte("0123456789abcdef0123456789abcdef-b")
	t0      = time.Unix(1764000000, 0)
)

func testKeyring(t testing.TB) *Keyring {
	return mustKeyring(t, map[string][]byte{"web": secretA, "ci": secretB})
}

// fixedClock returns a clock reading now, movable by the test.
func fixedClock(now time.Time) (func() time.Time, func(time.Time)) {
	return func() time.Time { return now }, func(n time.Time) { now = n }
}

func signedTask(keyID string, secret []byte, at time.Time) *task.Task {
	tk := &task.Task{ID: "id-1", Type: "deploy", Tube: "fast", Task: task.Spec{
		Cmdline: "install.sh --env prod", CmdArgs: []string{"feature/x", "", "two words"}, Timeout: 90.5}}
	Sign(tk, keyID, secret, at)
	return tk
}

func newTestVerifier(t testing.TB) *Verifier {
	now, _ := fixedClock(t0)
	return NewVerifier(testKeyring(t), Options{Now: now, Replay: NewMemoryGuard(100)})
}

func TestVerifyValid(t *testing.T) {
	v := newTestVerifier(t)
	for _, key := range []string{"web", "ci"} {
		secret := secretA
		if key == "ci" {
			secret = secretB
		}
		id, err := v.Verify(context.Background(), signedTask(key, secret, t0))
		if err != nil || id != key {
			t.Errorf("Verify(signed by %s) = %q, %v; want %s, nil", key, id, err, key)
		}
	}
}

// TestVerifyThroughJSON signs, encodes, parses and verifies, as a client
// and the executor do.
func TestVerifyThroughJSON(t *testing.T) {
	v := newTestVerifier(t)
	raw, err := json.Marshal(signedTask("web", secretA, t0))
	if err != nil {
		t.Fatal(err)
	}
	tk, err := task.Parse(raw, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), tk); err != nil {
		t.Fatalf("Verify after a JSON round trip: %v", err)
	}
}

// TestVerifyForged changes one byte of each covered field in turn.
func TestVerifyForged(t *testing.T) {
	flip := func(s string) string {
		if s == "" {
			return "x"
		}
		b := []byte(s)
		b[len(b)-1] ^= 1
		return string(b)
	}
	tests := []struct {
		name   string
		change func(tk *task.Task)
	}{
		{"id", func(tk *task.Task) { tk.ID = flip(tk.ID) }},
		{"type", func(tk *task.Task) { tk.Type = flip(tk.Type) }},
		{"tube", func(tk *task.Task) { tk.Tube = flip(tk.Tube) }},
		{"tube emptied", func(tk *task.Task) { tk.Tube = "" }},
		{"cmdline", func(tk *task.Task) { tk.Task.Cmdline = flip(tk.Task.Cmdline) }},
		{"cmdline first byte", func(tk *task.Task) { tk.Task.Cmdline = "J" + tk.Task.Cmdline[1:] }},
		{"arg 0", func(tk *task.Task) { tk.Task.CmdArgs[0] = flip(tk.Task.CmdArgs[0]) }},
		{"arg 1 (empty)", func(tk *task.Task) { tk.Task.CmdArgs[1] = flip(tk.Task.CmdArgs[1]) }},
		{"arg 2", func(tk *task.Task) { tk.Task.CmdArgs[2] = flip(tk.Task.CmdArgs[2]) }},
		{"arg appended", func(tk *task.Task) { tk.Task.CmdArgs = append(tk.Task.CmdArgs, "") }},
		{"arg dropped", func(tk *task.Task) { tk.Task.CmdArgs = tk.Task.CmdArgs[:2] }},
		{"args joined", func(tk *task.Task) { tk.Task.CmdArgs = []string{"feature/x", " two words"} }},
		{"arg moved into cmdline", func(tk *task.Task) {
			tk.Task.Cmdline += " feature/x"
			tk.Task.CmdArgs = tk.Task.CmdArgs[1:]
		}},
		{"timeout", func(tk *task.Task) { tk.Task.Timeout = 90.501 }},
		{"timeout removed", func(tk *task.Task) { tk.Task.Timeout = 0 }},
		{"ts", func(tk *task.Task) { tk.Sig.TS++ }},
		{"key id", func(tk *task.Task) { tk.Sig.Key = "ci" }},
		{"mac", func(tk *task.Task) {
			b := []byte(tk.Sig.MAC)
			b[10] = map[bool]byte{true: '0', false: '1'}[b[10] != '0']
			tk.Sig.MAC = string(b)
		}},
		{"mac not hex", func(tk *task.Task) { tk.Sig.MAC = strings.Repeat("g", 64) }},
		{"mac short", func(tk *task.Task) { tk.Sig.MAC = tk.Sig.MAC[:62] }},
		{"mac empty", func(tk *task.Task) { tk.Sig.MAC = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVerifier(t)
			tk := signedTask("web", secretA, t0)
			tt.change(tk)
			_, err := v.Verify(context.Background(), tk)
			if !errors.Is(err, ErrForged) {
				t.Fatalf("Verify after changing %s = %v, want ErrForged", tt.name, err)
			}
			if !strings.HasPrefix(err.Error(), "signature: ") {
				t.Errorf("error %q does not start with \"signature: \"", err)
			}
		})
	}
	// Signed with the other key's secret but naming this key.
	v := newTestVerifier(t)
	if _, err := v.Verify(context.Background(), signedTask("web", secretB, t0)); !errors.Is(err, ErrForged) {
		t.Fatalf("Verify(signed with the wrong secret) = %v, want ErrForged", err)
	}
}

func TestVerifyStale(t *testing.T) {
	const w = 5 * time.Minute
	tests := []struct {
		name   string
		signed time.Time // executor clock is t0
		want   error
		words  string
	}{
		{"now", t0, nil, ""},
		{"just inside past", t0.Add(-w), nil, ""},
		{"just inside future", t0.Add(w), nil, ""},
		{"past beyond", t0.Add(-w - time.Second), ErrStale, "signed 5m1s ago; the window is ±5m0s"},
		{"future beyond", t0.Add(w + time.Second), ErrStale, "signed 5m1s in the future; the window is ±5m0s"},
		{"far past", t0.Add(-30 * 24 * time.Hour), ErrStale, "signed 720h0m0s ago"},
		{"epoch", time.Unix(0, 0), ErrStale, "ago"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVerifier(t)
			_, err := v.Verify(context.Background(), signedTask("web", secretA, tt.signed))
			if !errors.Is(err, tt.want) || err != nil && !strings.Contains(err.Error(), tt.words) {
				t.Fatalf("Verify(signed at now%+v) = %v, want %v with %q", tt.signed.Sub(t0), err, tt.want, tt.words)
			}
		})
	}
	// The window is the executor's clock's: a task that waited in the queue
	// past it is refused.
	now, set := fixedClock(t0)
	v := NewVerifier(testKeyring(t), Options{Now: now, Window: time.Minute})
	tk := signedTask("web", secretA, t0)
	set(t0.Add(time.Minute + time.Second))
	if _, err := v.Verify(context.Background(), tk); !errors.Is(err, ErrStale) || !strings.Contains(err.Error(), "±1m0s") {
		t.Fatalf("Verify with a 1m window, 61s late = %v, want ErrStale naming the window", err)
	}
}

// TestVerifyExtremeTS checks that a ts near the int64 limits is stale, not
// an overflow that lands inside the window.
func TestVerifyExtremeTS(t *testing.T) {
	for _, ts := range []int64{math.MaxInt64, math.MinInt64, math.MaxInt64 - 62135596800 + 1764000000} {
		v := newTestVerifier(t)
		tk := signedTask("web", secretA, t0)
		tk.Sig.TS = ts
		tk.Sig.MAC = MAC(secretA, tk, "web", ts)
		if _, err := v.Verify(context.Background(), tk); !errors.Is(err, ErrStale) {
			t.Errorf("Verify(ts %d) = %v, want ErrStale", ts, err)
		}
	}
}

func TestVerifyReplayedMemory(t *testing.T) {
	v := newTestVerifier(t)
	ctx := context.Background()
	tk := signedTask("web", secretA, t0)
	if _, err := v.Verify(ctx, tk); err != nil {
		t.Fatal(err)
	}
	_, err := v.Verify(ctx, tk)
	if !errors.Is(err, ErrReplayed) {
		t.Fatalf("second Verify = %v, want ErrReplayed", err)
	}
	// The same MAC in upper case decodes to the same bytes: still a replay.
	up := *tk
	sig := *tk.Sig
	sig.MAC = strings.ToUpper(sig.MAC)
	up.Sig = &sig
	if _, err := v.Verify(ctx, &up); !errors.Is(err, ErrReplayed) {
		t.Fatalf("Verify(same mac in upper case) = %v, want ErrReplayed", err)
	}
	// A fresh signature of the same task is a new submission.
	tk2 := signedTask("web", secretA, t0.Add(time.Second))
	if _, err := v.Verify(ctx, tk2); err != nil {
		t.Fatalf("Verify(re-signed a second later) = %v", err)
	}
}

// TestReplayOnlyAfterMAC checks that forged tasks take no room in the
// replay memory.
func TestReplayOnlyAfterMAC(t *testing.T) {
	g := NewMemoryGuard(1)
	now, _ := fixedClock(t0)
	v := NewVerifier(testKeyring(t), Options{Now: now, Replay: g})
	for i := range 10 {
		tk := signedTask("web", secretA, t0)
		tk.ID = strings.Repeat("z", i+1) // breaks the mac
		if _, err := v.Verify(context.Background(), tk); !errors.Is(err, ErrForged) {
			t.Fatal(err)
		}
		stale := signedTask("web", secretA, t0.Add(-time.Hour))
		if _, err := v.Verify(context.Background(), stale); !errors.Is(err, ErrStale) {
			t.Fatal(err)
		}
	}
	if g.Len() != 0 {
		t.Fatalf("replay memory holds %d entries after only forged and stale tasks", g.Len())
	}
	if _, err := v.Verify(context.Background(), signedTask("web", secretA, t0)); err != nil {
		t.Fatalf("Verify(genuine) after forgeries = %v", err)
	}
}

func TestVerifyUnknownKey(t *testing.T) {
	v := newTestVerifier(t)
	_, err := v.Verify(context.Background(), signedTask("nobody", secretA, t0))
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), `"nobody"`) {
		t.Fatalf("Verify(unknown key) = %v, want ErrUnknownKey naming it", err)
	}
}

func TestVerifyUnsigned(t *testing.T) {
	v := newTestVerifier(t)
	tk := signedTask("web", secretA, t0)
	tk.Sig = nil
	if _, err := v.Verify(context.Background(), tk); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("Verify(unsigned) = %v, want ErrUnsigned", err)
	}
}

// failingGuard reports an error, as a Redis guard does when Redis is down.
type failingGuard struct{}

func (failingGuard) FirstUse(context.Context, string, string, time.Duration) (bool, error) {
	return false, errors.New("connection refused")
}

func TestVerifyFailsClosed(t *testing.T) {
	now, _ := fixedClock(t0)
	v := NewVerifier(testKeyring(t), Options{Now: now, Replay: failingGuard{}})
	_, err := v.Verify(context.Background(), signedTask("web", secretA, t0))
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Verify with a failing replay guard = %v, want the guard's error", err)
	}
	for _, s := range []error{ErrUnsigned, ErrUnknownKey, ErrForged, ErrStale, ErrReplayed} {
		if errors.Is(err, s) {
			t.Errorf("a guard failure is reported as %v", s)
		}
	}
}

// TestReplayTTL checks the memory outlives every moment the signature is
// accepted: 2×Window, plus the margin.
func TestReplayTTL(t *testing.T) {
	var got time.Duration
	g := guardFunc(func(_ context.Context, _, _ string, ttl time.Duration) (bool, error) {
		got = ttl
		return true, nil
	})
	now, _ := fixedClock(t0)
	v := NewVerifier(testKeyring(t), Options{Now: now, Replay: g, Window: 2 * time.Minute})
	if _, err := v.Verify(context.Background(), signedTask("web", secretA, t0)); err != nil {
		t.Fatal(err)
	}
	if got < 4*time.Minute {
		t.Fatalf("replay ttl %v, want at least 2×window = 4m", got)
	}
}

type guardFunc func(ctx context.Context, keyID, mac string, ttl time.Duration) (bool, error)

func (f guardFunc) FirstUse(ctx context.Context, keyID, mac string, ttl time.Duration) (bool, error) {
	return f(ctx, keyID, mac, ttl)
}

// TestReplayAcrossWholeWindow signs at the far past edge and replays at
// the far future edge of acceptance.
func TestReplayAcrossWholeWindow(t *testing.T) {
	const w = 5 * time.Minute
	now, set := fixedClock(t0)
	g := NewMemoryGuard(10)
	g.now = now
	v := NewVerifier(testKeyring(t), Options{Now: now, Replay: g, Window: w})
	tk := signedTask("web", secretA, t0.Add(w)) // from a fast clock
	if _, err := v.Verify(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	set(t0.Add(2 * w))
	if _, err := v.Verify(context.Background(), tk); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replay 2×window later = %v, want ErrReplayed", err)
	}
}

func TestMemoryGuard(t *testing.T) {
	ctx := context.Background()
	now, set := fixedClock(t0)
	g := NewMemoryGuard(2)
	g.now = now
	first := func(key, mac string, ttl time.Duration) bool {
		t.Helper()
		ok, err := g.FirstUse(ctx, key, mac, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !first("a", "m1", time.Minute) || first("a", "m1", time.Minute) {
		t.Fatal("a/m1: want first use, then a repeat")
	}
	if !first("b", "m1", 10*time.Second) {
		t.Fatal("b/m1 is another key's mac: want first use")
	}
	// Full, nothing expired: refuse rather than forget.
	if _, err := g.FirstUse(ctx, "a", "m2", time.Minute); err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("FirstUse on a full guard = %v, want a 'full' error", err)
	}
	set(t0.Add(10 * time.Second)) // b/m1 expires; a/m1 does not
	if !first("a", "m2", time.Minute) {
		t.Fatal("a/m2 after b/m1 expired: want first use")
	}
	if first("a", "m1", time.Minute) {
		t.Fatal("a/m1 within its ttl: want a repeat")
	}
	set(t0.Add(2 * time.Minute))
	if !first("a", "m1", time.Minute) || g.Len() != 1 {
		t.Fatalf("a/m1 after its ttl: want first use and one entry, have %d", g.Len())
	}
}

func TestCheckRetention(t *testing.T) {
	if err := CheckRetention(5*time.Minute, 24*time.Hour); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if err := CheckRetention(0, 10*time.Minute); err != nil {
		t.Fatalf("default window, 10m retention: %v", err)
	}
	err := CheckRetention(time.Hour, 90*time.Minute)
	if err == nil || !strings.Contains(err.Error(), "at most 45m0s") {
		t.Fatalf("1h window, 90m retention = %v, want an error suggesting 45m", err)
	}
}

func TestNewKeyring(t *testing.T) {
	if _, err := NewKeyring(map[string][]byte{"web": []byte("short")}); err == nil || !strings.Contains(err.Error(), "minimum of 32") {
		t.Fatalf("short secret: %v", err)
	}
	if _, err := NewKeyring(map[string][]byte{"we b": secretA}); err == nil || !strings.Contains(err.Error(), "not valid") {
		t.Fatalf("bad id: %v", err)
	}
	src := map[string][]byte{"web": append([]byte(nil), secretA...)}
	k := mustKeyring(t, src)
	src["web"][0] ^= 1 // the keyring holds its own copy
	v := NewVerifier(k, Options{Now: func() time.Time { return t0 }})
	if _, err := v.Verify(context.Background(), signedTask("web", secretA, t0)); err != nil {
		t.Fatalf("Verify after the caller changed its map: %v", err)
	}
	if got := mustKeyring(t, map[string][]byte{"web": secretA, "ci": secretB}).IDs(); strings.Join(got, ",") != "ci,web" {
		t.Fatalf("IDs() = %v", got)
	}
}
