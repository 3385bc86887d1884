package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/taskjob/task-job/policy"
	"github.com/taskjob/task-job/task"
)

// policyStdin is where "policy check POLICY -" reads the task; tests replace it.
var policyStdin io.Reader = os.Stdin

// runPolicy is "task-job policy check": a dry run of the policy, for
// operators editing policy.hcl and for CI checking it before it ships.
func runPolicy(args []string, stdout, stderr io.Writer) int {
	fs := quietFlagSet("task-job policy check")
	asJSON := fs.Bool("json", false, "print the result as JSON (with a task: the decision)")
	verbose := fs.Bool("v", false, "list every rule with its effective limits")
	checkUsers := fs.Bool("users", true, "check that the users and groups the policy names exist on this host (-users=false to check a policy for another host)")
	if len(args) == 0 || args[0] != "check" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help") {
			printHelp(stdout, "policy", fs)
			return 0
		}
		what := "missing the subcommand check"
		if len(args) > 0 {
			what = fmt.Sprintf("unknown subcommand %q%s", args[0], didYouMean(args[0], []string{"check"}))
		}
		return usageError(stderr, "policy", "%s", what)
	}
	pos, err := parsePolicyArgs(fs, args[1:])
	if ok, code := handleParseError(err, fs, "policy", stdout, stderr); !ok {
		return code
	}
	if len(pos) < 1 || len(pos) > 2 {
		return usageError(stderr, "policy", "want POLICY_FILE and at most one TASK_JSON_FILE, got %d arguments", len(pos))
	}
	file := pos[0]

	p, err := policy.Load(file)
	var perr *policy.Error
	if err != nil && !errors.As(err, &perr) {
		fmt.Fprintf(stderr, "task-job policy check: %v\n", err)
		return 2
	}
	if perr == nil && *checkUsers {
		perr = checkPolicyAccounts(p)
	}
	if len(pos) == 1 {
		return reportPolicy(file, p, perr, *asJSON, *verbose, stdout)
	}
	if perr != nil {
		fmt.Fprintf(stderr, "%v\ntask-job policy check: %s is invalid (%s); fix it before checking a task against it\n", perr, file, policyPlural(len(perr.Problems), "problem"))
		return 2
	}

	c, err := readPolicyTask(p, pos[1])
	if err != nil {
		fmt.Fprintf(stderr, "task-job policy check: %v\n", err)
		return 2
	}
	t, req, d := c.Task, c.Request, c.Decision
	if *asJSON {
		b, _ := json.MarshalIndent(d, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		if *verbose {
			listPolicyRules(p, stdout)
		}
		describePolicyDecision(p, t, req, d, stdout)
	}
	if !d.Allowed {
		return 1
	}
	return 0
}

// parsePolicyArgs lets flags come after the file names too
// ("policy check policy.hcl -json"), which is how people type them; "--"
// still ends the flags.
func parsePolicyArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	return parseInterspersed(fs, args)
}

