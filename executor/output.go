package executor

import (
	"bytes"
	"fmt"
	"time"

	"github.com/taskjob/task-job/task"
)

// lineWriter turns one output stream of a task into TaskLog lines. The
// sandbox writes to it from a single goroutine, so it needs no lock; the
// counters it shares with the other stream are atomic.
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
			w.emit(w.partial)
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
			w.emit(line[:max])
			line = line[max:]
		}
		w.emit(line)
	}
	return n, nil
}

// flush ships a last line that had no newline.
func (w *lineWriter) flush() {
	if len(w.partial) > 0 {
		w.emit(w.partial)
		w.partial = w.partial[:0]
	}
}

func (w *lineWriter) emit(line []byte) {
	r := w.r
	if r.shipped.Add(int64(len(line))) > w.e.opt.MaxOutputBytes {
		r.dropped.Add(int64(len(line)))
		r.capOnce.Do(func() {
			msg := fmt.Sprintf("[task-job] output over max_output_bytes (%d); further output is dropped and counted in the done", w.e.opt.MaxOutputBytes)
			w.e.out.line(task.AppendLine(nil, r.id, r.typ, r.tube, task.MsgStderr, w.e.opt.ExecutorID, r.seq.Add(1), time.Now(), []byte(msg)))
		})
		return
	}
	w.e.out.line(task.AppendLine(make([]byte, 0, len(line)+160), r.id, r.typ, r.tube, w.msgType, w.e.opt.ExecutorID, r.seq.Add(1), time.Now(), line))
}
