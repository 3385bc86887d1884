package policy

import "github.com/taskjob/task-job/task"

// RequestOf is the Request a task's message states: its cmdline, cmd_args
// and timeout, and the key id its signature names. The signature is not
// verified here; an executor verifies it before it asks Decide.
func RequestOf(t *task.Task) Request {
	r := Request{Cmdline: t.Task.Cmdline, Args: t.Task.CmdArgs, Timeout: t.Task.Timeout.Duration()}
	if t.Sig != nil {
		r.KeyID = t.Sig.Key
	}
	return r
}

// Check is a dry run: the task, what Decide was asked, and its answer.
type Check struct {
	Task     *task.Task
	Request  Request
	Decision Decision
}

// CheckTask is the dry run of `task-job policy check` and of the
// management server's policy page: raw is read as the wire protocol's task
// message, as an executor reads it (task.Parse, at most maxBytes; 0 = no
// bound), and decided as if its signature were valid. Nothing runs and no
// queue is touched. The error is the task's: the message is not one an
// executor would take.
func (p *Policy) CheckTask(raw []byte, maxBytes int) (*Check, error) {
	t, err := task.Parse(raw, maxBytes)
	if err != nil {
		return nil, err
	}
	req := RequestOf(t)
	return &Check{Task: t, Request: req, Decision: p.Decide(req)}, nil
}
