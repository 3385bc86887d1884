package cgroup

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
)

// unifiedSetup drives the v2 code on a hybrid host's controller-less
// unified hierarchy: no limits there, but cgroup.kill, cgroup.freeze,
// cgroup.events, cpu.stat and CLONE_INTO_CGROUP are all real. On a pure v2
// host the other tests cover all of it with controllers.
func unifiedSetup(t *testing.T) hostSetup {
	t.Helper()
	if cgroups.Mode() != cgroups.Hybrid {
		t.Skip("only a hybrid host has a spare unified hierarchy to exercise the v2 code on")
	}
	return hostSetup{mode: V2, unifiedDir: "/sys/fs/cgroup/unified"}
}

func TestV2MechanicsOnUnifiedHierarchy(t *testing.T) {
	for _, cgKill := range []bool{true, false} {
		name := "cgroup.kill"
		if !cgKill {
			name = "freeze-and-kill"
		}
		t.Run(name, func(t *testing.T) {
			parallel(t)
			m := newTestManager(t, unifiedSetup(t))
			m.cgKill = cgKill
			t.Log(m.Describe())
			if !strings.HasPrefix(m.Describe(), "cgroup v2: no limits") {
				t.Errorf("Describe = %q", m.Describe())
			}
			g, err := m.New("v2 task", Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := g.CgroupFD(); !ok {
				t.Fatal("no CgroupFD on v2")
			}
			var out syncBuffer
			cmd := spawn(t, g, "cat /proc/self/cgroup", &out)
			if err := cmd.wait(t); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "0::"+g.Path()+"\n") {
				t.Errorf("the task was not born in %s:\n%s", g.Path(), out.String())
			}

			busy := spawn(t, g, "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done", nil)
			if err := busy.wait(t); err != nil {
				t.Fatal(err)
			}
			u, err := g.Usage()
			if err != nil {
				t.Fatal(err)
			}
			if u.CPU <= 0 || u.MemoryPeak != 0 || u.OOMKills != 0 {
				t.Errorf("usage %+v: want CPU time, and no memory figures without the memory controller", u)
			}

			cmd, pids := startTree(t, g)
			if got, _ := g.pids(); !samePids(got, pids) {
				t.Fatalf("the group holds %v; the helper made %v", got, pids)
			}
			if err := g.Kill(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := g.WaitEmpty(ctx); err != nil {
				t.Fatal(err)
			}
			_ = cmd.wait(t)
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
			m.flush()
			assertGone(t, m, g)
		})
	}
}

func TestV2CleanupStaleOnUnifiedHierarchy(t *testing.T) {
	parallel(t)
	hs := unifiedSetup(t)
	prev := newTestManager(t, hs)
	g, err := prev.New("stale", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	cmd, _ := startTree(t, g)
	m, err := newManager(Options{Name: testName(t)}, hs)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if n, err := m.CleanupStale(); n != 1 || err != nil {
		t.Errorf("CleanupStale = %d, %v; want 1, nil", n, err)
	}
	_ = cmd.wait(t)
	assertGone(t, prev, g)
	_ = g.Close()
}
