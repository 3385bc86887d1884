package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/executor"
	"github.com/taskjob/task-job/policy"
	"github.com/taskjob/task-job/signature"
	"github.com/taskjob/task-job/task"
)

// policyRules is the size of the benchmark's policy: what a busy host
// might have. The rule that allows true.sh comes last, so a policy that
// tried rules in turn would pay for all of them.
const policyRules = 20

// admitShare is the most the checks before a start may cost, as a share of
// the per-task time at the measured task rate.
const admitShare = 0.05

// Signing key of the benchmark's tasks.
const benchKeyID = "bench"

var benchSecret = []byte("task-job-bench-secret-0123456789abcdef")

// benchPolicy returns a policy of policyRules rules, one of which allows
// true.sh.
func benchPolicy() (*policy.Policy, error) {
	var src strings.Builder
	src.WriteString("defaults {\n  user = \"nobody\"\n  memory = \"256MiB\"\n  timeout = \"30m\"\n  env = { LANG = \"C.UTF-8\" }\n}\n")
	for i := range policyRules - 1 {
		fmt.Fprintf(&src, "rule \"r%d\" {\n  cmdline = \"job%d.sh --mode fast\"\n  args = [\"feature/[A-Za-z0-9._/-]+\", \"[0-9]{1,6}\"]\n  env = { N = \"%d\" }\n}\n", i, i, i)
	}
	fmt.Fprintf(&src, "rule \"bench\" {\n  cmdline = %q\n  keys = [%q]\n}\n", trueScript, benchKeyID)
	return policy.Parse([]byte(src.String()), "bench-policy.hcl")
}

func benchVerifier(entries int) (*signature.Verifier, error) {
	keys, err := signature.NewKeyring(map[string][]byte{benchKeyID: benchSecret})
	if err != nil {
		return nil, err
	}
	return signature.NewVerifier(keys, signature.Options{Replay: signature.NewMemoryGuard(entries)}), nil
}

// signedTask returns a task for true.sh signed with the benchmark's key.
func signedTask(id string) *task.Task {
	t := &task.Task{ID: id, Type: "bench", Task: task.Spec{Cmdline: trueScript, CmdArgs: []string{}}}
	signature.Sign(t, benchKeyID, benchSecret, time.Now())
	return t
}

func signedTaskJSON(id string) string {
	raw, err := json.Marshal(signedTask(id))
	if err != nil {
		panic(err) // plain strings only: cannot fail
	}
	return string(raw)
}

// admitCost times, outside the executor, what its checks add to one task:
// a policy decision, a signature check with the in-memory replay guard,
// and the four audit records of a task that runs (received, decision,
// start, end). The audit log is fsynced in batches as the executor's is.
func (b *bench) admitCost(iters int) (samples, error) {
	p, err := benchPolicy()
	if err != nil {
		return nil, err
	}
	v, err := benchVerifier(iters + warmup + 1)
	if err != nil {
		return nil, err
	}
	log, err := audit.Open(filepath.Join(b.tmp, "audit-micro.jsonl"), audit.Options{Executor: "bench"})
	if err != nil {
		return nil, err
	}
	defer log.Close()
	// Signing is the client's work: done before the clock starts.
	tasks := make([]*task.Task, iters+warmup)
	raws := make([][]byte, len(tasks))
	for i := range tasks {
		tasks[i] = signedTask(fmt.Sprintf("admit-%d", i))
		if raws[i], err = json.Marshal(tasks[i]); err != nil {
			return nil, err
		}
	}
	ctx := context.Background()
	s := make(samples, 0, iters)
	for i, t := range tasks {
		t0 := time.Now()
		if err := log.Append(audit.Record{Kind: audit.KindReceived, ID: t.ID, Type: t.Type, Digest: audit.DigestOf(raws[i]), Size: len(raws[i])}); err != nil {
			return nil, err
		}
		keyID, err := v.Verify(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("signature: %w", err)
		}
		d := p.Decide(policy.Request{Cmdline: t.Task.Cmdline, Args: t.Task.CmdArgs, KeyID: keyID})
		if !d.Allowed {
			return nil, fmt.Errorf("the policy refused the benchmark's task: %s", d.Reason)
		}
		if err := log.Append(audit.Record{Kind: audit.KindDecision, ID: t.ID, Decision: audit.DecisionAllowed, Rule: d.Rule, KeyID: keyID}); err != nil {
			return nil, err
		}
		if err := log.Append(audit.Record{Kind: audit.KindStart, ID: t.ID, Rule: d.Rule, User: d.Limits.User,
			Limits: &audit.Limits{MemoryBytes: d.Limits.MemoryBytes, CPUs: d.Limits.CPUCores, Pids: d.Limits.Pids, TimeoutSec: int64(d.Limits.Timeout / time.Second)},
			Cgroup: "/sys/fs/cgroup/task-job/" + t.ID, PID: 12345}); err != nil {
			return nil, err
		}
		if err := log.Append(audit.Record{Kind: audit.KindEnd, ID: t.ID, Status: "succeeded", ExitCode: audit.IntPtr(0),
			Reason: "exited with status 0", CPUMs: 1, PeakMemoryBytes: 1 << 20}); err != nil {
			return nil, err
		}
		if i >= warmup {
			s = append(s, time.Since(t0))
		}
	}
	return s, log.Close()
}

// admitVariant is the executor as a locked-down host runs it: a policy of
// policyRules rules, signed tasks checked with the in-memory replay guard,
// and an audit log, on top of runner v.
func (b *bench) admitVariant(v variant) (variant, error) {
	p, err := benchPolicy()
	if err != nil {
		return v, err
	}
	ver, err := benchVerifier(4 * b.cfg.floodTasks)
	if err != nil {
		return v, err
	}
	log, err := audit.Open(filepath.Join(b.tmp, "audit"+v.suffix+".jsonl"), audit.Options{})
	if err != nil {
		return v, err
	}
	v.label += ", policy + signature + audit on"
	v.suffix += "-admit"
	v.encode = signedTaskJSON
	v.configure = func(o *executor.Options) {
		o.Policy, o.Verifier, o.RequireSignatures, o.Audit = p, ver, true, log
	}
	v.close = func() { _ = log.Close() }
	return v, nil
}

// us formats d in microseconds.
func us(d time.Duration) string {
	return fmt.Sprintf("%.1f", float64(d)/float64(time.Microsecond))
}
