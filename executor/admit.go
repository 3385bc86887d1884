package executor

import (
	"context"
	"errors"
	"time"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/policy"
	"github.com/taskjob/task-job/sandbox"
	"github.com/taskjob/task-job/signature"
	"github.com/taskjob/task-job/task"
)

// admission is what the checks before a start decided about a task.
type admission struct {
	keyID   string // signing key, "" when unsigned
	rule    string // the policy rule that allowed it, "" without a policy
	limits  sandbox.Limits
	timeout time.Duration // 0 = none
	env     []string      // added by the rule
	notes   []string      // adjustments worth telling the submitter
}

// admit checks a parsed task's signature and the policy. It returns why the
// task is refused, in words for the person who sent it, or "".
func (e *Executor) admit(ctx context.Context, t *task.Task) (admission, string) {
	a := admission{timeout: t.Task.Timeout.Duration()}
	switch {
	case e.opt.Verifier != nil && (t.Sig != nil || e.opt.RequireSignatures):
		keyID, err := e.opt.Verifier.Verify(ctx, t)
		if err != nil {
			if errors.Is(err, signature.ErrUnsigned) && !e.opt.RequireSignatures {
				break
			}
			return a, err.Error()
		}
		a.keyID = keyID
	case e.opt.RequireSignatures:
		return a, "signature: this executor requires signed tasks but has no keys to check them"
	}

	p := e.policy.Load()
	if p == nil {
		return a, ""
	}
	d := p.Decide(policy.Request{
		Cmdline: t.Task.Cmdline, Args: t.Task.CmdArgs, KeyID: a.keyID, Timeout: a.timeout,
	})
	if !d.Allowed {
		return a, d.Reason
	}
	a.rule, a.notes = d.Rule, d.Notes
	a.timeout = d.Limits.Timeout
	a.env = d.Limits.Env
	a.limits = sandbox.Limits{
		MemoryBytes: d.Limits.MemoryBytes, CPUCores: d.Limits.CPUCores, Pids: d.Limits.Pids,
		User: d.Limits.User, Group: d.Limits.Group, Network: d.Limits.Network,
	}
	return a, ""
}

// SetPolicy replaces the policy for tasks admitted from now on (SIGHUP
// reload). nil removes it.
func (e *Executor) SetPolicy(p *policy.Policy) { e.policy.Store(p) }

// record appends to the audit log, when there is one. An error means the
// record could not be written, and what it records must not happen.
func (e *Executor) record(r audit.Record) error {
	if e.opt.Audit == nil {
		return nil
	}
	r.Executor = e.opt.ExecutorID
	if err := e.opt.Audit.Append(r); err != nil {
		e.opt.Observer.AuditWriteFailed()
		e.auditFailed(err)
		return err
	}
	return nil
}

// auditFailed says once, loudly, that tasks stop starting.
func (e *Executor) auditFailed(err error) {
	if e.auditDown.CompareAndSwap(false, true) {
		e.log.Error("the audit log cannot be written: no task is started until it can", "error", err)
	}
}

// auditHealthy reports whether tasks may be taken: the audit log, if any,
// can be written. While it cannot, the take loop waits here.
func (e *Executor) auditHealthy() bool {
	if e.opt.Audit == nil || !e.auditDown.Load() {
		return true
	}
	if err := e.opt.Audit.Healthy(); err != nil {
		return false
	}
	e.auditDown.Store(false)
	e.log.Info("the audit log can be written again; taking tasks")
	return true
}

func auditLimits(l sandbox.Limits, timeout time.Duration) *audit.Limits {
	return &audit.Limits{
		MemoryBytes: l.MemoryBytes, CPUs: l.CPUCores, Pids: l.Pids,
		TimeoutSec: int64(timeout / time.Second), Network: l.Network,
	}
}
