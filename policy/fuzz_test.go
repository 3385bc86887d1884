package policy

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/jail"
)

// FuzzParse: no input panics, every error is well formed, and any policy
// that parses is internally consistent.
func FuzzParse(f *testing.F) {
	for _, path := range []string{"testdata/reference.hcl", "../policy.hcl"} {
		if b, err := os.ReadFile(path); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(decidePolicy))
	for _, s := range []string{
		"",
		"defaults {}",
		"rule \"a\" {\n  cmdline = \"a.sh\"\n}\n",
		"rule \"a\" { cmdline = \"a\" }\nrule \"a\" { cmdline = \"b\" }\n",
		"rule \"a\" {\n  cmdline = \"a\"\n  args = [\"a)|(b\", \"(\"]\n  args_rest = \".*\"\n  keys = []\n}\n",
		"defaults {\n  memory = \"1.5GiB\"\n  cpu = 1e400\n  pids = -1\n  timeout = \"1h\"\n  env = { A = 1, B = true, \"C D\" = \"x\" }\n}\n",
		"rule \"x\" {\n  cmdline = \"${\"a\"}.sh\"\n  user = 65534\n  description = <<EOT\nmulti\nline\nEOT\n}\n",
		"rule \"x\" {\n  cmdline = [for s in [\"a\"] : s][0]\n  args = [for s in [\"a\", \"b\"] : s]\n  env = { for k in [\"A\"] : k => \"v\" }\n}\n",
		"rule \"x\" {\n  cmdline = \"a\"\n  args = [\"\\\\d+\"]\n}\n",
		"rule \"\\u00e9\" { cmdline = \"\\x\" }",
		"defaults {\n  env = { API_KEY = \"k\", X = \"y\" }\n  secret_env = [\"X\", \"X\"]\n}\nrule \"a\" {\n  cmdline = \"a\"\n  secret_env = [\"Z\", \"9\", 1]\n}\n",
		"\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := Parse(src, "fuzz.hcl")
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) || len(perr.Problems) == 0 {
				t.Fatalf("error %T %v is not an *Error with problems", err, err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(perr.Problems) {
				t.Fatalf("%d problems print as %d lines:\n%v", len(perr.Problems), len(lines), err)
			}
			for _, pr := range perr.Problems {
				if pr.Line < 1 || pr.Column < 1 || pr.Message == "" || pr.File != "fuzz.hcl" {
					t.Fatalf("malformed problem %+v", pr)
				}
			}
			return
		}
		rules := p.RuleList()
		if len(rules) != p.Rules() {
			t.Fatalf("Rules() = %d but RuleList has %d", p.Rules(), len(rules))
		}
		checkLimits(t, "defaults", p.Defaults(), true)
		names := map[string]bool{}
		for _, r := range rules {
			if names[r.Name] || !ruleNameRE.MatchString(r.Name) {
				t.Fatalf("rule name %q repeated or invalid", r.Name)
			}
			names[r.Name] = true
			words, err := jail.Split(r.Cmdline)
			if err != nil || len(words) == 0 {
				t.Fatalf("rule %q has cmdline %q that does not split: %v", r.Name, r.Cmdline, err)
			}
			if r.Keys != nil && (len(r.Keys) == 0 || slices.Contains(r.Keys, "")) {
				t.Fatalf("rule %q has keys %q", r.Name, r.Keys)
			}
			checkLimits(t, r.Name, r.Limits, true)
			// The rule's own cmdline, unsigned and without arguments, is
			// allowed by a rule of the same words that takes no arguments,
			// and by this one unless an earlier rule came first.
			d := p.Decide(Request{Cmdline: r.Cmdline, Timeout: time.Hour})
			openToAll := len(r.Args) == 0 && r.Keys == nil
			if d.Allowed {
				other, _ := p.Rule(d.Rule)
				ow, _ := jail.Split(other.Cmdline)
				if !slices.Equal(ow, words) || len(other.Args) > 0 || other.Keys != nil || openToAll && other.Line > r.Line {
					t.Fatalf("%q with no args allowed by %+v, not by %+v", r.Cmdline, other, r)
				}
				checkLimits(t, d.Rule, d.Limits, false)
				if other.Limits.Timeout > 0 && d.Limits.Timeout > other.Limits.Timeout {
					t.Fatalf("timeout %v over the cap %v", d.Limits.Timeout, other.Limits.Timeout)
				}
			} else if !strings.HasPrefix(d.Reason, "policy: ") || openToAll {
				t.Fatalf("%q refused (%s) though rule %+v allows it", r.Cmdline, d.Reason, r)
			}
		}
		again, err := Parse(src, "fuzz.hcl")
		if err != nil || !slices.EqualFunc(again.RuleList(), rules, func(a, b RuleInfo) bool {
			return a.Name == b.Name && a.Cmdline == b.Cmdline && slices.Equal(a.Args, b.Args) && slices.Equal(a.Limits.Env, b.Limits.Env)
		}) {
			t.Fatalf("a second parse differs: %v", err)
		}
	})
}

