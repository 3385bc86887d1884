package main

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

// "task-job completion bash" prints a bash completion script: the commands,
// and each command's flags as its help page lists them, so the two cannot
// drift apart. zsh can load it too (autoload -U bashcompinit && bashcompinit).

func runCompletion(args []string, stdout, stderr io.Writer) int {
	fs := quietFlagSet("task-job completion")
	if ok, code := parseFlags(fs, "completion", args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() != 1 {
		return usageError(stderr, "completion", "want one shell, got %d words", fs.NArg())
	}
	if shell := fs.Arg(0); shell != "bash" {
		return usageError(stderr, "completion", "unknown shell %q%s (only bash; zsh loads it through bashcompinit)", shell, didYouMean(shell, []string{"bash"}))
	}
	fmt.Fprint(stdout, bashCompletion())
	return exitOK
}

// helpFlag matches a flag line of a help page: "  -name", "  -name type" or
// "  -v<TAB>usage".
var helpFlag = regexp.MustCompile(`^  -([A-Za-z0-9_.-]+)(?: ([a-z]+))?(?:\t.*)?$`)

// commandFlags lists a command's flags from its help page: "-name=" for a
// flag that takes a value, "-name" for a boolean.
func commandFlags(c command) []string {
	var page bytes.Buffer
	c.run([]string{"-h"}, &page, io.Discard)
	var flags []string
	for _, line := range strings.Split(page.String(), "\n") {
		m := helpFlag.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if m[2] != "" {
			flags = append(flags, "-"+m[1]+"=")
		} else {
			flags = append(flags, "-"+m[1])
		}
	}
	sort.Strings(flags)
	return flags
}

func bashCompletion() string {
	var b strings.Builder
	b.WriteString(`# bash completion for task-job. Install:
#   task-job completion bash > /etc/bash_completion.d/task-job
# or, for one shell:  source <(task-job completion bash)
_task_job() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} cmd= i words
	# A value after -flag= (bash splits at "="): files.
	if [[ $cur == = || $prev == = ]]; then
		COMPREPLY=()
		return
	fi
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		-* | =) ;;
		*) if [[ ${COMP_WORDS[i-1]} != = ]]; then cmd=${COMP_WORDS[i]}; break; fi ;;
		esac
	done
	case $cmd in
`)
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	names = append(names, "help")
	for _, c := range commands() {
		name := c.name
		if name == "serve" {
			name = "serve | ''"
		}
		words := strings.Join(commandFlags(c), " ")
		fmt.Fprintf(&b, "\t%s)\n\t\twords=%q\n", name, words)
		if c.name == "serve" {
			fmt.Fprintf(&b, "\t\t[[ $cmd == '' && $cur != -* && $COMP_CWORD == 1 ]] && words=%q\n", strings.Join(names, " "))
		}
		if c.name == "policy" {
			b.WriteString("\t\t[[ $cur != -* && \" ${COMP_WORDS[*]:1:COMP_CWORD-1} \" != *' check '* ]] && words=check\n")
		}
		if c.name == "completion" {
			b.WriteString("\t\t[[ $cur != -* ]] && words=bash\n")
		}
		b.WriteString("\t\t;;\n")
	}
	fmt.Fprintf(&b, "\thelp)\n\t\twords=%q\n\t\t;;\n", strings.Join(names, " "))
	b.WriteString(`	*) return ;;
	esac
	if [[ $cur == -* || $cmd == '' || $cmd == help || $cmd == completion || $words == check ]]; then
		COMPREPLY=($(compgen -W "$words" -- "$cur"))
		[[ ${COMPREPLY[0]} == *= ]] && compopt -o nospace 2>/dev/null
	fi
}
complete -o default -F _task_job task-job
`)
	return b.String()
}
