package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Record kinds.
const (
	KindReceived = "received" // a task message was taken from the queue
	KindDecision = "decision" // it was allowed, denied or rejected
	KindStart    = "start"    // its process was started
	KindControl  = "control"  // a control message (kill) arrived for it
	KindEnd      = "end"      // it ended
	KindExecutor = "executor" // executor lifecycle, see the Event* constants
	KindRotate   = "rotate"   // first record of a file started by rotation
)

// Decision values.
const (
	DecisionAllowed  = "allowed"  // a policy rule (Rule) allowed it
	DecisionDenied   = "denied"   // the policy refused it (Reason)
	DecisionRejected = "rejected" // invalid, unsigned, forged, stale, replayed… (Reason)
)

// Events of KindExecutor records.
const (
	EventStarted        = "started"
	EventPolicyReloaded = "policy_reloaded"
	EventStopped        = "stopped"
	// EventRecovered follows a period in which the log could not be written,
	// or a torn last line found at Open; Reason says what happened.
	EventRecovered = "recovered"
)

// Limits are the resource limits a task was started with; zero = none.
type Limits struct {
	MemoryBytes int64   `json:"memory_bytes,omitempty"`
	CPUs        float64 `json:"cpus,omitempty"`
	Pids        int64   `json:"pids,omitempty"`
	TimeoutSec  int64   `json:"timeout_sec,omitempty"`
	Network     bool    `json:"network,omitempty"`
	// CmdDirWritable: the rule let the task write cmd_dir.
	CmdDirWritable bool `json:"cmd_dir_writable,omitempty"`
}

// Record is one audit line. Which optional fields are set depends on Kind.
// Seq, Time, Prev and Hash are assigned by Append (Time only when zero).
//
// The field order here is the member order on disk; Seq must stay first
// and Prev, Hash last (see the package doc).
type Record struct {
	Seq      uint64    `json:"seq,omitempty"`
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"`
	Executor string    `json:"executor,omitempty"`
	ID       string    `json:"id,omitempty"` // task id

	// received
	Digest string `json:"digest,omitempty"` // "sha256:<hex>" of the raw message bytes
	Size   int    `json:"size,omitempty"`   // raw message bytes
	Type   string `json:"type,omitempty"`
	KeyID  string `json:"key_id,omitempty"` // signing key id, when signed

	// decision (Reason also for end, control and executor)
	Decision string `json:"decision,omitempty"`
	Rule     string `json:"rule,omitempty"`
	Reason   string `json:"reason,omitempty"`

	// start
	User   string  `json:"user,omitempty"`
	Limits *Limits `json:"limits,omitempty"`
	Cgroup string  `json:"cgroup,omitempty"`
	PID    int     `json:"pid,omitempty"`

	// control
	Action string `json:"action,omitempty"` // "kill"
	By     string `json:"by,omitempty"`     // who or what asked (key id, "timeout", "shutdown", …)

	// end
	Status          string `json:"status,omitempty"`
	ExitCode        *int   `json:"exit_code,omitempty"` // pointer: 0 is a real exit code
	Signal          string `json:"signal,omitempty"`
	CPUMs           int64  `json:"cpu_ms,omitempty"`
	PeakMemoryBytes int64  `json:"peak_memory_bytes,omitempty"`
	OutputBytes     int64  `json:"output_bytes,omitempty"`

	// executor
	Event        string            `json:"event,omitempty"`
	Config       map[string]string `json:"config,omitempty"` // summary; never secrets
	PolicyDigest string            `json:"policy_digest,omitempty"`
	Version      string            `json:"version,omitempty"`

	// rotate: the file this one continues (base name, same directory)
	PrevFile string `json:"prev_file,omitempty"`

	Prev string `json:"prev,omitempty"`
	Hash string `json:"hash,omitempty"`
}

