package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/audit/redismirror"
)

// AuditList is a page of audit records, oldest first (chain order).
type AuditList struct {
	Records []audit.Record `json:"records"`
	// Truncated is true when more records matched than were returned
	// (the newest are kept).
	Truncated bool `json:"truncated,omitempty"`
	// Warning names lines skipped because they did not verify.
	Warning string `json:"warning,omitempty"`
}

func parseAuditFilter(q map[string][]string) (audit.Filter, int, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	f := audit.Filter{ID: get("id"), Status: get("status"), Rule: get("rule"), KeyID: get("key"), Kind: get("kind")}
	switch f.Kind {
	case "", audit.KindReceived, audit.KindDecision, audit.KindStart, audit.KindControl, audit.KindEnd, audit.KindExecutor, audit.KindRotate:
	default:
		return f, 0, errorf(http.StatusBadRequest, "kind=%q: use received, decision, start, control, end, executor or rotate", f.Kind)
	}
	now := time.Now()
	var err error
	if f.Since, err = parseWhen(get("since"), now); err != nil {
		return f, 0, errorf(http.StatusBadRequest, "since: %v", err)
	}
	if f.Until, err = parseWhen(get("until"), now); err != nil {
		return f, 0, errorf(http.StatusBadRequest, "until: %v", err)
	}
	limit := 200
	if l := get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 10000 {
			return f, 0, errorf(http.StatusBadRequest, "limit=%q: want 1 to 10000", l)
		}
		limit = n
	}
	return f, limit, nil
}

// auditReadable refuses the audit log to a token limited to tubes: its
// records carry no tube (a task's is known only while its status lasts),
// and the log names every tube's tasks, rules, reasons and users.
func auditReadable(id *Identity) error {
	if id.Tubes != nil {
		return errorf(http.StatusForbidden, "token %q is limited to tubes %v; the audit log covers every tube, so it needs a token without tubes=", id.Name, id.Tubes)
	}
	return nil
}

// Audit reads the newest limit records that f selects.
func (s *Server) Audit(f audit.Filter, limit int) (*AuditList, error) {
	if s.opt.AuditFile == "" {
		return nil, errorf(http.StatusNotFound, "this server has no audit_file to read; set it in the config")
	}
	out := &AuditList{Records: []audit.Record{}}
	err := audit.Read(s.opt.AuditFile, f, func(r audit.Record) error {
		if len(out.Records) == limit {
			out.Records = append(out.Records[:0], out.Records[1:]...)
			out.Truncated = true
		}
		out.Records = append(out.Records, r)
		return nil
	})
	var re *audit.ReadError
	if errors.As(err, &re) {
		out.Warning = re.Error()
		err = nil
	}
	return out, err
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, id *Identity) {
	if err := auditReadable(id); err != nil {
		s.fail(w, err)
		return
	}
	f, limit, err := parseAuditFilter(r.URL.Query())
	if err != nil {
		s.fail(w, err)
		return
	}
	l, err := s.Audit(f, limit)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

// VerifyReport is GET /api/v1/audit/verify.
type VerifyReport struct {
	OK       bool     `json:"ok"`
	Records  int      `json:"records"`
	FirstSeq uint64   `json:"first_seq"`
	LastSeq  uint64   `json:"last_seq"`
	Warnings []string `json:"warnings,omitempty"`
	Break    string   `json:"break,omitempty"`
	// Mirror compares the file with its Redis stream copy.
	MirrorCompared int    `json:"mirror_compared"`
	MirrorBreak    string `json:"mirror_break,omitempty"`
	MirrorError    string `json:"mirror_error,omitempty"`
}

// VerifyAudit checks the chain, and the file against its Redis copy.
func (s *Server) VerifyAudit(ctx context.Context) (*VerifyReport, error) {
	if s.opt.AuditFile == "" {
		return nil, errorf(http.StatusNotFound, "this server has no audit_file to verify; set it in the config")
	}
	rep, err := audit.Verify(s.opt.AuditFile)
	if err != nil {
		return nil, errorf(http.StatusNotFound, "%v", err)
	}
	out := &VerifyReport{OK: rep.OK(), Records: rep.Records, FirstSeq: rep.FirstSeq, LastSeq: rep.LastSeq, Warnings: rep.Warnings}
	if rep.Break != nil {
		out.Break = rep.Break.Error()
	}
	if s.opt.AuditStream != "" {
		mr, err := redismirror.Verify(ctx, s.opt.AuditFile, s.rdb, s.opt.AuditStream)
		switch {
		case err != nil:
			out.MirrorError = err.Error()
		case mr.Break != nil:
			out.OK = false
			out.MirrorBreak = mr.Break.Error()
		}
		out.MirrorCompared = mr.Compared
	}
	return out, nil
}

func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request, id *Identity) {
	if err := auditReadable(id); err != nil {
		s.fail(w, err)
		return
	}
	rep, err := s.VerifyAudit(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep) // a broken chain is a finding, not a failed request: see ok
}
