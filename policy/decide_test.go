package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const decidePolicy = `
defaults {
  user    = "nobody"
  memory  = "256MiB"
  cpu     = 1.0
  pids    = 128
  timeout = "30m"
  env     = { LANG = "C.UTF-8", MODE = "default" }
}

rule "install" {
  cmdline = "install.sh"
  args    = ["^feature/[A-Za-z0-9._/-]+$"]
  user    = "root"
  memory  = "1GiB"
  network = true
  env     = { MODE = "install", EXTRA = "1" }
}

# Two rules for one cmdline: the narrow one first wins; the broad one takes the rest.
rule "deploy-ci" {
  cmdline = "deploy.sh prod"
  args    = ["v[0-9]+"]
  keys    = ["ci", "release"]
  timeout = "1h"
}
rule "deploy-web" {
  cmdline = "deploy.sh prod"
  args    = ["v[0-9]+", "dry-run"]
  keys    = ["web"]
}

rule "first" {
  cmdline = "order.sh"
  args    = ["a.*"]
  user    = "first"
}
rule "second" {
  cmdline = "order.sh"
  args    = ["a|b"]
  user    = "second"
}

rule "report" {
  cmdline   = "report.sh"
  args      = ["[0-9]{4}"]
  args_rest = "[a-z]+"
}
rule "anything-lower" {
  cmdline   = "tag.sh"
  args_rest = "[a-z]*"
}

rule "bare" {
  cmdline = "bare.sh"
  timeout = "10m"
}
`

const ignoreLimits = "ignore"

