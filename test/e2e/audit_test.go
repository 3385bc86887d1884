package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/observe"
)

// auditRecords runs `task-job audit -id ID -json` and decodes its lines.
func auditRecords(t *testing.T, cfg, id string) []audit.Record {
	t.Helper()
	out, code := run(t, "audit", "-config="+cfg, "-id", id, "-json")
	if code != 0 {
		t.Fatalf("audit -id %s -json: exit %d\n%s", id, code, out)
	}
	var recs []audit.Record
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit -json printed a line that is not a record: %q", sc.Text())
		}
		recs = append(recs, r)
	}
	return recs
}

func byKind(recs []audit.Record) map[string][]audit.Record {
	m := map[string][]audit.Record{}
	for _, r := range recs {
		m[r.Kind] = append(m[r.Kind], r)
	}
	return m
}

func kinds(recs []audit.Record) string {
	var k []string
	for _, r := range recs {
		k = append(k, r.Kind)
	}
	return strings.Join(k, ",")
}

// The audit log records what happened to an allowed, a denied and a killed
// task; `task-job audit` verifies the chain and shows each task's records;
// an edited line is caught and named; the Redis stream holds the same lines.
func TestAuditLogEndToEnd(t *testing.T) {
	dir := sandboxDir(t)
	script(t, dir, "ok.sh", `echo "ok $1"`)
	script(t, dir, "long.sh", "echo begun\nsleep 60")
	pol := filepath.Join(t.TempDir(), "policy.hcl")
	writeFile(t, pol, `
defaults {
  memory = "64MiB"
  pids   = 32
}
rule "ok" {
  cmdline = "ok.sh"
  args    = ["[a-z]+"]
}
rule "long" {
  cmdline          = "long.sh"
  cmd_dir_writable = true
}
`, 0o644)
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	exID := uniqueID("aud")
	g := startGuarded(t, dir, exID, map[string]any{
		"policy_file": pol, "audit_file": auditFile, "audit_stream": "e2e_audit",
	})

	allowedRaw := []byte(`{"id":"allowed","type":"e2e","tube":"","task":{"cmdline":"ok.sh","cmd_args":["hello"],"timeout":30}}`)
	g.pushRaw(t, allowedRaw)
	expectStatus(t, "allowed", g.done(t, "allowed"), task.Succeeded)
	expectStatus(t, "denied", g.run(t, "denied", 0, "nope.sh"), task.Rejected)
	g.push(t, task.Task{ID: "killed", Type: "e2e", Task: task.Spec{Cmdline: "long.sh"}})
	observe.Eventually(t, "the long task to run", 10*time.Second, func() bool {
		return g.rdb.HGet(context.Background(), "queue_job_task:status:killed", "state").Val() == "running"
	})
	if out, code := run(t, "kill", "-config="+g.cfg, "killed"); code != 0 {
		t.Fatalf("kill: %d %s", code, out)
	}
	expectStatus(t, "killed", g.done(t, "killed"), task.Killed)

	out, code := run(t, "audit", "-config="+g.cfg, "-verify")
	if code != 0 || !strings.Contains(out, "intact") {
		t.Fatalf("audit -verify of an untouched log: exit %d\n%s", code, out)
	}

	t.Run("allowed", func(t *testing.T) {
		recs := auditRecords(t, g.cfg, "allowed")
		k := byKind(recs)
		if kinds(recs) != "received,decision,start,end" {
			t.Errorf("record kinds %s, want received,decision,start,end", kinds(recs))
		}
		if r := k["received"]; len(r) != 1 || r[0].Digest != audit.DigestOf(allowedRaw) || r[0].Size != len(allowedRaw) || r[0].Type != "e2e" {
			t.Errorf("received: %+v, want digest %s", r, audit.DigestOf(allowedRaw))
		}
		if r := k["decision"]; len(r) != 1 || r[0].Decision != audit.DecisionAllowed || r[0].Rule != "ok" {
			t.Errorf("decision: %+v", r)
		}
		if r := k["start"]; len(r) != 1 || r[0].User != "nobody" || r[0].PID <= 0 || r[0].Cgroup == "" || r[0].Rule != "ok" ||
			r[0].Limits == nil || r[0].Limits.MemoryBytes != 64<<20 || r[0].Limits.Pids != 32 || r[0].Limits.TimeoutSec != 30 || r[0].Limits.CmdDirWritable {
			t.Errorf("start: %+v (limits %+v)", r, r[0].Limits)
		}
		if r := k["end"]; len(r) != 1 || r[0].Status != "succeeded" || r[0].ExitCode == nil || *r[0].ExitCode != 0 {
			t.Errorf("end: %+v", r)
		}
		for _, r := range recs {
			if r.Executor != exID || r.Hash == "" || r.Seq == 0 {
				t.Errorf("record without executor or chain members: %+v", r)
			}
		}
	})
	t.Run("denied", func(t *testing.T) {
		recs := auditRecords(t, g.cfg, "denied")
		k := byKind(recs)
		if len(k["start"]) != 0 {
			t.Errorf("a denied task has a start record: %+v", k["start"])
		}
		if r := k["decision"]; len(r) != 1 || r[0].Decision != audit.DecisionDenied || r[0].Reason != `policy: no rule allows cmdline "nope.sh"` {
			t.Errorf("decision: %+v", r)
		}
		if r := k["end"]; len(r) != 1 || r[0].Status != "rejected" {
			t.Errorf("end: %+v", r)
		}
	})
	t.Run("killed", func(t *testing.T) {
		recs := auditRecords(t, g.cfg, "killed")
		k := byKind(recs)
		if r := k["decision"]; len(r) != 1 || r[0].Rule != "long" {
			t.Errorf("decision: %+v", r)
		}
		if r := k["start"]; len(r) != 1 || r[0].PID <= 0 || r[0].Cgroup == "" || r[0].Limits == nil || !r[0].Limits.CmdDirWritable {
			t.Errorf("start: %+v, want its rule's cmd_dir_writable recorded", r)
		}
		if r := k["end"]; len(r) != 1 || r[0].Status != "killed" || r[0].Reason != "killed by a kill message" {
			t.Errorf("end: %+v", r)
		}
		// audit/doc.go: the log records "control messages"; the record kind
		// "control" (Action "kill") exists for it.
		if r := k["control"]; len(r) != 1 || r[0].Action != "kill" {
			t.Errorf("no control record for the kill message (the log records control messages); kinds: %s", kinds(recs))
		}
	})
	t.Run("mirror stream", func(t *testing.T) {
		lines := fileLines(t, auditFile)
		var got []string
		observe.Eventually(t, "the stream to hold every line of the file", 10*time.Second, func() bool {
			msgs, err := g.rdb.XRange(context.Background(), "e2e_audit", "-", "+").Result()
			if err != nil {
				return false
			}
			got = got[:0]
			for _, m := range msgs {
				got = append(got, fmt.Sprint(m.Values["line"]))
			}
			return len(got) >= len(lines)
		})
		for i := range lines {
			if got[i] != lines[i] {
				t.Fatalf("stream entry %d differs from file line %d:\n%s\n%s", i+1, i+1, got[i], lines[i])
			}
		}
	})
	t.Run("tampered", func(t *testing.T) {
		// Stopped first, so no append races the edit.
		g.p.signal(syscall.SIGTERM)
		g.p.wait(t, 20*time.Second)
		lines := fileLines(t, auditFile)
		n := -1
		for i, l := range lines {
			if strings.Contains(l, `"kind":"end"`) && strings.Contains(l, `"id":"denied"`) {
				n = i
			}
		}
		if n < 0 {
			t.Fatal("no end record of the denied task in the file")
		}
		lines[n] = strings.Replace(lines[n], `"status":"rejected"`, `"status":"succeeded"`, 1)
		if err := os.WriteFile(auditFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, code := run(t, "audit", "-file="+auditFile, "-verify")
		if code != 1 || !strings.Contains(out, fmt.Sprintf("line %d", n+1)) {
			t.Errorf("audit -verify after editing line %d: exit %d\n%s", n+1, code, out)
		}
	})
}

func fileLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}
