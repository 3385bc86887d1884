package signature

import (
	"context"
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/taskjob/task-job/task"
)

// DefaultWindow is the accepted clock skew, both ways, when
// Options.Window is not set.
const DefaultWindow = 5 * time.Minute

// replayMargin is added to 2×Window when remembering a MAC, to cover
// clock differences between executors that share one ReplayGuard.
const replayMargin = time.Minute

// Errors returned by Verify; test with errors.Is. The returned error adds
// the particulars after the sentinel's text.
var (
	ErrUnsigned   = errors.New("signature: not signed")
	ErrUnknownKey = errors.New("signature: unknown key")
	ErrForged     = errors.New("signature: mac does not match the task (altered in transit, or signed with another secret)")
	ErrStale      = errors.New("signature: timestamp outside the accepted window")
	ErrReplayed   = errors.New("signature: replayed: this signed task was already accepted")
)

// ReplayGuard remembers which signatures were accepted. FirstUse records
// (keyID, mac) for at least ttl and reports whether it was new. An error
// means it could not tell; Verify then refuses the task (fails closed).
type ReplayGuard interface {
	FirstUse(ctx context.Context, keyID, mac string, ttl time.Duration) (bool, error)
}

// Options tunes a Verifier.
type Options struct {
	// Window is how far a signature's ts may be from the executor's clock,
	// in the past or the future; DefaultWindow when zero or negative. It
	// must be at most half of status_retention (see CheckRetention).
	Window time.Duration
	// Replay remembers accepted signatures. Nil means a MemoryGuard of
	// DefaultMemoryEntries, which protects one executor only: with several
	// executors on one Redis, pass a redisguard.Guard.
	Replay ReplayGuard
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Verifier checks signed tasks against a keyring. It is safe for
// concurrent use.
type Verifier struct {
	keys   *Keyring
	window time.Duration
	replay ReplayGuard
	now    func() time.Time
}

// NewVerifier returns a Verifier for the keys in k.
func NewVerifier(k *Keyring, opts Options) *Verifier {
	v := &Verifier{keys: k, window: opts.Window, replay: opts.Replay, now: opts.Now}
	if v.window <= 0 {
		v.window = DefaultWindow
	}
	if v.replay == nil {
		v.replay = NewMemoryGuard(DefaultMemoryEntries)
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v
}

// Window returns the accepted clock skew.
func (v *Verifier) Window() time.Duration { return v.window }

// Verify checks t's signature and returns the key id that signed it: it
// is Authenticate, then Remember.
//
// The checks run in this order: signed at all, known key, MAC, window,
// replay. The MAC comes before the window so that a stale verdict is about
// a genuine task (a clock to fix), not about junk; the replay check comes
// last so that only genuine tasks take room in the replay memory.
func (v *Verifier) Verify(ctx context.Context, t *task.Task) (keyID string, err error) {
	keyID, err = v.Authenticate(t)
	if err != nil {
		return "", err
	}
	if err := v.Remember(ctx, t); err != nil {
		return "", err
	}
	return keyID, nil
}

// Authenticate is Verify without the replay check, which has a side
// effect: it tells whether t is what a key holder signed, and changes
// nothing. An executor authenticates a task before it claims the task's
// id, so that no message a key holder did not sign can reserve an id, and
// remembers it after.
//
// An ErrStale error is about a genuine task (the MAC matched first); every
// other error means t's content is not vouched for by any key.
func (v *Verifier) Authenticate(t *task.Task) (keyID string, err error) {
	sig := t.Sig
	if sig == nil {
		return "", ErrUnsigned
	}
	secret, ok := v.keys.secret(sig.Key)
	if !ok {
		return "", fmt.Errorf("%w %q", ErrUnknownKey, sig.Key)
	}
	if err := v.check(sig, rawMAC(secret, t, sig.Key, sig.TS)); err != nil {
		return "", err
	}
	return sig.Key, nil
}

// check compares sig with the MAC it should carry, then its time.
func (v *Verifier) check(sig *task.Signature, want []byte) error {
	var got [32]byte
	if len(sig.MAC) != 2*len(got) {
		return fmt.Errorf("%w: mac is %d characters, not 64 hex digits", ErrForged, len(sig.MAC))
	}
	if _, err := hex.Decode(got[:], []byte(sig.MAC)); err != nil || !hmac.Equal(got[:], want) {
		return fmt.Errorf("%w (key %q)", ErrForged, sig.Key)
	}
	now := v.now()
	if !within(now, sig.TS, v.window) {
		return fmt.Errorf("%w: %s; the window is ±%v (check the signer's clock)", ErrStale, skew(now, sig.TS), v.window)
	}
	return nil
}

// Remember records an authenticated task's signature in the replay memory
// and refuses it (ErrReplayed) if it was there already.
func (v *Verifier) Remember(ctx context.Context, t *task.Task) error {
	sig := t.Sig
	if sig == nil {
		return ErrUnsigned
	}
	secret, ok := v.keys.secret(sig.Key)
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownKey, sig.Key)
	}
	// The replay memory is keyed on the MAC computed here, in lowercase
	// hex, so that the same MAC spelt in another case is still a replay.
	want := rawMAC(secret, t, sig.Key, sig.TS)
	first, err := v.replay.FirstUse(ctx, sig.Key, hex.EncodeToString(want), 2*v.window+replayMargin)
	if err != nil {
		return fmt.Errorf("signature: replay check failed, task refused: %w", err)
	}
	if !first {
		return fmt.Errorf("%w (key %q, ts %d)", ErrReplayed, sig.Key, sig.TS)
	}
	return nil
}

