package executor

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskjob/task-job/task"
)

// lineWriter turns one output stream of a task into TaskLog lines. The
// sandbox writes to it from a single goroutine; what it shares with the
// other stream of the task is in the task's meter.
type lineWriter struct {
	e       *Executor
	r       *run
	msgType string
	partial []byte
}

// Write never fails: a task must not block or die because its output is
// over the cap or Redis is down. Lines longer than max_line_bytes are split.
func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	w.r.written.Add(int64(n))
	if !w.e.opt.Logs {
		return n, nil
	}
	max := w.e.opt.MaxLineBytes
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := max - len(w.partial)
			if len(p) < room {
				w.partial = append(w.partial, p...)
				return n, nil
			}
			w.partial = append(w.partial, p[:room]...)
			p = p[room:]
			w.emit(w.partial, 0)
			w.partial = w.partial[:0]
			continue
		}
		line := p[:i]
		p = p[i+1:]
		if len(w.partial) > 0 {
			line = append(w.partial, line...)
			w.partial = w.partial[:0]
		}
		for len(line) > max {
			w.emit(line[:max], 0)
			line = line[max:]
		}
		w.emit(line, 1)
	}
	return n, nil
}

// flush ships a last line that had no newline.
func (w *lineWriter) flush() {
	if len(w.partial) > 0 {
		w.emit(w.partial, 0)
		w.partial = w.partial[:0]
	}
}

// emit ships one line (nl is 1 when a newline ended it), unless a cap
// drops it.
func (w *lineWriter) emit(line []byte, nl int) {
	r, o := w.r, &w.e.opt
	m := &r.meter
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	// The message is built before it is counted: the cap is on what is
	// shipped, envelope included, so an empty line costs what it costs.
	msg := task.AppendLine(make([]byte, 0, len(line)+160), r.id, r.typ, r.tube, w.msgType, o.ExecutorID, r.seq.Load()+1, now, line)
	if c := m.over(o, len(msg), now); c != capNone {
		m.dropped.Add(int64(len(line) + nl))
		m.droppedLines.Add(1)
		if !m.noticed[c] {
			m.noticed[c] = true
			w.e.out.line(task.AppendLine(nil, r.id, r.typ, r.tube, task.MsgStderr, o.ExecutorID, r.seq.Add(1), now, []byte(c.notice(o))))
		}
		return
	}
	r.seq.Add(1)
	w.e.out.line(msg)
}

// outputCap names the cap a line was dropped for.
type outputCap int

const (
	capNone outputCap = iota
	capBytes
	capMessages
	capRate
	numCaps
)

func (c outputCap) notice(o *Options) string {
	switch c {
	case capBytes:
		return fmt.Sprintf("[task-job] output over max_output_bytes (%d bytes of log messages); further output is dropped and counted in the done", o.MaxOutputBytes)
	case capMessages:
		return fmt.Sprintf("[task-job] output over max_output_messages (%d lines); further output is dropped and counted in the done", o.MaxOutputMessages)
	default:
		return fmt.Sprintf("[task-job] output over max_output_rate (%d lines a second); lines are dropped while it lasts and counted in the done", o.MaxOutputRate)
	}
}

// meter counts what a task's two streams ship, against the caps. The lock
// also keeps seq gapless: a dropped line takes no sequence number.
type meter struct {
	mu       sync.Mutex
	shipped  int64 // message bytes shipped
	messages int64 // messages shipped
	tokens   float64
	last     time.Time
	noticed  [numCaps]bool

	// dropped counts the task's output bytes (newlines included) that were
	// not shipped; droppedLines the lines. Read by the done.
	dropped      atomic.Int64
	droppedLines atomic.Int64
}

// over reports which cap a message of size bytes would break, or capNone
// and counts it as shipped. The byte and message caps hold for the rest of
// the task once hit; the rate is a token bucket of one second's worth, so a
// task that goes quiet may ship again.
func (m *meter) over(o *Options, size int, now time.Time) outputCap {
	switch {
	case m.noticed[capBytes] || m.shipped+int64(size) > o.MaxOutputBytes:
		return capBytes
	case m.noticed[capMessages] || m.messages >= int64(o.MaxOutputMessages):
		return capMessages
	}
	rate := float64(o.MaxOutputRate)
	if m.last.IsZero() {
		m.tokens = rate
	} else {
		m.tokens = min(rate, m.tokens+now.Sub(m.last).Seconds()*rate)
	}
	m.last = now
	if m.tokens < 1 {
		return capRate
	}
	m.tokens--
	m.shipped += int64(size)
	m.messages++
	return capNone
}
