package executor

import (
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/policy"
	"github.com/taskjob/task-job/task"
)

// TestPolicyAllowsSystemProgramByAbsolutePath: a rule that names a system
// program by absolute path lets it run (SPEC §3.4); the same cmdline
// without such a rule is refused by the policy, and without a policy by
// the jail.
func TestPolicyAllowsSystemProgramByAbsolutePath(t *testing.T) {
	c := newMemCluster(t)
	pol, err := policy.Parse([]byte(`rule "whoami" {
  cmdline = "/usr/bin/id -u"
}
`), "test.hcl")
	if err != nil {
		t.Fatal(err)
	}
	c.executor("a", func(o *Options) { o.Policy = pol })
	c.submit("sys", "/usr/bin/id -u", nil, 0)
	c.submit("other", "/usr/bin/id -g", nil, 0)
	d := c.done("sys", 10*time.Second)
	if d.Status != task.Succeeded || d.Rule != "whoami" {
		t.Fatalf("sys: %+v", *d.Result)
	}
	var out []string
	for _, l := range c.messages("sys") {
		if l.MsgType == task.MsgStdout {
			out = append(out, l.Data)
		}
	}
	if c.runner.Isolated() && strings.Join(out, "|") != "65534" {
		t.Errorf("stdout %q, want the sandbox's unprivileged uid", out)
	}
	if d := c.done("other", 10*time.Second); d.Status != task.Rejected || !strings.HasPrefix(d.Reason, "policy:") {
		t.Errorf("other: %+v", *d.Result)
	}

	c2 := newMemCluster(t)
	c2.executor("b")
	c2.submit("nopolicy", "/usr/bin/id -u", nil, 0)
	if d := c2.done("nopolicy", 10*time.Second); d.Status != task.Rejected || !strings.Contains(d.Reason, "jail") {
		t.Errorf("without a policy: %+v", *d.Result)
	}
}