func checkLimits(t *testing.T, who string, l Limits, isCap bool) {
	t.Helper()
	if l.MemoryBytes < 0 || l.CPUCores < 0 || l.CPUCores > maxCPU || !finite(l.CPUCores) || l.Pids < 0 || l.Pids > maxPids || l.Timeout < 0 {
		t.Fatalf("%s: limits out of range: %+v", who, l)
	}
	if isCap && l.User == "" && l.Group == "" && l.MemoryBytes == 0 && l.Env == nil {
		return
	}
	prev := ""
	for _, kv := range l.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !envNameRE.MatchString(k) || strings.IndexByte(v, 0) >= 0 || k <= prev && prev != "" {
			t.Fatalf("%s: env %q malformed or unsorted", who, l.Env)
		}
		prev = k
	}
	for i, n := range l.SecretEnv {
		if !envNameRE.MatchString(n) || i > 0 && n <= l.SecretEnv[i-1] {
			t.Fatalf("%s: secret_env %q malformed, unsorted or repeated", who, l.SecretEnv)
		}
	}
	for i, kv := range l.ShownEnv() {
		k, v, _ := strings.Cut(kv, "=")
		if (SecretEnvName(k, l.SecretEnv) && v != Masked) || !strings.HasPrefix(l.Env[i], k+"=") {
			t.Fatalf("%s: shown env %q of %q", who, l.ShownEnv(), l.Env)
		}
	}
}

// The fixed policy FuzzDecide attacks. Each rule is described a second
// time below in plain Go, without regexps, so the fuzz body can tell on
// its own which rule (if any) must allow a request.
const fuzzPolicy = `
defaults {
  timeout = "30m"
}
rule "install" {
  cmdline = "install.sh"
  args    = ["feature/[A-Za-z0-9._/-]+"]
}
rule "job" {
  cmdline = "'run job.sh' --mode fast"
  args    = ["^[0-9]{1,3}$", "x|yz"]
  timeout = "1m"
}
rule "tag" {
  cmdline   = "tag.sh"
  args_rest = "[a-c]*"
}
rule "deploy-ci" {
  cmdline = "deploy.sh"
  args    = ["prod"]
  keys    = ["ci"]
}
rule "deploy-web" {
  cmdline = "deploy.sh"
  args    = [".*"]
  keys    = ["web", "ci"]
}
rule "uptime" {
  cmdline = "uptime"
}
rule "as" {
  cmdline   = "a.sh"
  args      = ["^a+$"]
  args_rest = "b"
}
`

type fuzzRule struct {
	name  string
	words []string
	keys  []string
	args  []func(string) bool
	rest  func(string) bool
	cap   time.Duration
}

func onlyBytes(s, set string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(set, s[i]) < 0 {
			return false
		}
	}
	return true
}