func TestDecide(t *testing.T) {
	p := mustParse(t, decidePolicy)
	defaultEnv := []string{"LANG=C.UTF-8", "MODE=default"}
	tests := []struct {
		name   string
		req    Request
		rule   string // "" = refused
		reason string // exact reason when refused
		limits Limits
		notes  []string
	}{
		{
			name: "allowed, defaults overlaid with the rule, env merged",
			req:  Request{Cmdline: "install.sh", Args: []string{"feature/homestead"}},
			rule: "install",
			limits: Limits{User: "root", MemoryBytes: 1 << 30, CPUCores: 1, Pids: 128, Timeout: 30 * time.Minute, Network: true,
				Env: []string{"EXTRA=1", "LANG=C.UTF-8", "MODE=install"}},
			notes: []string{"no timeout asked: the defaults' cap 1800s applies"},
		},
		{
			name:   "words compared, not text",
			req:    Request{Cmdline: "  'install.sh'\t", Args: []string{"feature/x"}, Timeout: time.Minute},
			rule:   "install",
			limits: Limits{User: "root", MemoryBytes: 1 << 30, CPUCores: 1, Pids: 128, Timeout: time.Minute, Network: true, Env: []string{"EXTRA=1", "LANG=C.UTF-8", "MODE=install"}},
		},
		{
			name:   "no rule for the cmdline",
			req:    Request{Cmdline: "bash -c id"},
			reason: `policy: no rule allows cmdline "bash -c id"`,
		},
		{
			name:   "a cmdline with more words than the rule's",
			req:    Request{Cmdline: "install.sh feature/x"},
			reason: `policy: no rule allows cmdline "install.sh feature/x"`,
		},
		{
			name:   "a cmdline that cannot be split",
			req:    Request{Cmdline: "install.sh; id"},
			reason: `policy: no rule allows cmdline "install.sh; id": unquoted ';' at byte 10`,
		},
		{
			name:   "too many arguments",
			req:    Request{Cmdline: "install.sh", Args: []string{"feature/a", "feature/b"}},
			reason: `policy: rule "install" allows 1 argument, the task has 2`,
		},
		{
			name:   "too few arguments",
			req:    Request{Cmdline: "install.sh"},
			reason: `policy: rule "install" allows 1 argument, the task has 0`,
		},
		{
			name:   "arguments where none are allowed",
			req:    Request{Cmdline: "bare.sh", Args: []string{"x"}},
			reason: `policy: rule "bare" allows no arguments, the task has 1`,
		},
		{
			name:   "argument not matching its pattern",
			req:    Request{Cmdline: "install.sh", Args: []string{"x;rm"}},
			reason: `policy: rule "install" refuses argument 1 "x;rm": it must match ^feature/[A-Za-z0-9._/-]+$`,
		},
		{
			name:   "a partial match is no match",
			req:    Request{Cmdline: "install.sh", Args: []string{"feature/ok\n; rm -rf /"}},
			reason: `policy: rule "install" refuses argument 1 "feature/ok\n; rm -rf /"`,
		},
		{
			name:   "unanchored patterns match whole arguments too",
			req:    Request{Cmdline: "deploy.sh prod", Args: []string{"v12x"}, KeyID: "ci"},
			reason: `policy: rule "deploy-ci" refuses argument 1 "v12x": it must match v[0-9]+`,
		},
		{
			name:   "keys: unsigned",
			req:    Request{Cmdline: "deploy.sh prod", Args: []string{"v1"}},
			reason: `policy: rule "deploy-ci" is only for keys ["ci", "release"], the task is unsigned`,
		},
		{
			name:   "keys: another key",
			req:    Request{Cmdline: "deploy.sh prod", Args: []string{"v1"}, KeyID: "intruder"},
			reason: `policy: rule "deploy-ci" is only for keys ["ci", "release"], the task is signed by "intruder"`,
		},
		{
			name:   "keys: each key its own rule",
			req:    Request{Cmdline: "deploy.sh prod", Args: []string{"v1", "dry-run"}, KeyID: "web"},
			rule:   "deploy-web",
			limits: Limits{User: "nobody", MemoryBytes: 256 << 20, CPUCores: 1, Pids: 128, Timeout: 30 * time.Minute, Env: defaultEnv},
			notes:  []string{"no timeout asked: the defaults' cap 1800s applies"},
		},
		{
			name:   "keys: the closest rule is named (keys accepted, count refused)",
			req:    Request{Cmdline: "deploy.sh prod", Args: []string{"v1"}, KeyID: "web"},
			reason: `policy: rule "deploy-web" allows 2 arguments, the task has 1`,
		},
		{
			name:   "keys refused: the arguments are not examined",
			req:    Request{Cmdline: "deploy.sh prod", Args: []string{"x", "y", "z"}},
			reason: `policy: rule "deploy-ci" is only for keys ["ci", "release"], the task is unsigned`,
		},
		{
			name:   "timeout above the rule's cap is lowered, not refused",
			req:    Request{Cmdline: "deploy.sh prod", Args: []string{"v1"}, KeyID: "release", Timeout: 2 * time.Hour},
			rule:   "deploy-ci",
			limits: Limits{User: "nobody", MemoryBytes: 256 << 20, CPUCores: 1, Pids: 128, Timeout: time.Hour, Env: defaultEnv},
			notes:  []string{"timeout 7200s lowered to the rule's cap 3600s"},
		},
		{
			name:   "timeout above the defaults' cap",
			req:    Request{Cmdline: "install.sh", Args: []string{"feature/x"}, Timeout: 7200 * time.Second},
			rule:   "install",
			limits: Limits{User: "root", MemoryBytes: 1 << 30, CPUCores: 1, Pids: 128, Timeout: 30 * time.Minute, Network: true, Env: []string{"EXTRA=1", "LANG=C.UTF-8", "MODE=install"}},
			notes:  []string{"timeout 7200s lowered to the defaults' cap 1800s"},
		},
		{
			name:   "timeout under the cap is kept",
			req:    Request{Cmdline: "bare.sh", Timeout: 1500 * time.Millisecond},
			rule:   "bare",
			limits: Limits{User: "nobody", MemoryBytes: 256 << 20, CPUCores: 1, Pids: 128, Timeout: 1500 * time.Millisecond, Env: defaultEnv},
		},
		{
			name:   "a negative timeout is none",
			req:    Request{Cmdline: "bare.sh", Timeout: -time.Second},
			rule:   "bare",
			limits: Limits{User: "nobody", MemoryBytes: 256 << 20, CPUCores: 1, Pids: 128, Timeout: 10 * time.Minute, Env: defaultEnv},
			notes:  []string{"no timeout asked: the rule's cap 600s applies"},
		},
		{
			name:   "first match wins",
			req:    Request{Cmdline: "order.sh", Args: []string{"a"}},
			rule:   "first",
			limits: ignoreLimitsValue,
		},
		{
			name:   "a later rule takes what the first refuses",
			req:    Request{Cmdline: "order.sh", Args: []string{"b"}},
			rule:   "second",
			limits: ignoreLimitsValue,
		},
		{
			name:   "equally close refusals name the first rule",
			req:    Request{Cmdline: "order.sh", Args: []string{"c"}},
			reason: `policy: rule "first" refuses argument 1 "c": it must match a.*`,
		},
		{
			name:   "args_rest: none extra",
			req:    Request{Cmdline: "report.sh", Args: []string{"2026"}},
			rule:   "report",
			limits: ignoreLimitsValue,
		},
		{
			name:   "args_rest: several extra",
			req:    Request{Cmdline: "report.sh", Args: []string{"2026", "sales", "hr"}},
			rule:   "report",
			limits: ignoreLimitsValue,
		},
		{
			name:   "args_rest: an extra refused",
			req:    Request{Cmdline: "report.sh", Args: []string{"2026", "sales", "HR"}},
			reason: `policy: rule "report" refuses argument 3 "HR": it must match [a-z]+ (args_rest)`,
		},
		{
			name:   "args_rest: fewer than the fixed patterns",
			req:    Request{Cmdline: "report.sh"},
			reason: `policy: rule "report" needs at least 1 argument, the task has 0`,
		},
		{
			name:   "args_rest only: any number, each checked",
			req:    Request{Cmdline: "tag.sh", Args: []string{"a", "", "zz"}},
			rule:   "anything-lower",
			limits: ignoreLimitsValue,
		},
		{
			name:   "a huge argument is cut short in the reason",
			req:    Request{Cmdline: "install.sh", Args: []string{strings.Repeat("é", 1000)}},
			reason: `(2000 bytes): it must match`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(tc.req)
			if tc.rule == "" {
				if d.Allowed || d.Rule != "" {
					t.Fatalf("allowed by %q; want refused with %q", d.Rule, tc.reason)
				}
				if !strings.HasPrefix(d.Reason, "policy: ") || !strings.Contains(d.Reason, tc.reason) {
					t.Fatalf("reason is\n  %s\nwant\n  %s", d.Reason, tc.reason)
				}
				if fmt.Sprint(d.Limits) != fmt.Sprint(Limits{}) || d.Notes != nil {
					t.Errorf("a refusal carries limits %+v, notes %q", d.Limits, d.Notes)
				}
				return
			}
			if !d.Allowed || d.Rule != tc.rule || d.Reason != "" {
				t.Fatalf("decision %+v; want allowed by %q", d, tc.rule)
			}
			if fmt.Sprint(tc.limits) == fmt.Sprint(ignoreLimitsValue) {
				return
			}
			if fmt.Sprint(d.Limits) != fmt.Sprint(tc.limits) {
				t.Errorf("limits\n  %+v\nwant\n  %+v", d.Limits, tc.limits)
			}
			if !slices.Equal(d.Notes, tc.notes) {
				t.Errorf("notes %q, want %q", d.Notes, tc.notes)
			}
		})
	}
}