// DigestOf returns the Digest value for a raw task message.
func DigestOf(raw []byte) string {
	sum := sha256.Sum256(raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// IntPtr is a convenience for Record.ExitCode.
func IntPtr(v int) *int { return &v }

// ZeroHash is the prev of the first record of a log.
const ZeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

const (
	hashPrefix = `,"hash":"`
	// suffixLen is len(`,"hash":"`) + 64 hex digits + len(`"}`).
	suffixLen = len(hashPrefix) + 64 + 2
)

// encodeBody marshals r without seq, prev and hash: the part of the line that
// does not depend on the chain, so it can be built outside the lock.
func encodeBody(r *Record) ([]byte, error) {
	r.Seq, r.Prev, r.Hash = 0, "", ""
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("audit: cannot encode %s record: %w", r.Kind, err)
	}
	// b is {"time":…}: never empty, since time and kind are always present.
	return b, nil
}

// appendLine appends to dst the full line (with '\n') for body at seq
// chained to prev, and returns it with the record's hash.
func appendLine(dst, body []byte, seq uint64, prev string) ([]byte, string) {
	start := len(dst)
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, ',')
	dst = append(dst, body[1:len(body)-1]...)
	dst = append(dst, `,"prev":"`...)
	dst = append(dst, prev...)
	dst = append(dst, `"}`...)
	sum := sha256.Sum256(dst[start:])
	var h [64]byte
	hex.Encode(h[:], sum[:])
	dst = dst[:len(dst)-1] // drop '}' and add the hash member
	dst = append(dst, hashPrefix...)
	dst = append(dst, h[:]...)
	dst = append(dst, "\"}\n"...)
	return dst, string(h[:])
}

// errNoHash marks a line whose ending is not a hash member, which is also
// what a torn (half-written) line looks like.
var errNoHash = errors.New(`does not end with a "hash" member`)

// ParseLine parses one stored line (without its '\n'), checks that its hash
// matches its canonical bytes and returns the record. It never trusts the
// line: hostile input gives an error, never a panic.
func ParseLine(line []byte) (Record, error) {
	var r Record
	if len(line) < suffixLen+2 || line[0] != '{' {
		return r, errNoHash
	}
	suffix := line[len(line)-suffixLen:]
	if !bytes.HasPrefix(suffix, []byte(hashPrefix)) || !bytes.HasSuffix(suffix, []byte(`"}`)) {
		return r, errNoHash
	}
	want := suffix[len(hashPrefix) : len(hashPrefix)+64]
	if !isLowerHex(want) {
		return r, errNoHash
	}
	if err := checkMembers(line); err != nil {
		return r, err
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return r, fmt.Errorf("is not valid JSON: %v", err)
	}
	if r.Hash != string(want) {
		return r, errors.New(`has a "hash" member that is not its last`)
	}
	h := sha256.New()
	h.Write(line[:len(line)-suffixLen])
	h.Write([]byte{'}'})
	var got [64]byte
	hex.Encode(got[:], h.Sum(nil))
	if !bytes.Equal(got[:], want) {
		return r, errHashMismatch
	}
	if r.Seq == 0 {
		return r, errors.New(`has no "seq" (or seq 0)`)
	}
	if len(r.Prev) != 64 || !isLowerHex([]byte(r.Prev)) {
		return r, errors.New(`has no valid "prev"`)
	}
	if r.Kind == "" {
		return r, errors.New(`has no "kind"`)
	}
	return r, nil
}

var errHashMismatch = errors.New("hash does not match its content — the record was edited")

// checkMembers refuses a line whose first member is not "seq" or that
// repeats a member: with duplicates, readers in other languages could see
// different values than this one does.
func checkMembers(line []byte) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return errors.New("is not a JSON object")
	}
	seen := make(map[string]bool, 24)
	first := true
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("is not valid JSON: %v", err)
		}
		key, ok := tok.(string)
		if !ok {
			return errors.New("is not valid JSON: member name expected")
		}
		if first && key != "seq" {
			return errors.New(`does not start with "seq"`)
		}
		first = false
		if seen[key] {
			return fmt.Errorf("repeats the member %q", key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return fmt.Errorf("is not valid JSON: %v", err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("is not valid JSON: %v", err)
	}
	if dec.More() {
		return errors.New("has data after the JSON object")
	}
	if _, err := dec.Token(); err == nil {
		return errors.New("has data after the JSON object")
	}
	return nil
}

func isLowerHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
