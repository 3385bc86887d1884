package history

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/taskjob/task-job/task"
)

// timeline renders the history compactly: every fault, and for the tasks
// named in vs (all tasks when vs is empty) what was sent, what their
// processes marked and every message received about them.
func (r *run) timeline(vs []violation) string {
	focus := map[string]bool{}
	for _, v := range vs {
		if v.ID != "" {
			focus[v.ID] = true
		}
	}
	all := len(focus) == 0
	type line struct {
		at  time.Duration
		txt string
	}
	var lines []line
	r.mu.Lock()
	for _, ev := range r.events {
		if ev.ID != "" && !all && !focus[ev.ID] {
			continue
		}
		who := ev.ID + ev.Exec
		lines = append(lines, line{ev.At, fmt.Sprintf("%-14s %-28s %s", ev.Kind, who, ev.Note)})
	}
	for _, m := range r.recv {
		if !all && !focus[m.Log.ID] {
			continue
		}
		txt := fmt.Sprintf("recv %-9s %-28s seq=%d from %s", m.Log.MsgType, m.Log.ID, m.Log.Seq, m.Log.Executor)
		if m.Log.MsgType == task.MsgDone && m.Log.Result != nil {
			txt += fmt.Sprintf(": %s (%s)", m.Log.Status, m.Log.Reason)
		} else {
			txt += ": " + m.Log.Data
		}
		if r.params.Kafka {
			txt += fmt.Sprintf(" [partition %d offset %d]", m.Part, m.Pos)
		} else {
			txt += fmt.Sprintf(" [pos %d]", m.Pos)
		}
		lines = append(lines, line{m.At, txt})
	}
	r.mu.Unlock()
	if b, err := os.ReadFile(r.marks); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) < 3 || (!all && !focus[f[0]]) {
				continue
			}
			ns, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil {
				continue
			}
			lines = append(lines, line{time.Unix(0, ns).Sub(r.t0), fmt.Sprintf("task-process   %-28s %s", f[0], f[1])})
		}
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at < lines[j].at })
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "  %+8.3fs %s\n", l.at.Seconds(), l.txt)
	}
	for _, e := range r.execs {
		fmt.Fprintf(&b, "  executor log: %s\n", e.logPath)
	}
	return b.String()
}