// VerifyKill checks a kill's signature (see CanonicalKill) and returns the
// key id that signed it. Kills have no replay memory: a kill names one
// task id, ids are never reused within status_retention, and a kill sent
// twice does what it did once; after the window a replay is stale.
func (v *Verifier) VerifyKill(c *task.Control) (keyID string, err error) {
	sig := c.Sig
	if sig == nil {
		return "", ErrUnsigned
	}
	secret, ok := v.keys.secret(sig.Key)
	if !ok {
		return "", fmt.Errorf("%w %q", ErrUnknownKey, sig.Key)
	}
	if err := v.check(sig, rawKillMAC(secret, c, sig.Key, sig.TS)); err != nil {
		return "", err
	}
	return sig.Key, nil
}

// within reports whether ts is at most w from now, either way. Whole
// seconds are compared first so that a ts near the int64 limits cannot
// overflow the arithmetic.
func within(now time.Time, ts int64, w time.Duration) bool {
	sec := int64(w/time.Second) + 1
	if ts < now.Unix()-sec || ts > now.Unix()+sec {
		return false
	}
	d := now.Sub(time.Unix(ts, 0))
	return d <= w && d >= -w
}

// skew says in words how far ts is from now.
func skew(now time.Time, ts int64) string {
	const century = 100 * 365 * 24 * time.Hour
	if !within(now, ts, century) {
		return fmt.Sprintf("signed at ts %d, over a century away", ts)
	}
	if d := now.Sub(time.Unix(ts, 0)); d >= 0 {
		return fmt.Sprintf("signed %v ago", d.Truncate(time.Second))
	} else {
		return fmt.Sprintf("signed %v in the future", (-d).Truncate(time.Second))
	}
}

// CheckRetention reports whether window suits an executor that keeps
// ended tasks' ids for retention (status_retention). A signature is
// accepted for 2×window in all (window either side of its ts); within that
// span the executor's id check should catch a replay on its own as well,
// should the replay memory be lost (a Redis flush, a restarted executor
// with a MemoryGuard). After it the replay is stale anyway.
func CheckRetention(window, retention time.Duration) error {
	if window <= 0 {
		window = DefaultWindow
	}
	if 2*window > retention {
		return fmt.Errorf("signature: window ±%v accepts a signature for %v, longer than status_retention %v; use a window of at most %v",
			window, 2*window, retention, retention/2)
	}
	return nil
}
