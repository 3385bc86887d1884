package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/taskjob/task-job/sandbox"
	"github.com/taskjob/task-job/sandbox/nsinit"
)

// users are the table's columns: the default task user and a root rule's.
var users = []string{"nobody", "root"}

func run() {
	if filepath.Base(os.Args[0]) == sandbox.InitName {
		// Without a task-job-init next to it, the sandbox re-executes this
		// binary as its setup helper.
		nsinit.Main()
	}
	outside := flag.Bool("run", false, "run the probe inside the sandbox and print the table (needs root)")
	initPath := flag.String("init", os.Getenv("TASK_JOB_INIT"), "the task-job-init helper (default: next to this binary, else this binary re-executed)")
	noop := flag.Bool("noop", false, "exit at once (the child of the clone probes)")
	flag.Parse()
	switch {
	case *noop:
		return
	case *outside:
		table, err := audit(*initPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
			os.Exit(1)
		}
		fmt.Print(table)
	default:
		inside(os.Stdout)
	}
}

// audit runs the probe in the sandbox once per user and returns the table.
func audit(initPath string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	cmdDir, err := os.MkdirTemp("", "task-job-audit-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(cmdDir)
	if err := os.Chmod(cmdDir, 0o755); err != nil {
		return "", err
	}
	prog := filepath.Join(cmdDir, "probe")
	if err := copyFile(self, prog); err != nil {
		return "", err
	}
	r, err := sandbox.New(sandbox.Options{
		Isolate: true, Require: true, InitPath: initPath,
		CgroupName: "task-job-audit-" + strconv.Itoa(os.Getpid()),
	})
	if err != nil {
		return "", err
	}
	defer r.Close()
	env := []string{"PATH=/usr/bin:/bin", "PROBE_HOST_NS=" + hostNamespaces(), "PROBE_CMD_DIR=" + cmdDir}
	var results []map[string]string
	var order []string
	for _, u := range users {
		var out strings.Builder
		p, err := r.Start(sandbox.Spec{
			Path: prog, Args: []string{"probe"}, Dir: cmdDir, Env: env, Name: "audit-" + u,
			Stdout: &out, Stderr: &out, Limits: sandbox.Limits{User: u},
		})
		if err != nil {
			return "", err
		}
		res, err := p.Wait()
		if err != nil {
			return "", err
		}
		if res.ExitCode != 0 {
			return "", fmt.Errorf("the probe as %s exited %d: %s", u, res.ExitCode, out.String())
		}
		m := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			k, v, ok := strings.Cut(line, "\t")
			if !ok {
				return "", fmt.Errorf("the probe as %s wrote %q", u, line)
			}
			if _, seen := m[k]; !seen && len(results) == 0 {
				order = append(order, k)
			}
			m[k] = v
		}
		results = append(results, m)
	}
	var b strings.Builder
	b.WriteString("| check | " + strings.Join(users, " | ") + " |\n|---|" + strings.Repeat("---|", len(users)) + "\n")
	for _, k := range order {
		b.WriteString("| " + k)
		for _, m := range results {
			b.WriteString(" | " + m[k])
		}
		b.WriteString(" |\n")
	}
	return b.String(), nil
}

// hostNamespaces names the namespaces of this process, "pid:4026531836,...",
// so that the probe can tell its own from the executor's.
func hostNamespaces() string {
	var parts []string
	for _, ns := range namespaces {
		if l, err := os.Readlink("/proc/self/ns/" + ns); err == nil {
			parts = append(parts, ns+"="+l)
		}
	}
	return strings.Join(parts, ",")
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