// ignoreLimitsValue marks cases that check only the rule chosen.
var ignoreLimitsValue = Limits{User: ignoreLimits}

// With no defaults and a rule that sets nothing, every limit is zero: the
// caller's own configuration applies.
func TestDecideLeavesUnsetLimitsZero(t *testing.T) {
	p := mustParse(t, "rule \"a\" {\n  cmdline = \"a.sh\"\n}\n")
	d := p.Decide(Request{Cmdline: "a.sh", Timeout: 5 * time.Second})
	want := Limits{Timeout: 5 * time.Second}
	if !d.Allowed || fmt.Sprint(d.Limits) != fmt.Sprint(want) || d.Notes != nil {
		t.Fatalf("decision %+v; want allowed with %+v and no notes", d, want)
	}
	if d := p.Decide(Request{Cmdline: "a.sh"}); d.Limits.Timeout != 0 {
		t.Fatalf("no cap and no timeout asked gave %v", d.Limits.Timeout)
	}
}

// A rule's env value replaces the default's for the same name, and a
// rule can set a limit the defaults do not have.
func TestDecideDefaultsInheritance(t *testing.T) {
	p := mustParse(t, `
defaults {
  user    = "nobody"
  group   = "jobs"
  network = true
  env     = { A = "default", B = "default" }
}
rule "override" {
  cmdline = "a.sh"
  group   = "other"
  network = false
  pids    = 10
  env     = { B = "rule", C = "rule" }
}
`)
	d := p.Decide(Request{Cmdline: "a.sh"})
	want := Limits{User: "nobody", Group: "other", Pids: 10, Network: false, Env: []string{"A=default", "B=rule", "C=rule"}}
	if fmt.Sprint(d.Limits) != fmt.Sprint(want) {
		t.Fatalf("limits %+v, want %+v", d.Limits, want)
	}
}

