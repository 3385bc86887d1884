package task

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// Message types of a TaskLog. The first three are the original protocol's.
const (
	MsgStdout = "stdout"
	MsgStderr = "stderr"
	MsgDone   = "done"
)

// Log is one TaskLog message: an output line of a task, or its done.
// The first four fields keep the meaning they had in the original tool;
// the rest are additions that older consumers ignore.
type Log struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	MsgType string `json:"msg_type"`
	Data    string `json:"data"`
	// Seq numbers a task's messages from 1, across both streams and the
	// done, so a consumer can restore order and drop a message delivered
	// twice after a Redis outage. 0 (omitted) on a done reported by another
	// executor for a lost task, which cannot know the count.
	Seq  uint64 `json:"seq,omitempty"`
	Time string `json:"time"`
	// Executor is the id of the executor that ran (or reported) the task.
	Executor string `json:"executor,omitempty"`
	Tube     string `json:"tube,omitempty"`

	*Result
}

// Result is what a done message adds: how the task ended.
type Result struct {
	Status State `json:"status"`
	// ExitCode is the process's exit status; -1 when it did not exit on its
	// own (a signal, or it never started).
	ExitCode int    `json:"exit_code"`
	Signal   string `json:"signal,omitempty"`
	// Reason says why the task ended, in words for a person.
	Reason      string `json:"reason"`
	Rule        string `json:"rule,omitempty"`
	QueuedFor   int64  `json:"queued_ms,omitempty"`
	StartedAt   string `json:"started_at,omitempty"`
	EndedAt     string `json:"ended_at,omitempty"`
	DurationMS  int64  `json:"duration_ms"`
	CPUMS       int64  `json:"cpu_ms"`
	MaxRSSBytes int64  `json:"max_rss_bytes"`
	// OutputBytes counts all bytes the task wrote; OutputDropped those
	// (newlines included) not shipped because a cap was hit —
	// max_output_bytes, max_output_messages or max_output_rate — and
	// OutputDroppedLines the lines they made.
	OutputBytes        int64 `json:"output_bytes"`
	OutputDropped      int64 `json:"output_dropped_bytes,omitempty"`
	OutputDroppedLines int64 `json:"output_dropped_lines,omitempty"`
	// Isolation names what confined the task ("sandbox",
	// "process-group", …) so a weaker run never goes unnoticed.
	Isolation string `json:"isolation,omitempty"`
}

// TimeFormat is used for every timestamp on the wire.
const TimeFormat = time.RFC3339Nano

// Marshal encodes a done (or any) message with encoding/json.
func (l *Log) Marshal() []byte {
	b, err := json.Marshal(l)
	if err != nil {
		// Every field is a plain string or number: this cannot happen.
		panic("task: marshal log: " + err.Error())
	}
	return b
}

// AppendLine appends the JSON of one stdout/stderr message to dst. It is the
// hot path of log shipping (hundreds of thousands of lines a second), so it
// writes the bytes by hand instead of going through reflection. The output is
// the same JSON that Marshal would produce for the same fields.
func AppendLine(dst []byte, id, typ, tube, msgType, executor string, seq uint64, at time.Time, data []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, id)
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, typ)
	dst = append(dst, `,"msg_type":`...)
	dst = appendString(dst, msgType)
	dst = append(dst, `,"data":`...)
	dst = appendString(dst, data)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"time":"`...)
	dst = at.UTC().AppendFormat(dst, TimeFormat)
	dst = append(dst, '"')
	if executor != "" {
		dst = append(dst, `,"executor":`...)
		dst = appendString(dst, executor)
	}
	if tube != "" {
		dst = append(dst, `,"tube":`...)
		dst = appendString(dst, tube)
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string the way encoding/json does:
// control characters, quotes, backslashes, <, >, & and U+2028/9 escaped,
// invalid UTF-8 replaced by U+FFFD.
func appendString[S string | []byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		// A short conversion to []byte stays on the stack: no allocation.
		r, size := utf8.DecodeRune([]byte(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
