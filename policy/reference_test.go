package policy

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// testdata/reference.hcl is quoted in the README: every decision its
// comments promise is checked here.
func TestReferencePolicy(t *testing.T) {
	p, err := Load("testdata/reference.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if p.Rules() != 4 {
		t.Fatalf("Rules() = %d, want 4", p.Rules())
	}
	tests := []struct {
		req    Request
		rule   string // "" = refused
		reason string
		check  func(t *testing.T, d Decision)
	}{
		{req: Request{Cmdline: "install.sh", Args: []string{"feature/homestead"}}, rule: "install", check: func(t *testing.T, d Decision) {
			want := Limits{User: "root", MemoryBytes: 1 << 30, CPUCores: 1, Pids: 128, Timeout: 30 * time.Minute, Network: true, Env: []string{"LANG=C.UTF-8"}}
			if fmt.Sprint(d.Limits) != fmt.Sprint(want) {
				t.Errorf("limits %+v, want %+v", d.Limits, want)
			}
		}},
		{req: Request{Cmdline: "install.sh", Args: []string{"x;rm"}}, reason: `policy: rule "install" refuses argument 1 "x;rm": it must match ^feature/[A-Za-z0-9._/-]+$`},
		{req: Request{Cmdline: "install.sh", Args: []string{"feature/a", "feature/b"}}, reason: `policy: rule "install" allows 1 argument, the task has 2`},
		{req: Request{Cmdline: "deploy.sh prod", Args: []string{"v1.2.3"}, KeyID: "ci", Timeout: 3 * time.Hour}, rule: "deploy-prod", check: func(t *testing.T, d Decision) {
			if d.Limits.Timeout != time.Hour || d.Limits.User != "nobody" || d.Limits.Network {
				t.Errorf("limits %+v", d.Limits)
			}
			if want := "DEPLOY_ENV=prod LANG=C.UTF-8"; strings.Join(d.Limits.Env, " ") != want {
				t.Errorf("env %q, want %q", d.Limits.Env, want)
			}
			if len(d.Notes) != 1 || d.Notes[0] != "timeout 10800s lowered to the rule's cap 3600s" {
				t.Errorf("notes %q", d.Notes)
			}
		}},
		{req: Request{Cmdline: "deploy.sh prod", Args: []string{"v1.2.3"}}, reason: `policy: rule "deploy-prod" is only for keys ["ci"], the task is unsigned`},
		{req: Request{Cmdline: "deploy.sh prod", Args: []string{"v1.2.3"}, KeyID: "web"}, reason: `policy: rule "deploy-prod" is only for keys ["ci"], the task is signed by "web"`},
		{req: Request{Cmdline: "deploy.sh prod", Args: []string{"v1x2x3"}, KeyID: "ci"}, reason: `policy: rule "deploy-prod" refuses argument 1 "v1x2x3"`},
		{req: Request{Cmdline: "report.sh", Args: []string{"2026-01-31", "sales", "marketing"}}, rule: "report", check: func(t *testing.T, d Decision) {
			if d.Limits.MemoryBytes != 500_000_000 {
				t.Errorf("memory %d, want 500MB = 500000000", d.Limits.MemoryBytes)
			}
		}},
		{req: Request{Cmdline: "cleanup.sh"}, rule: "cleanup", check: func(t *testing.T, d Decision) {
			want := Limits{User: "nobody", MemoryBytes: 256 << 20, CPUCores: 1, Pids: 128, Timeout: 30 * time.Minute, Env: []string{"LANG=C.UTF-8"}}
			if fmt.Sprint(d.Limits) != fmt.Sprint(want) {
				t.Errorf("limits %+v, want %+v", d.Limits, want)
			}
		}},
		{req: Request{Cmdline: "bash -c id"}, reason: `policy: no rule allows cmdline "bash -c id"`},
	}
	for _, tc := range tests {
		t.Run(tc.req.Cmdline+" "+strings.Join(tc.req.Args, " "), func(t *testing.T) {
			d := p.Decide(tc.req)
			switch {
			case tc.rule == "" && (d.Allowed || !strings.HasPrefix(d.Reason, tc.reason)):
				t.Fatalf("decision %+v; want refused: %s", d, tc.reason)
			case tc.rule != "" && (!d.Allowed || d.Rule != tc.rule):
				t.Fatalf("decision %+v; want allowed by %q", d, tc.rule)
			}
			if tc.check != nil {
				tc.check(t, d)
			}
		})
	}
}

// The sample at the repository root is where operators start: it must
// parse, and do what its comments say.
func TestSamplePolicy(t *testing.T) {
	p, err := Load("../policy.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if p.Rules() < 2 {
		t.Fatalf("Rules() = %d", p.Rules())
	}
	allowed := []Request{
		{Cmdline: "install.sh", Args: []string{"feature/homestead"}},
		{Cmdline: "run-tests.sh", Args: []string{"executor", "TestOutage", "TestKill"}},
		{Cmdline: "deploy.sh", Args: []string{"production", "v1.2.3"}, KeyID: "ci"},
	}
	for _, r := range allowed {
		if d := p.Decide(r); !d.Allowed {
			t.Errorf("%+v refused: %s", r, d.Reason)
		}
	}
	refused := []Request{
		{Cmdline: "install.sh", Args: []string{"master; rm -rf /"}},
		{Cmdline: "deploy.sh", Args: []string{"production", "v1.2.3"}},
		{Cmdline: "deploy.sh", Args: []string{"production", "v1.2.3"}, KeyID: "web"},
		{Cmdline: "bash", Args: []string{"-c", "id"}},
	}
	for _, r := range refused {
		if d := p.Decide(r); d.Allowed {
			t.Errorf("%+v allowed by %q", r, d.Rule)
		}
	}
}

// TestReadmeQuotesTheReference: the policy reference in the README is the
// tested file, not a copy that could drift from it.
func TestReadmeQuotesTheReference(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := os.ReadFile("testdata/reference.hcl")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Policy\n")
	if !ok {
		t.Fatal("README has no Policy section")
	}
	_, block, ok := strings.Cut(section, "```hcl\n")
	block, _, closed := strings.Cut(block, "```")
	if !ok || !closed {
		t.Fatal("the README's Policy section has no hcl block")
	}
	// The file starts with two lines saying what it is for.
	want := string(ref)
	for strings.HasPrefix(want, "# The examples") || strings.HasPrefix(want, "# decision") {
		_, want, _ = strings.Cut(want, "\n")
	}
	want = strings.TrimLeft(want, "\n")
	if block != want {
		t.Errorf("the README's policy reference differs from testdata/reference.hcl:\nREADME:\n%s\nfile:\n%s", block, want)
	}
}
