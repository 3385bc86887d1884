package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/taskjob/task-job/internal/suggest"
)

// The help of every command lives here, in one place, so that the list,
// each command's page and the README's Command line section say the same.

// helpPage is what "task-job help COMMAND" and "task-job COMMAND -h" show
// around the command's flags.
type helpPage struct {
	usage   string // after "usage: "
	about   string // optional paragraphs
	example string // indented lines
}

var helpPages = map[string]helpPage{
	"serve": {
		usage: "task-job [-config=FILE] [-alsologtostderr] [-log_dir=DIR] [flags]\n       task-job serve [same flags]",
		about: "Runs the executor: takes tasks from the queue, runs each confined to cmd_dir,\n" +
			"ships its output and reports one done per task. The flags are the original\n" +
			"tool's glog-style single-dash flags. Every flag comes before nothing else:\n" +
			"a command (submit, kill, ...) goes first, e.g. task-job submit -config=FILE ...",
		example: "  task-job -config=/etc/task-job/config.json -alsologtostderr\n" +
			"  task-job serve -config=/etc/task-job/config.json -log_format=json -v=1   (JSON logs, debug level)",
	},
	"dev": {
		usage: "task-job dev [-addr=127.0.0.1:6379] [-cmd_dir=DIR] [flags]",
		about: "A quick start that needs nothing installed: an embedded, in-memory\n" +
			"Redis-protocol endpoint on loopback and an executor on it, with a demo\n" +
			"script. Everything is lost when it stops.",
		example: "  task-job dev\n  task-job submit -redis_addr=127.0.0.1:6379 -wait hello.sh world   (from another shell)",
	},
	"submit": {
		usage: "task-job submit [flags] CMDLINE [ARG...]",
		about: "Pushes one task onto the queue. CMDLINE is one word or a quoted command\n" +
			"line; each ARG becomes one cmd_args entry. Flags come before CMDLINE:\n" +
			"anything after it belongs to the task, and one of submit's own flags\n" +
			"there is refused as a likely slip (write -- before CMDLINE to pass it\n" +
			"to the task). Prints the task id; with -wait, prints the task's output\n" +
			"instead and exits 0 only if it succeeded (1 it did not, 3 gave up\n" +
			"waiting after -wait_timeout).",
		example: "  task-job submit -config=/etc/task-job/config.json -wait install.sh feature/homestead\n" +
			"  task-job submit -redis_addr=10.0.0.5:6379 -queue=jobs -id=101 -timeout=3600 install.sh feature/x",
	},
	"kill": {
		usage: "task-job kill [flags] ID",
		about: "Kills a running task, or cancels a queued one. It first looks the id up and\n" +
			"says what the kill will do: a task that already ended is not killed again\n" +
			"(exit 1); an id no executor has taken yet is cancelled if it arrives\n" +
			"within status_retention. -force sends the kill without looking (for a\n" +
			"Redis user that may only RPUSH).",
		example: "  task-job kill -config=/etc/task-job/config.json 101\n  task-job kill -queued-only 101",
	},
	"status": {
		usage: "task-job status [flags] ID",
		about: "Shows a task's state (queued, running, succeeded, failed, timeout, killed,\n" +
			"lost, rejected), its executor and, once it ended, how. Exit 1 if the id is\n" +
			"not known (never taken, or ended more than status_retention ago).",
		example: "  task-job status -config=/etc/task-job/config.json 101\n  task-job status -json 101",
	},
	"logs": {
		usage: "task-job logs [flags] ID",
		about: "Prints a task's output: stdout lines to stdout, stderr lines to stderr, and\n" +
			"its done to stderr. With -f it follows the task to its done (exit 0 if it\n" +
			"succeeded, 1 if not, 3 gave up after -timeout). It reads the task's own log\n" +
			"stream, kept for status_retention; output is shipped only when the\n" +
			"executor's config has \"logs\": true.",
		example: "  task-job logs -f -config=/etc/task-job/config.json 101\n  task-job logs -json 101 | jq -r .data",
	},
	"ps": {
		usage: "task-job ps [flags]",
		about: "Lists the tasks executors took within status_retention, newest first, as\n" +
			"the management page and GET /api/v1/tasks do (-state=queued lists the task\n" +
			"list instead). It reads Redis directly, like the other client commands.",
		example: "  task-job ps -config=/etc/task-job/config.json\n  task-job ps -state=failed -since=24h -limit=100",
	},
	"executors": {
		usage: "task-job executors [flags]",
		about: "Lists the executors registered on the queue: alive or not, tasks running\n" +
			"out of its slots, host, pid, version, since when, where its management\n" +
			"server listens, and what confines its tasks; with a registry in the config,\n" +
			"whether the dispatcher gives it work (ok, cordoned or draining, since when, by whom).",
		example: "  task-job executors -config=/etc/task-job/config.json\n  task-job executors -json",
	},
	"dispatcher": {
		usage: "task-job dispatcher -config=FILE [flags]",
		about: "Runs one dispatcher replica (run two or more: one leads). Replicas elect a\n" +
			"leader in the config's registry (etcd); the leader moves each task of the\n" +
			"shared list and the tube lists to one executor that has \"dispatched\": true,\n" +
			"serves the task's tube and is not cordoned, and gives a lost or drained\n" +
			"executor's assigned tasks back. Its moves carry its fencing token, so a\n" +
			"leader that was paused past its lease cannot move a task after its successor.",
		example: "  task-job dispatcher -config=/etc/task-job/config.json",
	},
	"cordon": {
		usage:   "task-job cordon [flags] ID",
		about:   "Records in the registry that the dispatcher gives executor ID no new tasks.\nWhat it runs or was assigned already stays (drain gives the assigned back).\nCordon, uncordon and drain are recorded in the audit log first (audit_file or\n-audit_file; not done if it cannot be written).",
		example: "  task-job cordon -config=/etc/task-job/config.json host-7",
	},
	"uncordon": {
		usage:   "task-job uncordon [flags] ID",
		about:   "Removes executor ID's cordon (or drain): the dispatcher assigns it tasks again.\nExit 1 if it was not cordoned.",
		example: "  task-job uncordon -config=/etc/task-job/config.json host-7",
	},
	"drain": {
		usage: "task-job drain [flags] ID",
		about: "Cordons executor ID and waits (up to -timeout) until the dispatcher leader has\n" +
			"given the tasks assigned to it and not yet taken back to the shared list. Its\n" +
			"running tasks finish. Exit 3 if its list was not empty in time.",
		example: "  task-job drain -config=/etc/task-job/config.json host-7",
	},
	"policy": {
		usage: "task-job policy check [-json] [-v] [-users=false] POLICY_FILE [TASK_JSON_FILE|-]",
		about: "Validates POLICY_FILE and prints every problem in it as file:line:col,\n" +
			"including users and groups that do not exist on this host. With a task (a\n" +
			"file holding one task message, or - for stdin), also says which rule allows\n" +
			"it, as whom and with which limits, or why it is refused. Nothing is run, and\n" +
			"a signature is not verified: only its key id is used.\n\n" +
			"Exit status: 0 valid / allowed, 1 invalid policy / refused, 2 usage error,\n" +
			"unreadable file or invalid task.",
		example: "  task-job policy check /etc/task-job/policy.hcl\n" +
			"  echo '{\"id\":\"1\",\"task\":{\"cmdline\":\"install.sh\",\"cmd_args\":[\"feature/x\"]}}' | task-job policy check policy.hcl -",
	},
	"audit": {
		usage: "task-job audit [-config=FILE | -file=PATH] [filters] [-json]\n       task-job audit [-config=FILE | -file=PATH] -verify",
		about: "Lists audit records (filtered, as a table or JSON lines), or -verify checks\n" +
			"the hash chain and the Redis mirror, naming the first bad record.",
		example: "  task-job audit -config=/etc/task-job/config.json -id=101\n  task-job audit -file=/var/lib/task-job/audit.jsonl -verify",
	},
	"doctor": {
		usage: "task-job doctor [-config=FILE] [-json]",
		about: "Checks, on this host, what the executor would meet with FILE: the config and\n" +
			"policy load, cmd_dir passes the trust check, Redis answers with the configured\n" +
			"user (and that user may do what the executor needs, and no more), no other\n" +
			"executor holds executor_id, cgroups (v1, hybrid or v2, and delegation), the\n" +
			"sandbox helper, namespaces, seccomp, Landlock and a trial task in the sandbox, the audit\n" +
			"file and its chain, signing keys, server_port. Each line says OK, WARN or FAIL,\n" +
			"with what to do. Nothing an executor owns is changed. Without -config it checks\n" +
			packagedConfig + " if it exists.\n\n" +
			"Exit status: 0 no FAIL, 1 at least one FAIL, 2 usage error.",
		example: "  task-job doctor\n  task-job doctor -config=/etc/task-job/config.json -json | jq 'select(.status != \"OK\")'",
	},
	"completion": {
		usage: "task-job completion bash|zsh",
		about: "Prints a completion script for bash or zsh: commands, each command's flags,\n" +
			"and files after a flag's \"=\".",
		example: "  task-job completion bash > /etc/bash_completion.d/task-job\n  source <(task-job completion bash)\n" +
			"  task-job completion zsh > /usr/local/share/zsh/site-functions/_task-job",
	},
	"server": {
		usage: "task-job server -config=FILE [-server_port=PORT] [flags]\n       task-job server -new-token NAME ROLE",
		about: "Serves the management API (/api/v1), the web page and /metrics on server_port,\n" +
			"over the deployment's Redis, without taking tasks. An executor whose config\n" +
			"sets server_port serves the same itself. Without server_tokens_file it\n" +
			"listens on loopback only; -new-token prints a token and the line that\n" +
			"accepts it (roles: read, operate, admin).",
		example: "  task-job server -config=/etc/task-job/config.json -server_port=8080\n" +
			"  task-job server -new-token alice operate   (then add the printed line to server_tokens_file)",
	},
	"version": {
		usage:   "task-job version [-json]",
		about:   "Prints the version, the commit it was built from and when.",
		example: "  task-job version\n  task-job version -json",
	},
}

