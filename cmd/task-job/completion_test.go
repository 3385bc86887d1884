package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The completion script, loaded into a real bash, completes what a user
// types: commands, each command's flags, policy's subcommand, files after
// "-flag=" (bash's own, when the script offers nothing).
func TestCompletionBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash is needed: %v", err)
	}
	var script, stderr bytes.Buffer
	if code := run([]string{"completion", "bash"}, &script, &stderr); code != 0 {
		t.Fatalf("completion bash: exit %d: %s", code, stderr.String())
	}
	path := filepath.Join(t.TempDir(), "task-job.bash")
	if err := os.WriteFile(path, script.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		words []string // as bash splits them, the last being completed
		want  string
	}{
		{[]string{"su"}, "submit"},
		{[]string{""}, "serve dev submit kill status logs ps executors dispatcher cordon uncordon drain policy audit doctor server version completion help"},
		{[]string{"submit", "-wa"}, "-wait -wait_timeout="},
		{[]string{"kill", "-q"}, "-queue= -queued-only"},
		{[]string{"help", "do"}, "doctor"},
		{[]string{"-conf"}, "-config="},
		{[]string{"doctor", "-"}, "-config= -json"},
		{[]string{"policy", ""}, "check"},
		{[]string{"policy", "check", "-u"}, "-users"},
		{[]string{"policy", "check", ""}, ""},        // a file: bash's default
		{[]string{"doctor", "-config", "=", ""}, ""}, // a file after -config=
		{[]string{"completion", ""}, "bash"},
		{[]string{"-config", "=", "x.json", "sub"}, ""}, // a command after the flags is refused: not offered
	}
	for _, tc := range tests {
		words := append([]string{"task-job"}, tc.words...)
		var quoted []string
		for _, w := range words {
			quoted = append(quoted, "'"+w+"'")
		}
		prog := "source " + path + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" +
			itoa(len(words)-1) + "\nCOMPREPLY=()\n_task_job\necho \"${COMPREPLY[*]}\"\n"
		out, err := exec.Command(bash, "--norc", "--noprofile", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		if got := strings.TrimSpace(string(out)); got != tc.want {
			t.Errorf("task-job %s<TAB> = %q, want %q", strings.Join(tc.words, " "), got, tc.want)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestCompletionRefusesOtherShells(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"completion", "bsh"}, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), `did you mean "bash"`) {
		t.Errorf("completion bsh: exit %d, stderr %q", code, stderr.String())
	}
}
