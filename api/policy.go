package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/taskjob/task-job/policy"
)

// PolicyCheck is what POST /api/v1/policy/check and the policy page say
// about a pasted task: what the loaded policy would decide (policy.CheckTask,
// the dry run `task-job policy check` does), with env values that look
// secret masked. Nothing runs and no queue is touched.
type PolicyCheck struct {
	// Policy is the policy file's name, as the server loaded it.
	Policy string          `json:"policy"`
	Task   PolicyCheckTask `json:"task"`
	// Signature: a signed task is decided as if its signature were valid
	// (the dry run does not verify it).
	SignatureVerified bool   `json:"signature_verified"`
	Allowed           bool   `json:"allowed"`
	Rule              string `json:"rule,omitempty"`
	RuleLine          int    `json:"rule_line,omitempty"`
	RuleDescription   string `json:"rule_description,omitempty"`
	// Reason says why no rule allows the task (starts with "policy: ").
	Reason string `json:"reason,omitempty"`
	// Limits are the effective limits of an allowed task (zero = the
	// executor's configured default), env masked.
	Limits *policy.Limits `json:"limits,omitempty"`
	Notes  []string       `json:"notes,omitempty"`
}

// PolicyCheckTask is the part of the task the decision looked at.
type PolicyCheckTask struct {
	ID      string   `json:"id"`
	Tube    string   `json:"tube"`
	Cmdline string   `json:"cmdline"`
	Args    []string `json:"cmd_args"`
	Timeout float64  `json:"timeout,omitempty"`
	KeyID   string   `json:"key_id,omitempty"`
}

// CheckPolicy dry-runs raw (the protocol's task JSON) against the policy
// the server has loaded. A body that is not a task the executor would take
// is a 400; no policy loaded is a 409.
func (s *Server) CheckPolicy(raw []byte) (*PolicyCheck, error) {
	var p *policy.Policy
	if s.opt.Policy != nil {
		p = s.opt.Policy()
	}
	if p == nil {
		return nil, errorf(http.StatusConflict, "this server has no policy loaded (policy_file is not set, or did not load): "+
			"there is nothing to dry-run against; an executor without a policy runs any script in cmd_dir that passes the jail's checks")
	}
	if len(strings.TrimSpace(string(raw))) == 0 {
		return nil, errorf(http.StatusBadRequest, "no task: send the protocol's task JSON, e.g. {\"id\":\"1\",\"task\":{\"cmdline\":\"install.sh\",\"cmd_args\":[\"feature/x\"]}}")
	}
	c, err := p.CheckTask(raw, s.opt.MaxTaskBytes)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "not a task an executor would take: %v", err)
	}
	out := &PolicyCheck{
		Policy: p.File(),
		Task: PolicyCheckTask{ID: c.Task.ID, Tube: c.Task.Tube, Cmdline: c.Request.Cmdline, Args: c.Request.Args,
			Timeout: c.Request.Timeout.Seconds(), KeyID: c.Request.KeyID},
		Allowed: c.Decision.Allowed, Rule: c.Decision.Rule, Reason: c.Decision.Reason, Notes: c.Decision.Notes,
	}
	if out.Task.Args == nil {
		out.Task.Args = []string{}
	}
	if c.Decision.Allowed {
		l := c.Decision.Limits.Shown()
		out.Limits = &l
		if r, ok := p.Rule(c.Decision.Rule); ok {
			out.RuleLine, out.RuleDescription = r.Line, r.Description
		}
	}
	return out, nil
}

func (s *Server) checkPolicy(w http.ResponseWriter, r *http.Request, _ *Identity) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		s.fail(w, errorf(http.StatusUnsupportedMediaType, "send the task as application/json"))
		return
	}
	raw, err := readBody(w, r, s.opt.MaxTaskBytes)
	if err != nil {
		s.fail(w, err)
		return
	}
	c, err := s.CheckPolicy(raw)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// policyExample fills the page's form before anything is pasted.
const policyExample = `{"id": "dry-run-1", "type": "", "tube": "", "task": {"cmdline": "install.sh", "cmd_args": ["feature/x"], "timeout": 600}}`

// policyPage is GET /policy and the form's POST /policy.
type policyPage struct {
	Input string
	Check *PolicyCheck
	Error string
}

func (wb *web) policy(w http.ResponseWriter, r *http.Request, id *Identity) {
	wb.render(w, r, id, http.StatusOK, "policy", "Policy dry run", "policy", &policyPage{Input: policyExample}, nil)
}

func (wb *web) checkPolicy(w http.ResponseWriter, r *http.Request, id *Identity) {
	// A form-encoded task is up to three times its size (%XX escapes).
	r.Body = http.MaxBytesReader(w, r.Body, int64(3*wb.s.opt.MaxTaskBytes+4096))
	pg := &policyPage{}
	code := http.StatusOK
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		code, pg.Error = http.StatusBadRequest, "the form could not be read: "+err.Error()
		if errors.As(err, &mbe) {
			code, pg.Error = http.StatusRequestEntityTooLarge, "the task is too big (max_task_bytes)"
		}
		wb.render(w, r, id, code, "policy", "Policy dry run", "policy", pg, nil)
		return
	}
	pg.Input = r.PostFormValue("task")
	c, err := wb.s.CheckPolicy([]byte(pg.Input))
	if err != nil {
		code, pg.Error = http.StatusServiceUnavailable, err.Error()
		var he *httpError
		if errors.As(err, &he) {
			code = he.code
		}
	}
	pg.Check = c
	wb.render(w, r, id, code, "policy", "Policy dry run", "policy", pg, nil)
}
