package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// mustParse parses src or fails the test with every problem.
func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src), "test.hcl")
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return p
}

// Each case lists every problem expected, as "line:col: fragment"; the
// file must produce exactly these, in this order.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"unknown top-level attribute", `interpreters = ["python3"]`, []string{`1:1: Unsupported argument: An argument named "interpreters"`}},
		{"unknown block", "firewall {}\n", []string{`1:1: Unsupported block type`}},
		{"unknown rule attribute", "rule \"a\" {\n  cmdline = \"a.sh\"\n  memroy = \"1GiB\"\n}\n", []string{`3:3: Did you mean "memory"?`}},
		{"nested block in a rule", "rule \"a\" {\n  cmdline = \"a.sh\"\n  limits {}\n}\n", []string{`3:3: Unsupported block type`}},
		{"unknown defaults attribute", "defaults {\n  keys = [\"ci\"]\n}\n", []string{`2:3: An argument named "keys" is not expected here`}},
		{"cmdline missing", "rule \"a\" {\n  user = \"x\"\n}\n", []string{`1:10: The argument "cmdline" is required`}},
		{"rule without name", "rule {\n  cmdline = \"a\"\n}\n", []string{`1:6: Missing name for rule`}},
		{"defaults with a label", "defaults \"x\" {}\n", []string{`1:10: Extraneous label for defaults`}},
		{"two defaults", "defaults {}\n\ndefaults {}\n", []string{`3:1: only one defaults block is allowed; the first is at line 1`}},
		{"duplicate rule", "rule \"a\" {\n  cmdline = \"a\"\n}\nrule \"a\" {\n  cmdline = \"b\"\n}\n", []string{`4:6: rule "a" is defined twice; the first is at line 1`}},
		{"bad rule name", "rule \"-a b\" {\n  cmdline = \"a\"\n}\n", []string{`1:6: rule name "-a b" must be`}},
		{"empty cmdline", "rule \"a\" {\n  cmdline = \"  \"\n}\n", []string{`2:13: cmdline "  " cannot be split into words`}},
		{"shell operator in cmdline", "rule \"a\" {\n  cmdline = \"a.sh; id\"\n}\n", []string{`2:13: cmdline "a.sh; id" cannot be split into words: unquoted ';'`}},
		{"cmdline not a string", "rule \"a\" {\n  cmdline = [\"a\"]\n}\n", []string{`2:13: cmdline must be a string, not tuple`}},
		{"cmdline null", "rule \"a\" {\n  cmdline = null\n}\n", []string{`2:13: cmdline is null; remove the line`}},
		{"bad regexp, which one", "rule \"a\" {\n  cmdline = \"a\"\n  args = [\"ok\", \"x(\"]\n}\n", []string{`3:17: args[1]: regexp "x(" does not compile: missing closing )`}},
		{"regexp escaping its anchors", "rule \"a\" {\n  cmdline = \"a\"\n  args = [\"a)|(b\"]\n}\n", []string{`3:11: args[0]: regexp "a)|(b" does not compile`}},
		{"args not a list", "rule \"a\" {\n  cmdline = \"a\"\n  args = \"x\"\n}\n", []string{`3:10: args must be a list of strings`}},
		{"args element not a string", "rule \"a\" {\n  cmdline = \"a\"\n  args = [\"x\", 1]\n}\n", []string{`3:16: args[1] must be a string, not number`}},
		{"bad args_rest", "rule \"a\" {\n  cmdline = \"a\"\n  args_rest = \"[\"\n}\n", []string{`3:15: args_rest: regexp "[" does not compile`}},
		{"empty args_rest", "rule \"a\" {\n  cmdline = \"a\"\n  args_rest = \"\"\n}\n", []string{`3:15: args_rest is empty`}},
		{"empty keys", "rule \"a\" {\n  cmdline = \"a\"\n  keys = []\n}\n", []string{`3:10: keys is empty, so no task could use rule "a"`}},
		{"empty key id", "rule \"a\" {\n  cmdline = \"a\"\n  keys = [\"ci\", \"\"]\n}\n", []string{`3:17: key id "" must be 1 to 256 bytes`}},
		{"memory zero", "defaults {\n  memory = \"0\"\n}\n", []string{`2:12: memory: size "0" is zero`}},
		{"memory negative", "defaults {\n  memory = \"-1GiB\"\n}\n", []string{`2:12: memory: size "-1GiB" is negative`}},
		{"memory garbage", "defaults {\n  memory = \"lots\"\n}\n", []string{`2:12: memory: size "lots" is not a number with a unit`}},
		{"memory ambiguous unit", "defaults {\n  memory = \"256M\"\n}\n", []string{`2:12: memory: size "256M" has an unknown unit "M"`}},
		{"memory bare number", "defaults {\n  memory = 256\n}\n", []string{`2:12: memory = 256 has no unit`}},
		{"memory fractional bytes", "defaults {\n  memory = \"1.5B\"\n}\n", []string{`2:12: not a whole number of bytes`}},
		{"memory too large", "defaults {\n  memory = \"99999999TiB\"\n}\n", []string{`2:12: memory: size "99999999TiB" is too large`}},
		{"cpu zero", "defaults {\n  cpu = 0\n}\n", []string{`2:9: cpu = 0 must be more than 0 and at most 1024`}},
		{"cpu negative", "defaults {\n  cpu = -1\n}\n", []string{`2:9: cpu = -1 must be more than 0`}},
		{"cpu huge", "defaults {\n  cpu = 4096\n}\n", []string{`2:9: at most 1024 cores`}},
		{"cpu string", "defaults {\n  cpu = \"1\"\n}\n", []string{`2:9: cpu must be a number of cores`}},
		{"pids zero", "defaults {\n  pids = 0\n}\n", []string{`2:10: pids = 0 must be a whole number from 1`}},
		{"pids fraction", "defaults {\n  pids = 2.5\n}\n", []string{`2:10: pids = 2.5 must be a whole number`}},
		{"timeout zero", "defaults {\n  timeout = \"0s\"\n}\n", []string{`2:13: timeout "0s" must be more than 0`}},
		{"timeout negative", "defaults {\n  timeout = \"-5m\"\n}\n", []string{`2:13: timeout "-5m" must be more than 0`}},
		{"timeout garbage", "defaults {\n  timeout = \"soon\"\n}\n", []string{`2:13: timeout "soon" is not a duration`}},
		{"timeout bare number", "defaults {\n  timeout = 3600\n}\n", []string{`2:13: timeout = 3600 has no unit; write it as a string, e.g. "3600s"`}},
		{"network not bool", "defaults {\n  network = \"yes\"\n}\n", []string{`2:13: network must be true or false, not string`}},
		{"user empty", "defaults {\n  user = \"\"\n}\n", []string{`2:10: user is empty`}},
		{"user with a space", "defaults {\n  user = \"no body\"\n}\n", []string{`2:10: user "no body" is not a valid user name`}},
		{"group uid out of range", "defaults {\n  group = 4294967295\n}\n", []string{`2:11: group = 4294967295 is not a valid numeric id`}},
		{"env not a map", "defaults {\n  env = [\"A=b\"]\n}\n", []string{`2:9: env must be a map`}},
		{"env bad names", "defaults {\n  env = {\n    \"A=B\" = \"x\"\n    \"1X\" = \"y\"\n    OK = \"z\"\n  }\n}\n", []string{`3:5: env name "A=B"`, `4:5: env name "1X"`}},
		{"env NUL value", "defaults {\n  env = { A = \"x\\u0000y\" }\n}\n", []string{`2:15: env A holds a NUL byte`}},
		{"env value a list", "defaults {\n  env = { A = [\"x\"] }\n}\n", []string{`2:15: env A must be a string, not tuple`}},
		{"variables refused", "defaults {\n  user = var.user\n}\n", []string{`2:10: Variables not allowed`}},
		{"functions refused", "rule \"a\" {\n  cmdline = lower(\"A\")\n}\n", []string{`2:13: Function calls not allowed`}},
		{"description with control characters", "rule \"a\" {\n  cmdline = \"a\"\n  description = \"a\\u0007\"\n}\n", []string{`3:17: description must be at most 4096 bytes of printable text`}},
		{"HCL escape a regexp needs doubled", "rule \"a\" {\n  cmdline = \"a\"\n  args = [\"\\d+\"]\n}\n", []string{`3:12: Invalid escape sequence`}},
		{"syntax error", "rule \"a\" {\n  cmdline = \n}\n", []string{`2:13: Invalid expression`}},
		{"attribute set twice", "rule \"a\" {\n  cmdline = \"a\"\n  cmdline = \"b\"\n}\n", []string{`3:3: Attribute redefined`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.src), "test.hcl")
			if err == nil {
				t.Fatalf("Parse accepted the file (%d rules); want %q", p.Rules(), tc.want)
			}
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("error is %T, not *Error: %v", err, err)
			}
			if len(perr.Problems) != len(tc.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(perr.Problems), len(tc.want), err)
			}
			for i, w := range tc.want {
				got := perr.Problems[i]
				pos, frag, _ := strings.Cut(w, ": ")
				if gotPos := fmt.Sprintf("%d:%d", got.Line, got.Column); gotPos != pos || !strings.Contains(got.Message, frag) {
					t.Errorf("problem %d is\n  %s\nwant at %s a message containing %q", i, got, pos, frag)
				}
				if !strings.HasPrefix(got.String(), "test.hcl:"+pos+": ") {
					t.Errorf("problem %d prints as %q; want the file:line:col: prefix", i, got)
				}
			}
		})
	}
}

