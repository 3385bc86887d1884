package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// benchPolicy has 20 rules, as a busy host might.
func benchPolicy(b *testing.B) *Policy {
	var src strings.Builder
	src.WriteString("defaults {\n  user = \"nobody\"\n  memory = \"256MiB\"\n  timeout = \"30m\"\n  env = { LANG = \"C.UTF-8\" }\n}\n")
	for i := range 20 {
		fmt.Fprintf(&src, "rule \"r%d\" {\n  cmdline = \"job%d.sh --mode fast\"\n  args = [\"feature/[A-Za-z0-9._/-]+\", \"[0-9]{1,6}\"]\n  env = { N = \"%d\" }\n}\n", i, i, i)
	}
	return mustParse(b, src.String())
}

func BenchmarkDecide(b *testing.B) {
	p := benchPolicy(b)
	cases := []struct {
		name    string
		req     Request
		allowed bool
	}{
		{"allowed", Request{Cmdline: "job15.sh --mode fast", Args: []string{"feature/homestead", "4242"}, Timeout: time.Hour}, true},
		{"refused-no-rule", Request{Cmdline: "bash -c id"}, false},
		{"refused-argument", Request{Cmdline: "job15.sh --mode fast", Args: []string{"feature/x;rm -rf /", "1"}}, false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d := p.Decide(c.req); d.Allowed != c.allowed {
					b.Fatalf("decision %+v", d)
				}
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	src := []byte(decidePolicy)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(src, "bench.hcl"); err != nil {
			b.Fatal(err)
		}
	}
}
