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
// drift apart. "task-job completion zsh" prints zsh's from the same lists.

func runCompletion(args []string, stdout, stderr io.Writer) int {
	fs := quietFlagSet("task-job completion")
	if ok, code := parseFlags(fs, "completion", args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() != 1 {
		return usageError(stderr, "completion", "want one shell, got %d words", fs.NArg())
	}
	switch shell := fs.Arg(0); shell {
	case "bash":
		fmt.Fprint(stdout, bashCompletion())
	case "zsh":
		fmt.Fprint(stdout, zshCompletion())
	default:
		return usageError(stderr, "completion", "unknown shell %q%s (bash or zsh)", shell, didYouMean(shell, shells))
	}
	return exitOK
}

// shells are the ones completion writes a script for.
var shells = []string{"bash", "zsh"}

// completionNames is what the first word may be: the commands and help.
func completionNames() []string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return append(names, "help")
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
	names := completionNames()
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
			fmt.Fprintf(&b, "\t\t[[ $cur != -* ]] && words=%q\n", strings.Join(shells, " "))
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

// zshCompletion is a native zsh completion function, from the same
// commands and help pages as bash's. zsh does not split words at "=", so a
// flag's value is completed by dropping the "-name=" prefix (compset).
func zshCompletion() string {
	var b strings.Builder
	b.WriteString(`#compdef task-job
# zsh completion for task-job. Install, as a file in $fpath:
#   task-job completion zsh > /usr/local/share/zsh/site-functions/_task-job
# or, for one shell (after compinit):  source <(task-job completion zsh)
# The function has the file's name: autoloaded, the file's first run
# defines it in place of itself and calls it; sourced, it registers it.
_task-job() {
	local cmd= i
	local -a flags
	for ((i = 2; i < CURRENT; i++)); do
		[[ $words[i] == -* ]] && continue
		cmd=$words[i]
		break
	done
	# A value after -flag=: files.
	if [[ $PREFIX == -*=* ]]; then
		compset -P '*='
		_files
		return
	fi
	case $cmd in
`)
	for _, c := range commands() {
		name := c.name
		if name == "serve" {
			name = "serve | ''"
		}
		fmt.Fprintf(&b, "\t%s) flags=(%s) ;;\n", name, strings.Join(commandFlags(c), " "))
	}
	fmt.Fprintf(&b, `	help) ;;
	*) return 1 ;;
	esac
	if [[ $PREFIX == -* ]]; then
		# A flag that takes a value is offered as "-name=", with no space after.
		compadd -S '' -- ${(M)flags:#*=}
		compadd -- ${flags:#*=}
		return
	fi
	case $cmd in
	'') (( CURRENT == 2 )) && compadd -- %s ;;
	help) (( CURRENT == 3 )) && compadd -- %s ;;
	completion) compadd -- %s ;;
	policy) if (( ${words[(I)check]} == 0 || ${words[(I)check]} >= CURRENT )); then compadd -- check; else _files; fi ;;
	*) _files ;;
	esac
}
if [[ $funcstack[1] == _task-job ]]; then
	_task-job "$@"
else
	compdef _task-job task-job
fi
`, strings.Join(completionNames(), " "), strings.Join(completionNames()[:len(completionNames())-1], " "), strings.Join(shells, " "))
	return b.String()
}
