package executor

import (
	"context"
	"errors"
	"time"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/policy"
	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/sandbox"
	"github.com/taskjob/task-job/signature"
	"github.com/taskjob/task-job/task"
)

// admission is what the checks before a start decided about a task.
type admission struct {
	keyID    string // signing key, "" when unsigned
	rule     string // the policy rule that allowed it, "" without a policy
	limits   sandbox.Limits
	timeout  time.Duration // 0 = none
	env      []string      // added by the rule
	envShown []string      // env with secret values masked, for the status
	notes    []string      // adjustments worth telling the submitter
}

// decode parses a delivery once (task.Decode). An oversized one arrives
// as a prefix only and is refused from it.
func (e *Executor) decode(d *queue.Delivery) (t *task.Task, id, typ string, err error) {
	if d.Size > 0 {
		id, typ, err = task.RefuseOversized(d.Raw, d.Size, e.opt.MaxTaskBytes)
		return nil, id, typ, err
	}
	return task.Decode(d.Raw, e.opt.MaxTaskBytes)
}

// received is the audit record of a delivery's arrival.
func received(d *queue.Delivery, id, typ string) audit.Record {
	r := audit.Record{Kind: audit.KindReceived, ID: id, Type: typ, Digest: audit.DigestOf(d.Raw), Size: len(d.Raw)}
	if d.Size > 0 {
		r.Digest, r.Size = d.Digest, d.Size
	}
	return r
}

// authenticated is what was learnt of a message's signature before its id
// was claimed.
type authenticated struct {
	keyID string // the key that signed it, "" when unsigned or refused
	// refused is why the task is refused, answered with a done on its id.
	refused string
	// unanswered is why the message is dropped without claiming its id
	// and without a done: with require_signatures, only a message a key
	// holder signed may reserve an id or speak on it.
	unanswered string
}

// authenticate checks a message's signature before its id is claimed
// (perr is why it did not parse, if it did not). With require_signatures,
// a message that no key vouches for — unparseable, unsigned, unknown key,
// forged — gets unanswered: claiming its id, or publishing a done on it,
// would let anyone who can RPUSH block or pre-empt a future signed task
// with that id and mislead whoever waits on it. A stale task is genuine
// (its MAC matched) and is answered. Without require_signatures any
// message may take any id anyway, and refusals are answered as before.
func (e *Executor) authenticate(t *task.Task, perr error) authenticated {
	v := e.opt.Verifier
	if !e.opt.RequireSignatures {
		if perr != nil || v == nil || t.Sig == nil {
			return authenticated{}
		}
		keyID, err := v.Authenticate(t)
		if err != nil {
			return authenticated{refused: err.Error()}
		}
		return authenticated{keyID: keyID}
	}
	switch {
	case perr != nil:
		return authenticated{unanswered: perr.Error()}
	case v == nil:
		return authenticated{unanswered: "signature: this executor requires signed tasks but has no keys to check them"}
	}
	keyID, err := v.Authenticate(t)
	switch {
	case errors.Is(err, signature.ErrStale):
		return authenticated{refused: err.Error()}
	case err != nil:
		return authenticated{unanswered: err.Error()}
	}
	return authenticated{keyID: keyID}
}

// admit checks the replay memory of an authenticated task, then the
// policy. It returns why the task is refused, in words for the person who
// sent it, or "".
func (e *Executor) admit(ctx context.Context, t *task.Task, auth authenticated) (admission, string) {
	a := admission{timeout: t.Task.Timeout.Duration()}
	if auth.refused != "" {
		return a, auth.refused
	}
	if auth.keyID != "" {
		if err := e.opt.Verifier.Remember(ctx, t); err != nil {
			return a, err.Error()
		}
		a.keyID = auth.keyID
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
	a.envShown = d.Limits.ShownEnv()
	a.limits = sandbox.Limits{
		MemoryBytes: d.Limits.MemoryBytes, CPUCores: d.Limits.CPUCores, Pids: d.Limits.Pids,
		User: d.Limits.User, Group: d.Limits.Group, Network: d.Limits.Network,
		CmdDirWritable: d.Limits.CmdDirWritable,
	}
	return a, ""
}

// admitKill checks a kill's signature. With require_signatures a kill must
// be signed by a known key (see signature.CanonicalKill); without it, a
// kill that carries a signature must still carry a valid one. It returns
// why the kill is refused, or "".
func (e *Executor) admitKill(c *task.Control) string {
	v := e.opt.Verifier
	switch {
	case v == nil && e.opt.RequireSignatures:
		return "signature: this executor requires signed kills but has no keys to check them"
	case v == nil, c.Sig == nil && !e.opt.RequireSignatures:
		return ""
	}
	if _, err := v.VerifyKill(c); err != nil {
		return err.Error()
	}
	return ""
}

// refuseKill reports whether a kill is refused (admitKill), logging and
// auditing the refusal. A refused kill changes nothing: it neither stops a
// task nor marks an id cancelled.
func (e *Executor) refuseKill(c *task.Control) bool {
	why := e.admitKill(c)
	if why == "" {
		return false
	}
	e.log.Warn("refusing a kill message", "id", c.ID, "reason", why)
	_ = e.record(audit.Record{Kind: audit.KindControl, ID: c.ID, Action: task.ControlKill, By: "kill message",
		Decision: audit.DecisionRejected, Reason: "kill refused, nothing done: " + why})
	return true
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
		TimeoutSec: int64(timeout / time.Second), Network: l.Network, CmdDirWritable: l.CmdDirWritable,
	}
}