// printHelp writes the help page of a command: summary, usage, flags, example.
func printHelp(w io.Writer, name string, fs *flag.FlagSet) {
	h := helpPages[name]
	fmt.Fprintf(w, "task-job %s: %s\n\nusage: %s\n", name, summaryOf(name), h.usage)
	if h.about != "" {
		fmt.Fprintf(w, "\n%s\n", h.about)
	}
	if fs != nil {
		fmt.Fprint(w, "\nflags:\n")
		printFlags(w, fs)
	}
	if h.example != "" {
		fmt.Fprintf(w, "\nexample:\n%s\n", h.example)
	}
}

func printFlags(w io.Writer, fs *flag.FlagSet) {
	out := fs.Output()
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(out)
}

func summaryOf(name string) string {
	for _, c := range commands() {
		if c.name == name {
			return c.summary
		}
	}
	return ""
}

// usage is the list of commands: "task-job -h" and "task-job help".
func usage(w io.Writer) {
	fmt.Fprint(w, "task-job: a secure host job runner\n\n"+
		"usage: task-job [-config=FILE] [-alsologtostderr] [-log_dir=DIR]   run the executor\n"+
		"       task-job COMMAND [flags] [ARGS]\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-10s %s\n", "help", "show a command's flags and an example: task-job help COMMAND")
	fmt.Fprint(w, "\nexecutor flags (task-job [flags], or task-job serve [flags]):\n")
	fs, _ := serveFlags("task-job", new(string))
	printFlags(w, fs)
	fmt.Fprint(w, "\nRun 'task-job help COMMAND' or 'task-job COMMAND -h' for a command's flags and an example.\n")
}

