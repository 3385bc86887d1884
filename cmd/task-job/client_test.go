package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/redisserver"
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

// submit -wait prints the task's output too, so it escapes it as logs does:
// a task must not retitle, clear or reorder the submitter's terminal.
func TestSubmitWaitEscapesTerminalSequences(t *testing.T) {
	srv := redisserver.Start(t)
	dir := scripts(t)
	body := "#!/bin/sh\nprintf 'title\\033]0;pwned\\007 bidi\\342\\200\\256txt\\n'\nprintf 'err\\033[2J\\n' >&2\n"
	if err := os.WriteFile(filepath.Join(dir, "esc.sh"), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	startExecutor(t, srv, "escq", dir, true)
	var stdout, stderr bytes.Buffer
	code := run([]string{"submit", "-redis_addr=" + srv.Addr(), "-queue=escq", "-wait", "-wait_timeout=30s", "esc.sh"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	for _, out := range []string{stdout.String(), stderr.String()} {
		for _, bad := range []string{"\x1b", "\x07", "\u202e"} {
			if strings.Contains(out, bad) {
				t.Errorf("printed %q raw: %q", bad, out)
			}
		}
	}
	if want := `title\x1b]0;pwned\x07 bidi\u202etxt` + "\n"; stdout.String() != want {
		t.Errorf("stdout %q, want %q", stdout.String(), want)
	}
	if !strings.Contains(stderr.String(), `err\x1b[2J`) {
		t.Errorf("stderr %q lacks the escaped line", stderr.String())
	}
}
