package task

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on the fields of a task. They keep hostile input from costing more
// than a small, known amount; each error message names the limit.
const (
	MaxIDBytes   = 256
	MaxTypeBytes = 256
	MaxTubeBytes = 128
	// MaxConstraints, MaxConstraintKeyBytes and MaxConstraintValueBytes
	// match what an executor may declare as labels (config's labels).
	MaxConstraints          = 64
	MaxConstraintKeyBytes   = 63
	MaxConstraintValueBytes = 256
	MaxCmdlineBytes         = 64 << 10
	MaxArgs                 = 4096
	MaxArgsBytes            = 1 << 20
	// MaxTimeout is ten years: anything longer is a typo, not a wish.
	MaxTimeout = 10 * 365 * 24 * time.Hour
)

// ErrInvalid is wrapped by every error about a malformed task or control
// message, so callers can tell bad input from transport trouble.
var ErrInvalid = errors.New("task: invalid")

// InvalidError explains why a message was not accepted, in words meant for
// the person who sent it.
type InvalidError struct{ Reason string }

func (e *InvalidError) Error() string { return "task: " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Unwrap() error { return ErrInvalid }

func invalid(format string, args ...any) error {
	return &InvalidError{Reason: fmt.Sprintf(format, args...)}
}

// Task is what a client submits with one RPUSH, byte-compatible with the
// original tool:
//
//	{"id":"101","type":"test","tube":"","task":{"cmdline":"install.sh","cmd_args":["x"],"timeout":3600}}
type Task struct {
	// ID is the client's globally unique message id; results are keyed by it.
	ID string `json:"id"`
	// Type is free text, echoed back in every TaskLog message.
	Type string `json:"type"`
	// Tube is an optional routing name (a dedicated queue); echoed back.
	Tube string `json:"tube"`
	Task Spec   `json:"task"`
	// Constraints, optional, are labels an executor must have, each with
	// this value, for a dispatcher to assign it the task ("gpu": "a100").
	// Absent or empty: any executor serving the tube will do. They choose
	// where a task runs, not what runs, and no signature covers them.
	Constraints map[string]string `json:"constraints,omitempty"`
	// Sig is the optional signature of a signed submission (package
	// signature defines what it covers). Absent in the original protocol.
	Sig *Signature `json:"sig,omitempty"`
}

// Signature proves who submitted a task: the id of a shared key, when the
// task was signed, and an HMAC-SHA256 over the task's canonical content.
type Signature struct {
	// Key is the key id, e.g. "web"; the executor looks the secret up.
	Key string `json:"key"`
	// TS is the signing time in Unix seconds.
	TS int64 `json:"ts"`
	// MAC is the HMAC-SHA256, lowercase hex.
	MAC string `json:"mac"`
}

// Spec is what to run.
type Spec struct {
	// Cmdline is split into words like a POSIX shell would, but no shell
	// runs it (see package jail).
	Cmdline string `json:"cmdline"`
	// CmdArgs are appended as separate argv entries, never joined.
	CmdArgs []string `json:"cmd_args"`
	// Timeout in seconds; <= 0 or absent means none.
	Timeout Seconds `json:"timeout"`
}

// Seconds is a JSON number of seconds. Fractions are accepted; so is null.
type Seconds float64

// Duration converts s; zero means no timeout.
func (s Seconds) Duration() time.Duration {
	if s <= 0 {
		return 0
	}
	return time.Duration(float64(s) * float64(time.Second))
}

// Parse decodes and validates one task message; see Decode.
func Parse(raw []byte, maxBytes int) (*Task, error) {
	t, _, _, err := Decode(raw, maxBytes)
	return t, err
}

// Decode parses one task message, once and strictly, and validates it.
// maxBytes bounds the raw size (the message is refused before it is
// decoded). Keys are case-sensitive and each may appear once: encoding/json
// alone would match "ID" to the id field and let the last of two "id" keys
// win, so a message could mean one id to one reader and another to the
// next. Unknown fields are refused too: a misspelt "cmd_arg" silently
// dropping arguments would run something other than what the sender meant.
//
// When the message is refused, id and typ are what it names, when that can
// be told at all (see PeekID), so the refusal can be reported on that id;
// when it is accepted they equal t.ID and t.Type.
func Decode(raw []byte, maxBytes int) (t *Task, id, typ string, err error) {
	if maxBytes > 0 && len(raw) > maxBytes {
		id, typ, err = RefuseOversized(raw, len(raw), maxBytes)
		return nil, id, typ, err
	}
	s := scanKeys(raw, taskFields)
	if s.err != nil {
		return nil, s.id, s.typ, s.err
	}
	t = new(Task)
	if err := decodeStrict(raw, t); err != nil {
		return nil, s.id, s.typ, err
	}
	if err := t.Validate(); err != nil {
		return nil, s.id, s.typ, err
	}
	return t, t.ID, t.Type, nil
}

// RefuseOversized is Decode's refusal of a message of size bytes, over
// maxBytes, of which only prefix was read (the transport never hands the
// executor the whole of it): id and typ are read from prefix alone.
func RefuseOversized(prefix []byte, size, maxBytes int) (id, typ string, err error) {
	id, typ = PeekID(prefix[:min(len(prefix), PeekBytes)])
	return id, typ, invalid("message is %d bytes, over the limit of %d (max_task_bytes)", size, maxBytes)
}

// Validate checks every field against the protocol's rules and limits.
func (t *Task) Validate() error {
	if err := checkText("id", t.ID, MaxIDBytes, true); err != nil {
		return err
	}
	if err := checkText("type", t.Type, MaxTypeBytes, false); err != nil {
		return err
	}
	if err := checkText("tube", t.Tube, MaxTubeBytes, false); err != nil {
		return err
	}
	for _, r := range t.Tube {
		if !(r == '-' || r == '_' || r == '.' || r == ':' || r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r))) {
			return invalid("tube %q may hold only letters, digits and - _ . :", t.Tube)
		}
	}
	if err := CheckConstraints(t.Constraints); err != nil {
		return err
	}
	if strings.TrimSpace(t.Task.Cmdline) == "" {
		return invalid("task.cmdline is empty: name a script in cmd_dir, e.g. \"install.sh\"")
	}
	if len(t.Task.Cmdline) > MaxCmdlineBytes {
		return invalid("task.cmdline is %d bytes, over the limit of %d", len(t.Task.Cmdline), MaxCmdlineBytes)
	}
	if !utf8.ValidString(t.Task.Cmdline) || strings.ContainsRune(t.Task.Cmdline, 0) {
		return invalid("task.cmdline must be valid UTF-8 without NUL bytes")
	}
	if len(t.Task.CmdArgs) > MaxArgs {
		return invalid("task.cmd_args has %d entries, over the limit of %d", len(t.Task.CmdArgs), MaxArgs)
	}
	total := 0
	for i, a := range t.Task.CmdArgs {
		if strings.IndexByte(a, 0) >= 0 {
			return invalid("task.cmd_args[%d] contains a NUL byte, which no program argument can hold", i)
		}
		total += len(a)
	}
	if total > MaxArgsBytes {
		return invalid("task.cmd_args total %d bytes, over the limit of %d", total, MaxArgsBytes)
	}
	if err := checkSig(t.Sig); err != nil {
		return err
	}
	if math.IsNaN(float64(t.Task.Timeout)) || float64(t.Task.Timeout) > MaxTimeout.Seconds() {
		return invalid("task.timeout %v is not a number of seconds up to %d", float64(t.Task.Timeout), int64(MaxTimeout/time.Second))
	}
	return nil
}