// runHelp is "task-job help [COMMAND]".
func runHelp(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return 0
	}
	if len(args) > 1 {
		fmt.Fprintf(stderr, "task-job help: want one command, got %d words\nRun 'task-job help' for the list of commands.\n", len(args))
		return 2
	}
	name := args[0]
	if name == "help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == name {
			// A command's -h is its help page, on stdout.
			return c.run([]string{"-h"}, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "task-job help: unknown command %q%s\nRun 'task-job help' for the list of commands.\n", name, didYouMean(name, commandNames()))
	return 2
}

func commandNames() []string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return append(names, "help")
}

// parseFlags parses a command's flags. -h prints the command's help page on
// stdout (exit 0); a mistake prints what was wrong, a "did you mean" when
// a flag is misspelled, and where to read more, on stderr (exit 2). ok
// false means: return code.
func parseFlags(fs *flag.FlagSet, name string, args []string, stdout, stderr io.Writer) (ok bool, code int) {
	err := fs.Parse(args)
	return handleParseError(err, fs, name, stdout, stderr)
}

func handleParseError(err error, fs *flag.FlagSet, name string, stdout, stderr io.Writer) (ok bool, code int) {
	if err == nil {
		return true, 0
	}
	if errors.Is(err, flag.ErrHelp) {
		if name == "serve" && fs.Name() == "task-job" {
			usage(stdout)
		} else {
			printHelp(stdout, name, fs)
		}
		return false, 0
	}
	fmt.Fprintf(stderr, "%s: %v%s\n", fs.Name(), err, flagSuggestion(err, fs))
	fmt.Fprintf(stderr, "Run '%s' for its flags.\n", helpCommand(name, fs))
	return false, 2
}

