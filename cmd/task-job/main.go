// Command task-job is a secure host job runner: it takes JSON tasks from a
// Redis list, runs each confined to cmd_dir, streams its output back and
// reports exactly one result. Run without a subcommand it is the executor,
// started the way the original tool was:
//
//	task-job -config=/tmp/config.json -alsologtostderr
//
// Subcommands for people: dev, submit, kill, status, logs, policy, audit,
// version.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/taskjob/task-job/sandbox"
	"github.com/taskjob/task-job/sandbox/nsinit"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

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
		{"serve", "run the executor (the default when no subcommand is given)", runServe},
		{"dev", "quick start: an embedded in-memory Redis endpoint and an executor, nothing to install", runDev},
		{"submit", "submit a task: task-job submit [flags] CMDLINE [ARG...]", runSubmit},
		{"kill", "kill a task by id: task-job kill [flags] ID", runKill},
		{"status", "show a task's status by id: task-job status [flags] ID", runStatus},
		{"logs", "print a task's output; -f follows it to its done", runLogs},
		{"policy", "check a policy file, and what it decides for a task: task-job policy check FILE [TASK.json|-]", runPolicy},
		{"audit", "review the audit log, or -verify its chain: task-job audit -config=FILE [filters]", runAudit},
		{"version", "print the version", runVersion},
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		if args[0] == "help" {
			usage(stdout)
			return 0
		}
		for _, c := range commands() {
			if c.name == args[0] {
				return c.run(args[1:], stdout, stderr)
			}
		}
		fmt.Fprintf(stderr, "task-job: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	return runServe(args, stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprint(w, "task-job: a secure host job runner\n\n"+
		"usage: task-job [-config=FILE] [-alsologtostderr] [-log_dir=DIR]   run the executor\n"+
		"       task-job COMMAND [flags]\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nRun 'task-job COMMAND -h' for a command's flags.\n")
}

func runVersion(_ []string, stdout, _ io.Writer) int {
	fmt.Fprintln(stdout, "task-job", version)
	return 0
}