// CheckConstraints applies the rules of config's labels to constraints,
// so that a constraint no executor could ever meet is refused at once
// instead of waiting forever.
func CheckConstraints(c map[string]string) error {
	if len(c) > MaxConstraints {
		return invalid("constraints has %d entries, over the limit of %d", len(c), MaxConstraints)
	}
	for k, v := range c {
		if !constraintKey(k) {
			return invalid("constraints key %q must be 1 to %d letters, digits or . _ / - (as a label name)", k, MaxConstraintKeyBytes)
		}
		if err := checkText("constraints."+k, v, MaxConstraintValueBytes, false); err != nil {
			return err
		}
	}
	return nil
}

func constraintKey(k string) bool {
	if k == "" || len(k) > MaxConstraintKeyBytes {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '/' || c == '-') {
			return false
		}
	}
	return true
}

func checkSig(sig *Signature) error {
	if sig == nil {
		return nil
	}
	if err := checkText("sig.key", sig.Key, MaxIDBytes, true); err != nil {
		return err
	}
	if len(sig.MAC) != 64 {
		return invalid("sig.mac must be 64 lowercase hex digits (HMAC-SHA256), not %d characters", len(sig.MAC))
	}
	for _, c := range sig.MAC {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return invalid("sig.mac must be 64 lowercase hex digits (HMAC-SHA256)")
		}
	}
	return nil
}

