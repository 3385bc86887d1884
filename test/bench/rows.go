package main

import (
	"context"
	"fmt"
	"time"

	"github.com/taskjob/task-job/sandbox"
)

// sandboxTarget is the most the sandbox may add to start+wait of a trivial
// program, at p50, over a plain fork/exec.
const sandboxTarget = 1 * time.Millisecond

// tailShare is how far above its p50 a sandbox row's p99 may be.
const tailShare = 3.0

// tail says whether s's p99 is within tailShare of its p50.
func tail(s samples) string {
	return fmt.Sprintf("p99 ≤ %.0f× p50: %s (%.1f×)", tailShare, verdict(float64(s.p99()) <= tailShare*float64(s.p50())), float64(s.p99())/float64(s.p50()))
}

// isolationRows reports the sandbox against plain exec, with and without
// its helper installed, and each peer against the sandbox.
func (b *bench) isolationRows(rep *report, iso isolationCost) {
	plain := "exec.Command.Run " + iso.plain.String()
	over := func(s samples) time.Duration { return s.p50() - iso.plain.p50() }

	what := "Sandbox, helper " + sandbox.InitName + " installed, start+wait `/bin/true` (p50 / p99)"
	if !iso.isolatedOK {
		what = "Sandbox — NOT AVAILABLE, fell back to a process group — start+wait `/bin/true` (p50 / p99)"
	}
	rep.add(row{
		what:     what,
		taskJob:  iso.helper.String(),
		baseline: plain,
		ratio:    ratio(float64(iso.helper.p50()), float64(iso.plain.p50())),
		target: fmt.Sprintf("p50 ≤ +%s ms over plain exec: %s (+%s ms); faster than unshare and bwrap: %s; %s",
			ms(sandboxTarget), verdict(iso.isolatedOK && over(iso.helper) <= sandboxTarget), ms(over(iso.helper)),
			verdict(iso.isolatedOK && fasterThanPeers(iso, "unshare", "bwrap")), tail(iso.helper)),
	})
	what = "Sandbox, helper not installed (re-executes the executor binary), start+wait `/bin/true` (p50 / p99)"
	if !iso.reexecOK {
		what = "Sandbox re-executing itself — NOT AVAILABLE, fell back to a process group — start+wait `/bin/true` (p50 / p99)"
	}
	rep.add(row{
		what:     what,
		taskJob:  iso.reexec.String(),
		baseline: plain,
		ratio:    ratio(float64(iso.reexec.p50()), float64(iso.plain.p50())),
		target: fmt.Sprintf("– (+%s ms over plain exec; installing the helper saves %s ms p50)",
			ms(over(iso.reexec)), ms(iso.reexec.p50()-iso.helper.p50())),
	})
	rep.add(row{
		what:     "Sandbox off (process group) start+wait `/bin/true` (p50 / p99)",
		taskJob:  iso.group.String(),
		baseline: plain,
		ratio:    ratio(float64(iso.group.p50()), float64(iso.plain.p50())),
		target:   fmt.Sprintf("– (+%s ms p50)", ms(over(iso.group))),
	})
	for _, p := range iso.peers {
		r := row{
			what:    fmt.Sprintf("Peer %s start+wait `/bin/true` (p50 / p99) against the sandbox", p.name),
			taskJob: "sandbox " + iso.helper.String(),
			ratio:   "–",
			target:  "–",
		}
		if p.status != "" {
			r.baseline = p.name + " " + p.status
		} else {
			r.baseline = p.name + " " + p.s.String()
			r.ratio = ratio(float64(iso.helper.p50()), float64(p.s.p50()))
			r.target = fmt.Sprintf("– (%s: +%s ms over plain exec; sandbox %+.2f ms against it)",
				p.name, ms(over(p.s)), float64(iso.helper.p50()-p.s.p50())/float64(time.Millisecond))
		}
		rep.add(r)
		if p.flags != "" {
			n := fmt.Sprintf("Peer %s: `%s`", p.name, p.flags)
			if p.setup != "" {
				n += "; " + p.setup
			}
			rep.notes = append(rep.notes, n+".")
		}
	}
	rep.notes = append(rep.notes,
		"Sandbox rows: pid, mount, ipc, uts and network namespaces (the network one made by the helper pool before the task), Landlock where the kernel has it, a cgroup with limits, a read-only system view, private /tmp and /dev, user nobody, no_new_privs, rlimits (what `Describe` prints in the header). Peer rows' ratio is sandbox ÷ peer: below 1 the sandbox is faster.",
		"The sandbox keeps "+fmt.Sprint(sandbox.DefaultPoolSize)+" pre-started helpers ready (fresh namespaces and cgroup each, one task each); the start+wait rows are interleaved with the peers, so each start finds one ready: they show the path of a task that arrives while the pool is full. The refill runs in this process on the same cores, so its CPU is in every tasks/s row.")
}

