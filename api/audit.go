package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/audit/redismirror"
	"github.com/taskjob/task-job/task"
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

// auditExecutor is the ?executor= of the audit endpoints: whose log to
// read from its Redis copy ("" = this server's own audit_file).
func auditExecutor(q map[string][]string) (string, error) {
	v := q["executor"]
	if len(v) == 0 || v[0] == "" {
		return "", nil
	}
	if err := checkID(v[0]); err != nil {
		return "", errorf(http.StatusBadRequest, "executor=%q: want an executor id (1 to %d bytes, no control characters)", v[0], task.MaxIDBytes)
	}
	return v[0], nil
}

// auditCopy is the Redis copy of executor's audit log, at the stream name
// an executor mirrors to unless its audit_stream names another.
func (s *Server) auditCopy(ctx context.Context, executor string) (audit.LinesOf, error) {
	stream := s.q.Names().Tasks + "_audit:" + executor
	n, err := s.rdb.XLen(ctx, stream).Result()
	if err != nil {
		return audit.LinesOf{}, errorf(http.StatusServiceUnavailable, "cannot read the audit copy of executor %q (%s): %v", executor, stream, err)
	}
	if n == 0 {
		return audit.LinesOf{}, errorf(http.StatusNotFound, "no audit copy of executor %q in Redis (stream %s is empty): its config needs audit_file, and audit_stream left at its default", executor, stream)
	}
	return redismirror.Copy(ctx, s.rdb, stream), nil
}

// Audit reads the newest limit records that f selects: of this server's
// audit_file, or with executor set, of that executor's log from its Redis
// copy (what a server on another host can reach).
func (s *Server) Audit(ctx context.Context, executor string, f audit.Filter, limit int) (*AuditList, error) {
	read := func(fn func(audit.Record) error) error { return audit.Read(s.opt.AuditFile, f, fn) }
	switch {
	case executor != "":
		c, err := s.auditCopy(ctx, executor)
		if err != nil {
			return nil, err
		}
		read = func(fn func(audit.Record) error) error { return audit.ReadCopy(c, f, fn) }
	case s.opt.AuditFile == "":
		return nil, errorf(http.StatusNotFound, "this server has no audit_file to read; set it in the config, or read an executor's log from Redis with ?executor=ID")
	}
	out := &AuditList{Records: []audit.Record{}}
	err := read(func(r audit.Record) error {
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
	executor, err := auditExecutor(r.URL.Query())
	if err != nil {
		s.fail(w, err)
		return
	}
	l, err := s.Audit(r.Context(), executor, f, limit)
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
	// Source is what was verified: "file:PATH" or "redis:STREAM".
	Source string `json:"source"`
	// Mirror compares the file with its Redis stream copy.
	MirrorCompared int    `json:"mirror_compared"`
	MirrorBreak    string `json:"mirror_break,omitempty"`
	MirrorError    string `json:"mirror_error,omitempty"`
}

// VerifyAudit checks the chain, and the file against its Redis copy; with
// executor set, the chain of that executor's Redis copy (its file, on its
// own host, is checked there by task-job audit -verify).
func (s *Server) VerifyAudit(ctx context.Context, executor string) (*VerifyReport, error) {
	if executor != "" {
		c, err := s.auditCopy(ctx, executor)
		if err != nil {
			return nil, err
		}
		rep, err := audit.VerifyCopy(c)
		if err != nil {
			return nil, errorf(http.StatusServiceUnavailable, "%v", err)
		}
		out := &VerifyReport{OK: rep.OK(), Records: rep.Records, FirstSeq: rep.FirstSeq, LastSeq: rep.LastSeq, Warnings: rep.Warnings,
			Source: "redis:" + c.Name}
		if rep.Break != nil {
			out.Break = rep.Break.Error()
		}
		return out, nil
	}
	if s.opt.AuditFile == "" {
		return nil, errorf(http.StatusNotFound, "this server has no audit_file to verify; set it in the config")
	}
	rep, err := audit.Verify(s.opt.AuditFile)
	if err != nil {
		return nil, errorf(http.StatusNotFound, "%v", err)
	}
	out := &VerifyReport{OK: rep.OK(), Records: rep.Records, FirstSeq: rep.FirstSeq, LastSeq: rep.LastSeq, Warnings: rep.Warnings,
		Source: "file:" + s.opt.AuditFile}
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
	executor, err := auditExecutor(r.URL.Query())
	if err != nil {
		s.fail(w, err)
		return
	}
	rep, err := s.VerifyAudit(r.Context(), executor)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep) // a broken chain is a finding, not a failed request: see ok
}