func checkText(field, v string, max int, required bool) error {
	switch {
	case required && v == "":
		return invalid("%s is missing or empty", field)
	case len(v) > max:
		return invalid("%s is %d bytes, over the limit of %d", field, len(v), max)
	case !utf8.ValidString(v):
		return invalid("%s is not valid UTF-8", field)
	}
	for _, r := range v {
		switch {
		case unicode.IsControl(r):
			return invalid("%s %q contains a control character", field, v)
		case isBidiControl(r):
			return invalid("%s %+q contains a bidirectional control character (U+%04X), which makes text display other than it reads", field, v, r)
		case identifier(field) && unicode.Is(unicode.Cf, r):
			return invalid("%s %+q contains an invisible format character (U+%04X)", field, v, r)
		}
	}
	return nil
}

// isBidiControl reports the characters that reorder displayed text
// (Trojan Source, CVE-2021-42574): an id holding one reads differently in
// a log or terminal from what it is.
func isBidiControl(r rune) bool {
	return r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069 || r == 0x200E || r == 0x200F || r == 0x061C
}

// identifier reports the fields that name things (ids and key ids), which
// have no use for invisible characters at all.
func identifier(field string) bool { return field == "id" || field == "sig.key" }

// Control is a message on the control list:
//
//	{"id":"101","type":"kill"}
type Control struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	// Sig is the signature of a signed kill (package signature defines
	// what it covers); required when the executor requires signatures.
	Sig *Signature `json:"sig,omitempty"`
}

// ControlKill is the one control type the protocol defines.
const ControlKill = "kill"

// MaxControlBytes bounds a control message; a transport drops a longer
// one without reading it whole.
const MaxControlBytes = 64 << 10

// ParseControl decodes and validates one control message.
func ParseControl(raw []byte) (*Control, error) {
	if len(raw) > MaxControlBytes {
		return nil, invalid("control message is %d bytes, over the limit of %d", len(raw), MaxControlBytes)
	}
	if s := scanKeys(raw, controlFields); s.err != nil {
		return nil, s.err
	}
	var c Control
	if err := decodeStrict(raw, &c); err != nil {
		return nil, err
	}
	if err := checkText("id", c.ID, MaxIDBytes, true); err != nil {
		return nil, err
	}
	if c.Type != ControlKill {
		return nil, invalid("control type %q is unknown; the only one is %q", c.Type, ControlKill)
	}
	if err := checkSig(c.Sig); err != nil {
		return nil, err
	}
	return &c, nil
}

// decodeStrict decodes exactly one JSON object into v, refusing unknown
// fields and trailing data, with an error a person can act on.
func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return invalid("malformed JSON at byte %d: %v", syn.Offset, err)
		case errors.As(err, &typ):
			field := typ.Field
			if field == "" {
				field = "message"
			}
			return invalid("%s must be a JSON %s, not %s", field, jsonKind(typ.Type.Kind().String()), typ.Value)
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return invalid("message is empty or cut short; expected a JSON object")
		default:
			// Unknown fields and the like; encoding/json's text names the field.
			return invalid("%s", strings.TrimPrefix(err.Error(), "json: "))
		}
	}
	if dec.More() {
		return invalid("trailing data after the JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("trailing data after the JSON object")
	}
	return nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "slice":
		return "array of strings"
	case "struct":
		return "object"
	case "map":
		return "object of strings"
	case "float64", "int", "int64":
		return "number"
	}
	return goKind
}