// admitThroughputRow floods the executor with every check on (policy,
// signatures, audit log) and compares it with the same runner's rate with
// them off, measured just before.
func (b *bench) admitThroughputRow(ctx context.Context, rep *report, v variant, c int, off float64, offErr error) {
	av, err := b.admitVariant(v)
	what := fmt.Sprintf("Tasks/s, concurrency %d (%d × `exit 0`)%s, policy (%d rules) + signature + audit on", c, b.cfg.floodTasks, v.label, policyRules)
	if err != nil {
		rep.fail(what, err)
		return
	}
	defer av.close()
	progress(fmt.Sprintf("throughput at concurrency %d: task-job%s", c, av.label))
	tj, err := b.taskJobThroughput(ctx, av, c, b.cfg.floodTasks)
	switch {
	case err != nil:
		rep.fail(what, err)
	case offErr != nil:
		rep.fail(what, fmt.Errorf("the same with the checks off: %w", offErr))
	default:
		rep.add(row{
			what:     what,
			taskJob:  rate(tj, "tasks"),
			baseline: "the same with them off " + rate(off, "tasks"),
			ratio:    ratio(tj, off),
			target:   fmt.Sprintf("– (%+.1f %% tasks/s)", (tj/off-1)*100),
		})
	}
}

// admitRow reports the checks' cost per task against the per-task time at
// the task rates measured with them off.
func (b *bench) admitRow(rep *report, rateC1, rateC4 float64) {
	what := fmt.Sprintf("Policy decision (%d rules) + signature check + 4 audit records, per task (p50 / p99)", policyRules)
	s, err := b.admitCost(b.cfg.admitIters)
	if err != nil {
		rep.fail(what, err)
		return
	}
	if rateC4 == 0 || rateC1 == 0 {
		rep.fail(what, fmt.Errorf("no task rate was measured to compare with"))
		return
	}
	perTask4 := time.Duration(float64(time.Second) / rateC4)
	perTask1 := time.Duration(float64(time.Second) / rateC1)
	share := float64(s.p50()) / float64(perTask4)
	rep.add(row{
		what:    what,
		taskJob: fmt.Sprintf("%s / %s µs", us(s.p50()), us(s.p99())),
		baseline: fmt.Sprintf("per-task time with them off (1 ÷ tasks/s, default sandbox): concurrency 4 %s µs, concurrency 1 %s µs",
			us(perTask4), us(perTask1)),
		ratio: fmt.Sprintf("%.1f %%", share*100),
		target: fmt.Sprintf("< %.0f %% of the concurrency-4 per-task time: %s (%.1f %% at concurrency 1)",
			admitShare*100, verdict(share < admitShare), float64(s.p50())/float64(perTask1)*100),
	})
}

// fasterThanPeers reports whether the sandbox's p50 is below each named
// peer's; a peer that did not run counts as missed.
func fasterThanPeers(iso isolationCost, names ...string) bool {
	for _, n := range names {
		found := false
		for _, p := range iso.peers {
			if p.name == n && p.status == "" {
				found = true
				if iso.helper.p50() >= p.s.p50() {
					return false
				}
			}
		}
		if !found {
			return false
		}
	}
	return true
}