// A file with many mistakes reports all of them at once, one per line, in
// file order, so an operator fixes them in one pass.
func TestParseReportsEveryProblemAtOnce(t *testing.T) {
	src := `defaults {
  memroy = "1GiB"
  cpu    = 0
}

rule "a" {
  cmdline = "x;y"
  args    = ["(", 3]
  keys    = []
  timeout = "never"
}

rule "a" {
  cmdline   = "b.sh"
  args_rest = "a)|(b"
  pids      = 0
}
`
	_, err := Parse([]byte(src), "many.hcl")
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("got %v, want *Error", err)
	}
	want := []string{
		"many.hcl:2:3: ", "many.hcl:3:12: ", "many.hcl:7:13: ", "many.hcl:8:14: ", "many.hcl:8:19: ",
		"many.hcl:9:13: ", "many.hcl:10:13: ", "many.hcl:13:6: ", "many.hcl:15:15: ", "many.hcl:16:15: ",
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d is %q, want it to start with %q", i, lines[i], w)
		}
	}
}

func TestParseAcceptsEveryAttribute(t *testing.T) {
	p := mustParse(t, `
defaults {
  user    = "nobody"
  group   = "nogroup"
  memory  = "256MiB"
  cpu     = 0.5
  pids    = 64
  timeout = "1h30m"
  network = false
  env     = { LANG = "C.UTF-8", "TZ" = "UTC" }
}
rule "all" {
  description = "every attribute"
  cmdline     = "'my script.sh' --flag"
  args        = ["^a$", "b|c"]
  args_rest   = "[0-9]+"
  keys        = ["ci", "web"]
  user        = 0
  group       = "1000"
  memory      = "1.5GiB"
  cpu         = 2
  pids        = 4194304
  timeout     = "90s"
  network     = true
  env         = { PORT = 8080, DEBUG = true, TZ = "Europe/Paris" }
}
`)
	info, ok := p.Rule("all")
	if !ok {
		t.Fatal(`Rule("all") not found`)
	}
	want := RuleInfo{
		Name: "all", Description: "every attribute", Cmdline: "'my script.sh' --flag",
		Args: []string{"^a$", "b|c"}, ArgsRest: "[0-9]+", Keys: []string{"ci", "web"}, Line: 12,
		Limits: Limits{User: "0", Group: "1000", MemoryBytes: 1536 << 20, CPUCores: 2, Pids: 4194304,
			Timeout: 90 * time.Second, Network: true,
			Env: []string{"DEBUG=true", "LANG=C.UTF-8", "PORT=8080", "TZ=Europe/Paris"}},
	}
	if fmt.Sprint(info) != fmt.Sprint(want) {
		t.Errorf("rule is\n  %+v\nwant\n  %+v", info, want)
	}
	def := p.Defaults()
	wantDef := Limits{User: "nobody", Group: "nogroup", MemoryBytes: 256 << 20, CPUCores: 0.5, Pids: 64,
		Timeout: 90 * time.Minute, Env: []string{"LANG=C.UTF-8", "TZ=UTC"}}
	if fmt.Sprint(def) != fmt.Sprint(wantDef) {
		t.Errorf("defaults are\n  %+v\nwant\n  %+v", def, wantDef)
	}
	if got := p.RuleList(); len(got) != 1 || got[0].Name != "all" {
		t.Errorf("RuleList() = %+v", got)
	}
}

