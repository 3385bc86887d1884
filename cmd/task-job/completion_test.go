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
		{[]string{"completion", ""}, "bash zsh"},
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

// TestCompletionZsh runs the zsh script's function as zsh would on a TAB,
// with compadd, compset and _files recorded instead of shown: the words on
// the line, the word under the cursor (PREFIX) and what it would offer.
func TestCompletionZsh(t *testing.T) {
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		t.Fatalf("zsh is needed (apt-get install zsh; make deps installs it): %v", err)
	}
	var script, stderr bytes.Buffer
	if code := run([]string{"completion", "zsh"}, &script, &stderr); code != 0 {
		t.Fatalf("completion zsh: exit %d: %s", code, stderr.String())
	}
	path := filepath.Join(t.TempDir(), "_task-job")
	if err := os.WriteFile(path, script.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// compadd offers what starts with PREFIX, as zsh's does; -S '' (no
	// space after) is shown as a trailing "+".
	const stubs = `
compadd() {
	local suffix=
	while [[ $1 == -* && $1 != -- ]]; do
		[[ $1 == -S ]] && { suffix=+; shift; }
		shift
	done
	[[ $1 == -- ]] && shift
	local w
	for w in "$@"; do [[ $w == ${(b)PREFIX}* ]] && reply+=("$w$suffix"); done
}
compset() { [[ $1 == -P ]] && PREFIX=${PREFIX#*=}; reply+=("[$PREFIX]") }
_files() { reply+=(FILES) }
compdef() { registered="$*" }
`
	tests := []struct {
		words []string // the last is the one under the cursor
		want  string
	}{
		{[]string{"su"}, "submit"},
		{[]string{""}, "serve dev submit kill status logs ps executors dispatcher cordon uncordon drain policy audit doctor server version completion help"},
		{[]string{"submit", "-wa"}, "-wait_timeout=+ -wait"},
		{[]string{"kill", "-q"}, "-queue=+ -queued-only"},
		{[]string{"help", "do"}, "doctor"},
		{[]string{"-conf"}, "-config=+"},
		{[]string{"doctor", "-"}, "-config=+ -json"},
		{[]string{"policy", ""}, "check"},
		{[]string{"policy", "check", "-u"}, "-users"},
		{[]string{"policy", "check", ""}, "FILES"},
		{[]string{"doctor", "-config=/etc/t"}, "[/etc/t] FILES"}, // a file after -config=
		{[]string{"completion", ""}, "bash zsh"},
		{[]string{"-config=x.json", "sub"}, ""}, // a command after the flags is refused: not offered
		{[]string{"nosuch", ""}, ""},
	}
	// Installed in $fpath, the file is autoloaded: each TAB completes, the
	// first (which loads it) too.
	prog := stubs + "fpath=(" + filepath.Dir(path) + " $fpath)\nautoload -Uz _task-job\nwords=(task-job su)\nCURRENT=2\nPREFIX=su\n" +
		"reply=()\n_task-job\n_task-job\nprint -r -- \"${reply[*]}\"\n"
	if out, err := exec.Command(zsh, "-f", "-c", prog).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "submit submit" {
		t.Errorf("autoloaded from $fpath, two TABs on \"task-job su\" offer %q (%v), want \"submit submit\"", out, err)
	}
	for _, tc := range tests {
		words := append([]string{"task-job"}, tc.words...)
		var quoted []string
		for _, w := range words {
			quoted = append(quoted, "'"+w+"'")
		}
		prog := stubs + "source " + path + "\n[[ $registered == '_task-job task-job' ]] || print -r -- \"not registered: $registered\"\n" +
			"words=(" + strings.Join(quoted, " ") + ")\nCURRENT=" + itoa(len(words)) + "\nPREFIX=" + quoted[len(quoted)-1] +
			"\nreply=()\n_task-job\nprint -r -- \"${reply[*]}\"\n"
		out, err := exec.Command(zsh, "-f", "-c", prog).CombinedOutput()
		if err != nil && !strings.HasPrefix(tc.words[0], "nosuch") {
			t.Fatalf("zsh: %v\n%s", err, out)
		}
		if got := strings.TrimSpace(string(out)); got != tc.want {
			t.Errorf("task-job %s<TAB> = %q, want %q", strings.Join(tc.words, " "), got, tc.want)
		}
	}
}
