package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strconv"
	"time"

	"github.com/taskjob/task-job/task"
)

// Version is the first field of every canonical form. A later change to
// what is signed gets a new label, so old and new MACs can never collide.
const Version = "task-job-sig-v1"

// TimeoutMillis is the timeout as the signature covers it: seconds×1000
// computed in IEEE-754 double precision, rounded to the nearest integer
// with ties away from zero; 0 when that is not positive (or is NaN), and
// capped at the largest int64. An executor that runs a signed task should
// use this value (time.Duration(ms)*time.Millisecond), so that what runs is
// exactly what was signed rather than a sub-millisecond neighbour of it.
func TimeoutMillis(s task.Seconds) int64 {
	ms := math.Round(float64(s) * 1000)
	switch {
	case !(ms > 0): // also NaN
		return 0
	case ms >= math.MaxInt64: // 2^63 as a float; no valid task comes near
		return math.MaxInt64
	}
	return int64(ms)
}

// Canonical returns the bytes a signature covers: a sequence of fields,
// each "<decimal byte length>:<bytes>\n", in the order given in the package
// documentation. The length prefixes make the encoding injective whatever
// bytes the fields hold, so no two different tasks share a canonical form
// (timeouts are compared to the millisecond).
func Canonical(t *task.Task, keyID string, ts int64) []byte {
	var num [20]byte
	tsStr := strconv.AppendInt(num[:0], ts, 10)
	ms := strconv.AppendInt(nil, TimeoutMillis(t.Task.Timeout), 10)
	nargs := strconv.AppendInt(nil, int64(len(t.Task.CmdArgs)), 10)

	size := 0
	add := func(n int) { size += digits(n) + 1 + n + 1 }
	add(len(Version))
	add(len(keyID))
	add(len(tsStr))
	add(len(t.ID))
	add(len(t.Type))
	add(len(t.Tube))
	add(len(t.Task.Cmdline))
	add(len(ms))
	add(len(nargs))
	for _, a := range t.Task.CmdArgs {
		add(len(a))
	}

	b := make([]byte, 0, size)
	b = appendField(b, Version)
	b = appendField(b, keyID)
	b = appendField(b, string(tsStr))
	b = appendField(b, t.ID)
	b = appendField(b, t.Type)
	b = appendField(b, t.Tube)
	b = appendField(b, t.Task.Cmdline)
	b = appendField(b, string(ms))
	b = appendField(b, string(nargs))
	for _, a := range t.Task.CmdArgs {
		b = appendField(b, a)
	}
	return b
}

// digits is the length of n in decimal, n >= 0.
func digits(n int) int {
	d := 1
	for ; n >= 10; n /= 10 {
		d++
	}
	return d
}

func appendField(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	b = append(b, s...)
	return append(b, '\n')
}

// MAC returns the lowercase hex HMAC-SHA256 of t's canonical form under
// secret, as it goes in the "mac" field.
func MAC(secret []byte, t *task.Task, keyID string, ts int64) string {
	return hex.EncodeToString(rawMAC(secret, t, keyID, ts))
}

func rawMAC(secret []byte, t *task.Task, keyID string, ts int64) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(Canonical(t, keyID, ts))
	return m.Sum(nil)
}

// Sign sets t.Sig to a signature by keyID made at now. Sign last, after
// every change to t: the signature covers every field.
func Sign(t *task.Task, keyID string, secret []byte, now time.Time) {
	ts := now.Unix()
	t.Sig = &task.Signature{Key: keyID, TS: ts, MAC: MAC(secret, t, keyID, ts)}
}

// KillVersion is the first field of a kill's canonical form. It differs
// from Version, so no kill's MAC can ever pass for a task's or the reverse.
const KillVersion = "task-job-kill-v1"

// CanonicalKill returns the bytes a kill's signature covers, in the same
// encoding as Canonical: KillVersion, the key id, ts, the id of the task to
// kill, and the control type ("kill").
func CanonicalKill(c *task.Control, keyID string, ts int64) []byte {
	var num [20]byte
	tsStr := strconv.AppendInt(num[:0], ts, 10)
	b := make([]byte, 0, 64+len(keyID)+len(c.ID)+len(c.Type))
	b = appendField(b, KillVersion)
	b = appendField(b, keyID)
	b = appendField(b, string(tsStr))
	b = appendField(b, c.ID)
	b = appendField(b, c.Type)
	return b
}

// KillMAC returns the lowercase hex HMAC-SHA256 of c's canonical form.
func KillMAC(secret []byte, c *task.Control, keyID string, ts int64) string {
	return hex.EncodeToString(rawKillMAC(secret, c, keyID, ts))
}

func rawKillMAC(secret []byte, c *task.Control, keyID string, ts int64) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(CanonicalKill(c, keyID, ts))
	return m.Sum(nil)
}

// SignKill sets c.Sig to a signature by keyID made at now.
func SignKill(c *task.Control, keyID string, secret []byte, now time.Time) {
	ts := now.Unix()
	c.Sig = &task.Signature{Key: keyID, TS: ts, MAC: KillMAC(secret, c, keyID, ts)}
}
