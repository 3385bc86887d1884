package sandbox

import (
	"strings"
	"testing"

	"github.com/taskjob/task-job/sandbox/nsinit"
)

// The plan of a task's start, decided before anything is done on the host:
// every refusal and every rewrite, without root.
func TestPlan(t *testing.T) {
	plain := &jailer{defaults: Limits{User: "nobody", MemoryBytes: 256 << 20, Pids: 64}, rootDir: "/run/tj/root"}
	chroot := &jailer{defaults: Limits{User: "nobody"}, rootDir: "/run/tj/root", chroot: true}
	for _, c := range []struct {
		name    string
		j       *jailer
		spec    Spec
		refused string // a part of the refusal; "" = planned
		check   func(t *testing.T, p launchPlan)
	}{
		{name: "relative cmd_dir", j: plain, spec: Spec{Path: "a.sh", Confine: "srv/cmd"}, refused: "must be an absolute path"},
		{name: "no cmd_dir", j: plain, spec: Spec{Path: "/bin/true"}, refused: "must be an absolute path"},
		{name: "cmd_dir /", j: plain, spec: Spec{Path: "/bin/true", Confine: "/"}, refused: "would show the task the whole host"},
		{name: "working dir outside", j: plain, spec: Spec{Path: "/srv/cmd/a.sh", Confine: "/srv/cmd", Dir: "/srv/cmd-other"}, refused: "outside cmd_dir"},
		{name: "work_dir inside cmd_dir", j: plain, spec: Spec{Path: "/srv/cmd/a.sh", Confine: "/srv/cmd", taskDir: "/srv/cmd/work/t1"}, refused: "lies inside cmd_dir"},
		{name: "unknown user", j: plain, spec: Spec{Path: "/srv/cmd/a.sh", Confine: "/srv/cmd", Limits: Limits{User: "no-such-user-here"}}, refused: `user "no-such-user-here"`},
		{name: "defaults and no network", j: plain, spec: Spec{Path: "/srv/cmd/a.sh", Confine: "/srv/cmd", taskDir: "/var/lib/tj/work/t1"},
			check: func(t *testing.T, p launchPlan) {
				c := p.cfg
				if c.UID != 65534 || c.Netns != nsinit.NetnsOwn || c.Dir != "/srv/cmd" || c.CmdDir != "/srv/cmd" || c.TaskDirAt != "/var/lib/tj/work/t1" ||
					c.RootMode != nsinit.RootSystem || c.KeepCaps != rootCaps || c.RootDir != "/run/tj/root" {
					t.Errorf("setup %+v", c)
				}
				if p.lim.MemoryBytes != 256<<20 || p.lim.Pids != 64 || p.lim.User != "nobody" {
					t.Errorf("limits %+v: want the defaults filled in", p.lim)
				}
			}},
		{name: "network, numeric uid without an entry, group", j: plain,
			spec: Spec{Path: "/srv/cmd/a.sh", Confine: "/srv/cmd", Dir: "/srv/cmd/sub", Limits: Limits{User: "4242", Group: "0", Network: true, MemoryBytes: 1 << 20}},
			check: func(t *testing.T, p launchPlan) {
				if c := p.cfg; c.UID != 4242 || c.GID != 0 || c.Netns != nsinit.NetnsHost || c.Dir != "/srv/cmd/sub" || p.lim.MemoryBytes != 1<<20 {
					t.Errorf("setup %+v, limits %+v", c, p.lim)
				}
			}},
		{name: "chroot: a host program", j: chroot, spec: Spec{Path: "/usr/bin/id", Confine: "/srv/cmd"}, refused: "would run an unchecked file inside it"},
		{name: "chroot: writable cmd_dir", j: chroot, spec: Spec{Path: "/srv/cmd/a.sh", Confine: "/srv/cmd", Limits: Limits{CmdDirWritable: true}}, refused: "cmd_dir_writable is refused in chroot mode"},
		{name: "chroot: paths seen from cmd_dir", j: chroot, spec: Spec{Path: "/srv/cmd/bin/x", Confine: "/srv/cmd", Dir: "/srv/cmd/sub", taskDir: "/var/lib/tj/work/t2"},
			check: func(t *testing.T, p launchPlan) {
				if c := p.cfg; c.RootMode != nsinit.RootChroot || c.Path != "/bin/x" || c.Dir != "/sub" || c.TaskDirAt != chrootTaskDir || c.TaskDir != "/var/lib/tj/work/t2" {
					t.Errorf("setup %+v", c)
				}
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := c.j.plan(c.spec)
			switch {
			case c.refused != "" && (err == nil || !strings.Contains(err.Error(), c.refused)):
				t.Errorf("plan = %v, want a refusal saying %q", err, c.refused)
			case c.refused == "" && err != nil:
				t.Errorf("plan refused: %v", err)
			case c.refused == "" && c.check != nil:
				c.check(t, p)
			}
		})
	}
}
