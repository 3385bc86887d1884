package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/task"
)

// Issue 14 item 10: a task's output printed by `task-job logs` must not
// reach the terminal as escape sequences (retitle the window, clear the
// screen, hide text, reorder it with a bidi override).
func TestLogsEscapesTerminalSequences(t *testing.T) {
	data := "title\x1b]0;pwned\x07 clear\x1b[2J csi\u009b31m bidi\u202etxt.exe tab\there bad\xff ok é漢"
	var out, errOut bytes.Buffer
	raw := task.AppendLine(nil, "x", "", "", task.MsgStdout, "", 1, time.Unix(0, 0), []byte(data))
	var last uint64
	printLine(raw, "x", &last, escaping{&out}, escaping{&errOut})
	got := out.String()
	for _, bad := range []string{"\x1b", "\x07", "\u009b", "\u202e"} {
		if strings.Contains(got, bad) {
			t.Errorf("printed %q raw: %q", bad, got)
		}
	}
	for _, want := range []string{`title\x1b]0;pwned\x07`, `clear\x1b[2J`, `csi\u009b31m`, `bidi\u202etxt.exe`, "tab\there", "ok é漢\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("printed %q, want it to hold %q", got, want)
		}
	}
}