func TestParseEmptyFileAllowsNothing(t *testing.T) {
	p := mustParse(t, "# nothing yet\n")
	if p.Rules() != 0 {
		t.Fatalf("Rules() = %d", p.Rules())
	}
	if d := p.Decide(Request{Cmdline: "a.sh"}); d.Allowed {
		t.Fatalf("an empty policy allowed %+v", d)
	}
}

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"1048576": 1 << 20, "512KiB": 512 << 10, "256MiB": 256 << 20, "1GiB": 1 << 30, "1TiB": 1 << 40,
		"500MB": 500e6, "1GB": 1e9, "2KB": 2000, "3TB": 3e12, "10B": 10, "1.5GiB": 1536 << 20, " 64 MiB ": 64 << 20,
		"256mb": 256e6, "512mib": 512 << 20, // units ignore case, as in config.json
	}
	for s, want := range good {
		if got, err := ParseSize(s); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "0", "0MiB", "-1", "-1GiB", "1.", ".5GiB", "1..2MiB", "1e9", "1/2", "256M", "1 GiB extra", "GiB", "0x10", "1.1B", "9223372036854775808", "8EiB", "10000000TiB"} {
		if got, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", s, got)
		}
	}
	for n, want := range map[int64]string{1 << 30: "1GiB", 1536 << 20: "1536MiB", 500e6: "500000000B", 1: "1B", 3 << 40: "3TiB", 0: "0B"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok.hcl")
	if err := os.WriteFile(ok, []byte("rule \"a\" {\n  cmdline = \"a.sh\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(ok)
	if err != nil || p.Rules() != 1 || p.File() != ok {
		t.Fatalf("Load = %v, %v", p, err)
	}

	if _, err := Load(filepath.Join(dir, "missing.hcl")); err == nil || !strings.Contains(err.Error(), "missing.hcl") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v", err)
	}

	big := filepath.Join(dir, "big.hcl")
	if err := os.WriteFile(big, []byte(strings.Repeat("# padding\n", MaxFileBytes/10+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "big.hcl:1:1: the policy file is over 1048576 bytes") {
		t.Errorf("Load of a file over 1 MiB: %v", err)
	}

	bad := filepath.Join(dir, "bad.hcl")
	if err := os.WriteFile(bad, []byte("rule \"a\" {\n  cmdline = \"a;b\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.HasPrefix(err.Error(), bad+":2:13: ") {
		t.Errorf("Load of an invalid file: %v", err)
	}
}

// Names in messages come out in file order whatever the map order of the
// HCL body, so the same file always produces the same report.
func TestParseIsDeterministic(t *testing.T) {
	src := []byte("rule \"a\" {\n  cmdline = \"a\"\n  x = 1\n  y = 2\n  z = 3\n  memory = \"0\"\n}\n")
	_, first := Parse(src, "d.hcl")
	for range 20 {
		_, err := Parse(src, "d.hcl")
		if err.Error() != first.Error() {
			t.Fatalf("two parses differ:\n%v\n---\n%v", first, err)
		}
	}
	if n := len(strings.Split(first.Error(), "\n")); n != 4 {
		t.Fatalf("want 4 problems, got %d:\n%v", n, first)
	}
	if !slices.IsSortedFunc(strings.Split(first.Error(), "\n"), func(a, b string) int { return strings.Compare(a, b) }) {
		t.Errorf("problems out of order:\n%v", first)
	}
}

func TestCmdDirWritable(t *testing.T) {
	p := mustParse(t, `
rule "build" {
  cmdline          = "build.sh"
  cmd_dir_writable = true
}
rule "lint" {
  cmdline = "lint.sh"
}
`)
	d := p.Decide(Request{Cmdline: "build.sh"})
	if !d.Allowed || !d.Limits.CmdDirWritable || len(d.Notes) != 1 || !strings.Contains(d.Notes[0], "cmd_dir is writable") {
		t.Errorf("build.sh: %+v, want cmd_dir writable and a note saying so", d)
	}
	if d := p.Decide(Request{Cmdline: "lint.sh"}); !d.Allowed || d.Limits.CmdDirWritable || len(d.Notes) != 0 {
		t.Errorf("lint.sh: %+v, want cmd_dir read-only, no note", d)
	}
	for _, src := range []string{
		"defaults {\n  cmd_dir_writable = true\n}\n",
		"rule \"x\" {\n  cmdline = \"x.sh\"\n  cmd_dir_writable = \"yes\"\n}\n",
	} {
		if _, err := Parse([]byte(src), "t.hcl"); err == nil || !strings.Contains(err.Error(), "cmd_dir_writable") {
			t.Errorf("%q: %v, want an error naming cmd_dir_writable", src, err)
		}
	}
}