var fuzzRules = []fuzzRule{
	{name: "install", words: []string{"install.sh"}, cap: 30 * time.Minute, args: []func(string) bool{func(s string) bool {
		rest, ok := strings.CutPrefix(s, "feature/")
		return ok && rest != "" && onlyBytes(rest, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/-")
	}}},
	{name: "job", words: []string{"run job.sh", "--mode", "fast"}, cap: time.Minute, args: []func(string) bool{
		func(s string) bool { return len(s) >= 1 && len(s) <= 3 && onlyBytes(s, "0123456789") },
		func(s string) bool { return s == "x" || s == "yz" },
	}},
	{name: "tag", words: []string{"tag.sh"}, cap: 30 * time.Minute, rest: func(s string) bool { return onlyBytes(s, "abc") }},
	{name: "deploy-ci", words: []string{"deploy.sh"}, keys: []string{"ci"}, cap: 30 * time.Minute, args: []func(string) bool{
		func(s string) bool { return s == "prod" },
	}},
	{name: "deploy-web", words: []string{"deploy.sh"}, keys: []string{"web", "ci"}, cap: 30 * time.Minute, args: []func(string) bool{
		func(s string) bool { return !strings.Contains(s, "\n") },
	}},
	{name: "uptime", words: []string{"uptime"}, cap: 30 * time.Minute},
	{name: "as", words: []string{"a.sh"}, cap: 30 * time.Minute,
		args: []func(string) bool{func(s string) bool { return s != "" && onlyBytes(s, "a") }},
		rest: func(s string) bool { return s == "b" }},
}

// allows is the plain-Go reading of one rule.
func (r fuzzRule) allows(words []string, req Request) bool {
	if !slices.Equal(words, r.words) || r.keys != nil && !slices.Contains(r.keys, req.KeyID) {
		return false
	}
	if len(req.Args) < len(r.args) || r.rest == nil && len(req.Args) != len(r.args) {
		return false
	}
	for i, a := range req.Args {
		if i < len(r.args) && !r.args[i](a) || i >= len(r.args) && !r.rest(a) {
			return false
		}
	}
	return true
}

// FuzzDecide: a request is allowed exactly when the plain-Go reading of
// the rules says so, by the first such rule, and never by accident.
func FuzzDecide(f *testing.F) {
	p := mustParse(f, fuzzPolicy)
	f.Add("install.sh", "feature/x", "", "", uint8(1), "", int64(0))
	f.Add("install.sh", "feature/x\n", "", "", uint8(1), "", int64(0))
	f.Add("install.sh", "xfeature/x", "", "", uint8(1), "", int64(0))
	f.Add("install.sh", "feature/", "feature/y", "", uint8(2), "", int64(0))
	f.Add("'run job.sh' --mode fast", "12", "yz", "", uint8(2), "", int64(7200e9))
	f.Add(`run\ job.sh --mode "fast"`, "1234", "x", "", uint8(2), "", int64(0))
	f.Add("run job.sh --mode fast", "1", "x", "", uint8(2), "", int64(0))
	f.Add("'run job.sh' --mode fast", "1", "xyz", "", uint8(2), "", int64(0))
	f.Add("tag.sh", "abc", "", "cab", uint8(3), "", int64(0))
	f.Add("tag.sh", "abcd", "", "", uint8(1), "", int64(0))
	f.Add("deploy.sh", "prod", "", "", uint8(1), "ci", int64(1))
	f.Add("deploy.sh", "staging", "", "", uint8(1), "ci", int64(1))
	f.Add("deploy.sh", "prod", "", "", uint8(1), "", int64(-1))
	f.Add("deploy.sh", "a\nb", "", "", uint8(1), "web", int64(0))
	f.Add("uptime", "", "", "", uint8(0), "", int64(0))
	f.Add("uptime ", "", "", "", uint8(1), "", int64(0))
	f.Add("a.sh", "aaa", "b", "b", uint8(3), "", int64(0))
	f.Add("a.sh", "a", "b", "bb", uint8(3), "", int64(0))
	f.Add("bash -c id", "", "", "", uint8(0), "", int64(0))
	f.Add("install.sh;id", "feature/x", "", "", uint8(1), "", int64(0))
	f.Fuzz(func(t *testing.T, cmdline, a1, a2, a3 string, n uint8, key string, timeout int64) {
		req := Request{Cmdline: cmdline, Args: []string{a1, a2, a3}[:n%4], KeyID: key, Timeout: time.Duration(timeout)}
		d := p.Decide(req)

		want := ""
		var limit time.Duration
		if words, err := jail.Split(cmdline); err == nil {
			for _, r := range fuzzRules {
				if r.allows(words, req) {
					want, limit = r.name, r.cap
					break
				}
			}
		}
		if d.Rule != want || d.Allowed != (want != "") {
			t.Fatalf("%+v: decided %+v, want rule %q", req, d, want)
		}
		if !d.Allowed {
			if !strings.HasPrefix(d.Reason, "policy: ") || d.Rule != "" {
				t.Fatalf("refusal %+v", d)
			}
			return
		}
		if d.Limits.Timeout <= 0 || d.Limits.Timeout > limit || req.Timeout > 0 && req.Timeout <= limit && d.Limits.Timeout != req.Timeout {
			t.Fatalf("%+v: timeout %v with cap %v", req, d.Limits.Timeout, limit)
		}
	})
}