// Decisions are the caller's to change: changing one must not change the
// policy or the next decision.
func TestDecideReturnsCopies(t *testing.T) {
	p := mustParse(t, decidePolicy)
	r := Request{Cmdline: "install.sh", Args: []string{"feature/x"}}
	d := p.Decide(r)
	d.Limits.Env[0] = "PWNED=1"
	if again := p.Decide(r); again.Limits.Env[0] != "EXTRA=1" {
		t.Fatalf("a caller's change leaked into the policy: %q", again.Limits.Env)
	}
	info, _ := p.Rule("install")
	info.Args[0] = ".*"
	if again := p.Decide(Request{Cmdline: "install.sh", Args: []string{"x"}}); again.Allowed {
		t.Fatal("changing a RuleInfo changed the policy")
	}
}

func TestDecideNilPolicyRefuses(t *testing.T) {
	var p *Policy
	if d := p.Decide(Request{Cmdline: "a.sh"}); d.Allowed || !strings.HasPrefix(d.Reason, "policy: ") {
		t.Fatalf("nil policy: %+v", d)
	}
}

// Run with -race: one policy, many goroutines.
func TestDecideConcurrently(t *testing.T) {
	p := mustParse(t, decidePolicy)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				arg := fmt.Sprintf("feature/%d-%d", i, j)
				if d := p.Decide(Request{Cmdline: "install.sh", Args: []string{arg}}); !d.Allowed {
					t.Errorf("refused %q: %s", arg, d.Reason)
					return
				}
				if d := p.Decide(Request{Cmdline: "install.sh", Args: []string{arg + ";"}}); d.Allowed {
					t.Errorf("allowed %q", arg+";")
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestDecisionJSON(t *testing.T) {
	p := mustParse(t, decidePolicy)
	d := p.Decide(Request{Cmdline: "deploy.sh prod", Args: []string{"v1"}, KeyID: "ci", Timeout: 3 * time.Hour})
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"allowed":true,"rule":"deploy-ci","limits":{"user":"nobody","memory_bytes":268435456,"cpu_cores":1,"pids":128,"timeout_seconds":3600,"network":false,"env":["LANG=C.UTF-8","MODE=default"]},"notes":["timeout 10800s lowered to the rule's cap 3600s"]}`
	if string(b) != want {
		t.Fatalf("JSON\n  %s\nwant\n  %s", b, want)
	}
	var back Decision
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(back) != fmt.Sprint(d) {
		t.Fatalf("round trip\n  %+v\nwant\n  %+v", back, d)
	}
}
