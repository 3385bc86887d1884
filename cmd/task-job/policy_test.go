package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testPolicyHCL = `defaults {
  user    = "nobody"
  memory  = "256MiB"
  timeout = "30m"
  env     = { LANG = "C.UTF-8" }
}

rule "install" {
  description = "install a feature branch"
  cmdline = "install.sh"
  args    = ["^feature/[A-Za-z0-9._/-]+$"]
  user    = "root"
  memory  = "1GiB"
  network = true
}

rule "deploy" {
  cmdline = "deploy.sh"
  keys    = ["ci"]
}
`

func writePolicyFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPolicyCheck(t *testing.T) {
	dir := writePolicyFiles(t, map[string]string{
		"policy.hcl":   testPolicyHCL,
		"bad.hcl":      "rule \"a\" {\n  cmdline = \"a;b\"\n  memroy = \"1GiB\"\n}\n",
		"one.hcl":      "rule \"a\" {\n  cmdline = \"a.sh\"\n}\n",
		"nouser.hcl":   "rule \"a\" {\n  cmdline = \"a.sh\"\n  user = \"4242\"\n}\nrule \"b\" {\n  cmdline = \"b.sh\"\n  user = \"no-such-user-tj\"\n}\n",
		"allowed.json": `{"id":"101","type":"test","tube":"","task":{"cmdline":"install.sh","cmd_args":["feature/homestead"],"timeout":7200}}`,
		"refused.json": `{"id":"102","type":"test","tube":"","task":{"cmdline":"install.sh","cmd_args":["x;rm"]}}`,
		"signed.json":  `{"id":"103","type":"t","tube":"","task":{"cmdline":"deploy.sh"},"sig":{"key":"web","ts":1,"mac":"` + strings.Repeat("ab", 32) + `"}}`,
		"signed-ci.json": `{"id":"104","type":"t","tube":"","task":{"cmdline":"deploy.sh"},"sig":{"key":"ci","ts":1,"mac":"` +
			strings.Repeat("ab", 32) + `"}}`,
		"badtask.json": `{"id":"105","task":{"cmdline":"x","cmd_arg":["y"]}}`,
	})
	p := func(name string) string { return filepath.Join(dir, name) }
	tests := []struct {
		name    string
		args    []string
		code    int
		stdout  []string // fragments, in order
		stderr  string
		noStdin bool
	}{
		{name: "valid policy", args: []string{"check", p("policy.hcl")}, code: 0, stdout: []string{p("policy.hcl") + ": 2 rules, OK\n"}},
		{name: "one rule", args: []string{"check", p("one.hcl")}, code: 0, stdout: []string{": 1 rule, OK"}},
		{name: "invalid policy: every problem", args: []string{"check", p("bad.hcl")}, code: 1, stdout: []string{
			p("bad.hcl") + `:2:13: cmdline "a;b" cannot be split`, "\n" + p("bad.hcl") + `:3:3: Unsupported argument`, "2 problems, not valid"}},
		{name: "verbose lists rules", args: []string{"check", "-v", p("policy.hcl")}, code: 0, stdout: []string{
			"2 rules, OK", `rule "install" (` + p("policy.hcl") + `:8)`, "install a feature branch", "user      root", "memory    1GiB (1073741824 bytes)",
			`rule "deploy"`, `keys      ["ci"]`, "timeout   30m0s (1800s) cap"}},
		{name: "allowed", args: []string{"check", p("policy.hcl"), p("allowed.json")}, code: 0, stdout: []string{
			`task "101": cmdline "install.sh", 1 argument, unsigned`,
			`allowed by rule "install" (` + p("policy.hcl") + `:8)`,
			"  install a feature branch",
			"user      root", "group     (not set: the executor's default)", "memory    1GiB", "cpu       (not set",
			"timeout   30m0s (1800s)", "network   the host's", "env       LANG=C.UTF-8",
			"note      timeout 7200s lowered to the defaults' cap 1800s"}},
		{name: "flags after the files", args: []string{"check", p("policy.hcl"), p("allowed.json"), "-json"}, code: 0, stdout: []string{`"allowed": true`}},
		{name: "refused", args: []string{"check", p("policy.hcl"), p("refused.json")}, code: 1, stdout: []string{
			`task "102"`, `refused: policy: rule "install" refuses argument 1 "x;rm": it must match ^feature/[A-Za-z0-9._/-]+$`}},
		{name: "signed by the wrong key", args: []string{"check", p("policy.hcl"), p("signed.json")}, code: 1, stdout: []string{
			`signed by key "web" (the signature is not verified here)`, `refused: policy: rule "deploy" is only for keys ["ci"], the task is signed by "web"`}},
		{name: "signed by the right key", args: []string{"check", p("policy.hcl"), p("signed-ci.json")}, code: 0, stdout: []string{`allowed by rule "deploy"`}},
		{name: "json refused", args: []string{"check", "-json", p("policy.hcl"), p("refused.json")}, code: 1, stdout: []string{`"allowed": false`, `"reason": "policy: rule \"install\" refuses argument 1`}},
		{name: "json validation", args: []string{"check", "-json", p("bad.hcl")}, code: 1, stdout: []string{`"ok": false`, `"line": 2`, `"column": 13`}},
		{name: "invalid task", args: []string{"check", p("policy.hcl"), p("badtask.json")}, code: 2, stderr: `unknown field "cmd_arg"`},
		{name: "invalid policy with a task", args: []string{"check", p("bad.hcl"), p("allowed.json")}, code: 2, stderr: "bad.hcl is invalid (2 problems)"},
		{name: "missing policy", args: []string{"check", p("none.hcl")}, code: 2, stderr: "none.hcl: no such file"},
		{name: "missing task", args: []string{"check", p("policy.hcl"), p("none.json")}, code: 2, stderr: "none.json: no such file"},
		{name: "no subcommand", args: nil, code: 2, stderr: "usage: task-job policy check"},
		{name: "unknown subcommand", args: []string{"lint", p("policy.hcl")}, code: 2, stderr: "usage: task-job policy check"},
		{name: "no file", args: []string{"check"}, code: 2, stderr: "want POLICY_FILE and at most one TASK_JSON_FILE, got 0 arguments"},
		{name: "too many files", args: []string{"check", "a", "b", "c"}, code: 2, stderr: "got 3 arguments"},
		{name: "unknown flag", args: []string{"check", "-jsn", p("policy.hcl")}, code: 2, stderr: "flag provided but not defined: -jsn"},
		{name: "help", args: []string{"check", "-h"}, code: 0, stdout: []string{"usage: task-job policy check", "flags:", "-users", "example:"}},
		{name: "user missing on this host", args: []string{"check", p("nouser.hcl")}, code: 1, stdout: []string{
			p("nouser.hcl") + `:5:1: rule "b": user "no-such-user-tj" does not exist on this host`, "1 problem, not valid"}},
		{name: "user check off", args: []string{"check", "-users=false", p("nouser.hcl")}, code: 0, stdout: []string{"2 rules, OK"}},
		{name: "double dash", args: []string{"check", "--", p("policy.hcl")}, code: 0, stdout: []string{"2 rules, OK"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := runPolicy(tc.args, &out, &errOut)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out.String(), errOut.String())
			}
			rest := out.String()
			for _, frag := range tc.stdout {
				i := strings.Index(rest, frag)
				if i < 0 {
					t.Fatalf("stdout lacks (in order) %q:\n%s", frag, out.String())
				}
				rest = rest[i+len(frag):]
			}
			if !strings.Contains(errOut.String(), tc.stderr) {
				t.Fatalf("stderr lacks %q:\n%s", tc.stderr, errOut.String())
			}
		})
	}
}

