// Command task-job is a secure host job runner: it takes JSON tasks from a
// Redis list, runs each confined to cmd_dir, streams its output back and
// reports exactly one result. Run without a subcommand it is the executor,
// started the way the original tool was:
//
//	task-job -config=/tmp/config.json -alsologtostderr
//
// Subcommands for people: dev, submit, kill, status, logs, ps, executors,
// dispatcher, cordon, uncordon, drain, policy, audit, doctor, server, version, completion, help.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/taskjob/task-job/sandbox"
	"github.com/taskjob/task-job/sandbox/nsinit"
)

func main() {
	if filepath.Base(os.Args[0]) == sandbox.InitName {
		// Re-executed as the sandbox's per-task setup step, because no
		// task-job-init was installed next to this binary.
		nsinit.Main()
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"serve", "run the executor (the default when no command is given)", runServeCommand},
		{"dev", "quick start: an embedded in-memory Redis endpoint and an executor, nothing to install", runDev},
		{"submit", "submit a task, and with -wait print its output and result", runSubmit},
		{"kill", "kill a running task, or cancel a queued one, by id", runKill},
		{"status", "show a task's state and result by id", runStatus},
		{"logs", "print a task's output by id; -f follows it to its done", runLogs},
		{"ps", "list running and recent tasks, newest first, with filters", runPs},
		{"executors", "list the executors: alive, busy, version, what confines their tasks", runExecutors},
		{"dispatcher", "run a dispatcher replica: the elected leader assigns tasks to dispatched executors", runDispatcher},
		{"cordon", "give an executor no new tasks from the dispatcher", runCordon},
		{"uncordon", "let the dispatcher give an executor tasks again", runUncordon},
		{"drain", "cordon an executor and give its assigned, untaken tasks back", runDrain},
		{"policy", "check a policy file, and what it decides for a task (policy check)", runPolicy},
		{"audit", "review the audit log, or -verify its hash chain", runAudit},
		{"doctor", "check this host and a config: what the executor would enforce, what to fix", runDoctor},
		{"server", "serve the management API, web page and /metrics alone, running no task", runServer},
		{"version", "print the version, commit and build date", runVersion},
		{"completion", "print a bash or zsh completion script: task-job completion bash|zsh", runCompletion},
	}
}

// Exit codes shared by the commands.
const (
	exitOK      = 0
	exitFailed  = 1 // the task failed, the id is unknown, Redis is unreachable...
	exitUsage   = 2 // a mistake on the command line
	exitTimeout = 3 // gave up waiting (-wait_timeout, -timeout)
	exitSignal  = 130
)

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		name := args[0]
		if name == "help" {
			return runHelp(args[1:], stdout, stderr)
		}
		for _, c := range commands() {
			if c.name == name {
				return c.run(args[1:], stdout, stderr)
			}
		}
		fmt.Fprintf(stderr, "task-job: unknown command %q%s\nRun 'task-job help' for the list of commands.\n", name, didYouMean(name, commandNames()))
		return exitUsage
	}
	return runServe(args, stdout, stderr)
}