func helpCommand(name string, fs *flag.FlagSet) string {
	if fs.Name() == "task-job" {
		return "task-job -h"
	}
	return "task-job help " + name
}

// quietFlagSet is a flag set that prints nothing itself: parseFlags says
// what went wrong, with a suggestion.
func quietFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// usageError reports wrong positional arguments: what was wrong, the usage
// line, and where to read more. It returns the exit code, 2.
func usageError(stderr io.Writer, name, format string, a ...any) int {
	fmt.Fprintf(stderr, "task-job %s: %s\nusage: %s\nRun 'task-job help %s' for its flags.\n", name, fmt.Sprintf(format, a...), helpPages[name].usage, name)
	return 2
}

// flagSuggestion turns the flag package's "flag provided but not defined:
// -confg" into " (did you mean -config?)" when a defined flag is close.
func flagSuggestion(err error, fs *flag.FlagSet) string {
	const prefix = "flag provided but not defined: "
	msg := err.Error()
	// submit's -timeout is the task's (seconds), while logs' -timeout is
	// the wait's (a duration): "submit -timeout=30s" meant the wait.
	if strings.HasPrefix(msg, `invalid value "`) && strings.Contains(msg, `" for flag -timeout:`) && fs.Lookup("wait_timeout") != nil {
		return " (-timeout is the task's own timeout, in seconds; to give up waiting use -wait_timeout, e.g. -wait_timeout=30s)"
	}
	if !strings.HasPrefix(msg, prefix) {
		return ""
	}
	bad := strings.TrimLeft(strings.TrimPrefix(msg, prefix), "-")
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	if s := suggest.Nearest(bad, names); s != "" {
		return " (did you mean -" + s + "?)"
	}
	return ""
}

// didYouMean is " (did you mean "x"?)" for the closest of names, or "".
func didYouMean(word string, names []string) string {
	if s := suggest.Nearest(word, names); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	return ""
}