func TestPolicyCheckStdin(t *testing.T) {
	dir := writePolicyFiles(t, map[string]string{"policy.hcl": testPolicyHCL})
	old := policyStdin
	t.Cleanup(func() { policyStdin = old })
	policyStdin = strings.NewReader(`{"id":"7","type":"","tube":"","task":{"cmdline":"install.sh","cmd_args":["feature/x"],"timeout":60}}`)

	var out, errOut bytes.Buffer
	if code := runPolicy([]string{"check", "-json", filepath.Join(dir, "policy.hcl"), "-"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	var d struct {
		Allowed bool
		Rule    string
		Limits  struct {
			User           string  `json:"user"`
			MemoryBytes    int64   `json:"memory_bytes"`
			TimeoutSeconds float64 `json:"timeout_seconds"`
			Network        bool    `json:"network"`
		}
	}
	if err := json.Unmarshal(out.Bytes(), &d); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !d.Allowed || d.Rule != "install" || d.Limits.User != "root" || d.Limits.MemoryBytes != 1<<30 || d.Limits.TimeoutSeconds != 60 || !d.Limits.Network {
		t.Fatalf("decision %+v from\n%s", d, out.String())
	}

	policyStdin = strings.NewReader("not json")
	out.Reset()
	errOut.Reset()
	if code := runPolicy([]string{"check", filepath.Join(dir, "policy.hcl"), "-"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "stdin: task: malformed JSON") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

// The sample policy at the repository root passes its own check.
func TestPolicyCheckSample(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runPolicy([]string{"check", "../../policy.hcl"}, &out, &errOut); code != 0 || !strings.HasSuffix(out.String(), "rules, OK\n") {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
}