// checkPolicyAccounts finds the users and groups the policy names that do
// not exist on this host: a task under such a rule could never start. A
// numeric id needs no entry in the host's user database.
func checkPolicyAccounts(p *policy.Policy) *policy.Error {
	var problems []policy.Problem
	seen := map[string]bool{}
	for _, r := range p.RuleList() {
		for _, a := range []struct{ kind, name string }{{"user", r.Limits.User}, {"group", r.Limits.Group}} {
			if a.name == "" || isNumeric(a.name) || seen[a.kind+":"+a.name] {
				continue // reported once, at the first rule that needs it
			}
			seen[a.kind+":"+a.name] = true
			var err error
			if a.kind == "user" {
				_, err = user.Lookup(a.name)
			} else {
				_, err = user.LookupGroup(a.name)
			}
			if err == nil {
				continue
			}
			var unknownUser user.UnknownUserError
			var unknownGroup user.UnknownGroupError
			msg := fmt.Sprintf("rule %q: %s %q does not exist on this host (create it, name another, or check with -users=false for another host)", r.Name, a.kind, a.name)
			if !errors.As(err, &unknownUser) && !errors.As(err, &unknownGroup) {
				msg = fmt.Sprintf("rule %q: %s %q cannot be looked up: %v", r.Name, a.kind, a.name, err)
			}
			problems = append(problems, policy.Problem{File: p.File(), Line: r.Line, Column: 1, Message: msg})
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return &policy.Error{Problems: problems}
}

func isNumeric(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}

// reportPolicy prints the result of validating a policy file alone.
func reportPolicy(file string, p *policy.Policy, perr *policy.Error, asJSON, verbose bool, stdout io.Writer) int {
	if asJSON {
		out := struct {
			File     string            `json:"file"`
			OK       bool              `json:"ok"`
			Rules    []policy.RuleInfo `json:"rules,omitempty"`
			Problems []policy.Problem  `json:"problems,omitempty"`
		}{File: file, OK: perr == nil}
		if perr != nil {
			out.Problems = perr.Problems
		} else {
			out.Rules = p.RuleList()
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
	} else if perr != nil {
		fmt.Fprintf(stdout, "%v\n%s: %s, not valid\n", perr, file, policyPlural(len(perr.Problems), "problem"))
	} else {
		fmt.Fprintf(stdout, "%s: %s, OK\n", file, policyPlural(p.Rules(), "rule"))
		if verbose {
			listPolicyRules(p, stdout)
		}
	}
	if perr != nil {
		return 1
	}
	return 0
}

// readPolicyTask reads the task file and dry-runs it (policy.CheckTask,
// which the management server's policy page uses too).
func readPolicyTask(p *policy.Policy, name string) (*policy.Check, error) {
	var (
		raw []byte
		err error
	)
	if name == "-" {
		raw, err = io.ReadAll(io.LimitReader(policyStdin, 1<<20+1))
	} else {
		var f *os.File
		if f, err = os.Open(name); err == nil {
			raw, err = io.ReadAll(io.LimitReader(f, 1<<20+1))
			f.Close()
		}
	}
	if err != nil {
		return nil, err
	}
	if name == "-" {
		name = "stdin"
	}
	c, err := p.CheckTask(raw, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

func listPolicyRules(p *policy.Policy, w io.Writer) {
	for _, r := range p.RuleList() {
		fmt.Fprintf(w, "\nrule %q (%s:%d)\n", r.Name, p.File(), r.Line)
		if r.Description != "" {
			fmt.Fprintf(w, "  %s\n", strings.ReplaceAll(r.Description, "\n", "\n  "))
		}
		fmt.Fprintf(w, "  %-9s %s\n", "cmdline", r.Cmdline)
		args := "none"
		if len(r.Args) > 0 {
			args = policyQuoteAll(r.Args)
		}
		if r.ArgsRest != "" {
			args += ", then any number matching " + strconv.Quote(r.ArgsRest)
		}
		fmt.Fprintf(w, "  %-9s %s\n", "args", args)
		keys := "any task, signed or not"
		if r.Keys != nil {
			keys = policyQuoteAll(r.Keys)
		}
		fmt.Fprintf(w, "  %-9s %s\n", "keys", keys)
		printPolicyLimits(w, r.Limits, "timeout", "cap")
	}
	fmt.Fprintln(w)
}

func describePolicyDecision(p *policy.Policy, t *task.Task, req policy.Request, d policy.Decision, w io.Writer) {
	who := "unsigned"
	if req.KeyID != "" {
		who = fmt.Sprintf("signed by key %q (the signature is not verified here)", req.KeyID)
	}
	fmt.Fprintf(w, "task %q: cmdline %q, %s, %s\n", t.ID, req.Cmdline, policyPlural(len(req.Args), "argument"), who)
	if !d.Allowed {
		fmt.Fprintf(w, "refused: %s\n", d.Reason)
		return
	}
	r, _ := p.Rule(d.Rule)
	fmt.Fprintf(w, "allowed by rule %q (%s:%d)\n", d.Rule, p.File(), r.Line)
	if r.Description != "" {
		fmt.Fprintf(w, "  %s\n", strings.ReplaceAll(r.Description, "\n", "\n  "))
	}
	printPolicyLimits(w, d.Limits, "timeout", "")
	for _, n := range d.Notes {
		fmt.Fprintf(w, "  %-9s %s\n", "note", n)
	}
}

// printPolicyLimits shows every limit, saying plainly which ones the policy
// leaves to the executor's configuration.
func printPolicyLimits(w io.Writer, l policy.Limits, timeoutLabel, timeoutSuffix string) {
	const unset = "(not set: the executor's default)"
	or := func(s string, set bool) string {
		if !set {
			return unset
		}
		return s
	}
	fmt.Fprintf(w, "  %-9s %s\n", "user", or(l.User, l.User != ""))
	fmt.Fprintf(w, "  %-9s %s\n", "group", or(l.Group, l.Group != ""))
	fmt.Fprintf(w, "  %-9s %s\n", "memory", or(fmt.Sprintf("%s (%d bytes)", policy.FormatSize(l.MemoryBytes), l.MemoryBytes), l.MemoryBytes != 0))
	cores := strconv.FormatFloat(l.CPUCores, 'g', -1, 64) + " cores"
	if l.CPUCores == 1 {
		cores = "1 core"
	}
	fmt.Fprintf(w, "  %-9s %s\n", "cpu", or(cores, l.CPUCores != 0))
	fmt.Fprintf(w, "  %-9s %s\n", "pids", or(strconv.FormatInt(l.Pids, 10), l.Pids != 0))
	timeout := "none"
	if l.Timeout > 0 {
		timeout = fmt.Sprintf("%s (%gs)", l.Timeout, l.Timeout.Seconds())
		if timeoutSuffix != "" {
			timeout += " " + timeoutSuffix
		}
	}
	fmt.Fprintf(w, "  %-9s %s\n", timeoutLabel, timeout)
	network := "none"
	if l.Network {
		network = "the host's"
	}
	fmt.Fprintf(w, "  %-9s %s\n", "network", network)
	if len(l.Env) == 0 {
		fmt.Fprintf(w, "  %-9s %s\n", "env", "(nothing added)")
	}
	for _, kv := range l.Env {
		fmt.Fprintf(w, "  %-9s %s\n", "env", kv)
	}
}

func policyQuoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func policyPlural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}
