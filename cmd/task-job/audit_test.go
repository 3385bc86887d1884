package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/audit/redismirror"
	"github.com/taskjob/task-job/test/redisserver"
)

// auditFixture writes two tasks' records and an executor start.
func auditFixture(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := audit.Open(path, audit.Options{Executor: "host-a"})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2020, 1, 2, 10, 0, 0, 0, time.UTC)
	recs := []audit.Record{
		{Kind: audit.KindExecutor, Event: audit.EventStarted, Version: "dev", PolicyDigest: "sha256:abcd"},
		{Kind: audit.KindReceived, ID: "101", Type: "test", Size: 120, Digest: "sha256:0011", KeyID: "ci"},
		{Kind: audit.KindDecision, ID: "101", Decision: audit.DecisionAllowed, Rule: "install"},
		{Kind: audit.KindStart, ID: "101", User: "nobody", PID: 4242, Limits: &audit.Limits{MemoryBytes: 1 << 28}},
		{Kind: audit.KindEnd, ID: "101", Status: "failed", ExitCode: audit.IntPtr(3), Reason: "exited with status 3"},
		{Kind: audit.KindReceived, ID: "102 x", Type: "test", Size: 99, Digest: "sha256:0022"},
		{Kind: audit.KindDecision, ID: "102 x", Decision: audit.DecisionDenied, Reason: "no rule matches \"rm\""},
	}
	for i, r := range recs {
		r.Time = at.Add(time.Duration(i) * time.Minute)
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func runAuditCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := runAudit(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestAuditTable(t *testing.T) {
	path := auditFixture(t)
	code, out, stderr := runAuditCmd("-file=" + path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 8 || !strings.HasPrefix(lines[0], "TIME") {
		t.Fatalf("table:\n%s", out)
	}
	// Columns line up: every row's KIND starts where the header's does.
	col := strings.Index(lines[0], "KIND")
	for _, l := range lines[1:] {
		if l[col-1] != ' ' || l[col] == ' ' {
			t.Fatalf("misaligned row %q\n%s", l, out)
		}
	}
	for _, want := range []string{
		"2020-01-02T10:04:00.000Z  5    end       101",
		"failed exit=3 reason=\"exited with status 3\"",
		`"102 x"`,
		`denied reason="no rule matches \"rm\""`,
		"started version=dev policy=sha256:abcd",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	t.Log("\n" + out)
}

func TestAuditFilters(t *testing.T) {
	path := auditFixture(t)
	for _, tc := range []struct {
		args []string
		seqs string
	}{
		{[]string{"-status=failed"}, "2 3 4 5"},
		{[]string{"-rule=install", "-kind=end"}, "5"},
		{[]string{"-key=ci"}, "2 3 4 5"},
		{[]string{"-id=102 x"}, "6 7"},
		{[]string{"-kind=executor"}, "1"},
		{[]string{"-since=2020-01-02T10:05:00Z"}, "6 7"},
		{[]string{"-until=2020-01-02T10:01:00Z"}, "1"},
		{[]string{"-since=1h"}, ""},
	} {
		code, out, stderr := runAuditCmd(append([]string{"-json", "-file=" + path}, tc.args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, stderr)
		}
		var seqs []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l == "" {
				continue
			}
			var r audit.Record
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("%v: not JSON: %q", tc.args, l)
			}
			seqs = append(seqs, strconv.FormatUint(r.Seq, 10))
		}
		if got := strings.Join(seqs, " "); got != tc.seqs {
			t.Errorf("%v: seqs %q, want %q", tc.args, got, tc.seqs)
		}
	}
}

func TestAuditJSONIsStoredLine(t *testing.T) {
	path := auditFixture(t)
	_, out, _ := runAuditCmd("-json", "-file="+path)
	stored, _ := os.ReadFile(path)
	if out != string(stored) {
		t.Fatalf("-json output differs from the stored lines:\n%s\nstored:\n%s", out, stored)
	}
}

func TestAuditVerify(t *testing.T) {
	path := auditFixture(t)
	code, out, _ := runAuditCmd("-verify", "-file="+path)
	if code != 0 || !strings.Contains(out, "intact: 7 records in 1 file(s), seq 1..7") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	data, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(data, []byte(`"exit_code":3`), []byte(`"exit_code":0`), 1), 0o600)
	code, out, _ = runAuditCmd("-verify", "-file="+path)
	if code != 1 || !strings.Contains(out, "BROKEN: audit.jsonl line 5 (seq 5): hash does not match its content — the record was edited") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestAuditVerifyAgainstMirror(t *testing.T) {
	srv := redisserver.Start(t)
	path := auditFixture(t)
	m := redismirror.Start(path, srv.Client(t), "audit_test", redismirror.Options{PollInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Wait(ctx, 7); err != nil {
		t.Fatal(err)
	}
	m.Close()
	code, out, _ := runAuditCmd("-verify", "-file="+path, "-redis_addr="+srv.Addr(), "-stream=audit_test")
	if code != 0 || !strings.Contains(out, "the mirror stream audit_test agrees: 7 records identical") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// Drop the last two records: the chain alone still verifies.
	data, _ := os.ReadFile(path)
	ls := bytes.SplitAfter(data, []byte{'\n'})
	os.WriteFile(path, bytes.Join(ls[:5], nil), 0o600)
	code, out, _ = runAuditCmd("-verify", "-file="+path, "-redis_addr="+srv.Addr(), "-stream=audit_test")
	if code != 1 || !strings.Contains(out, "intact: 5 records") || !strings.Contains(out, "BROKEN:") || !strings.Contains(out, "tail was removed") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestAuditUsage(t *testing.T) {
	path := auditFixture(t)
	for _, args := range [][]string{
		{},
		{"-file=" + path, "-kind=nope"},
		{"-file=" + path, "-since=yesterday"},
		{"-file=" + path, "-verify", "-id=1"},
		{"-file=" + path, "stray"},
		{"-nosuchflag"},
	} {
		if code, _, stderr := runAuditCmd(args...); code != 2 || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q; want 2 with a message", args, code, stderr)
		}
	}
	if code, _, stderr := runAuditCmd("-file=" + filepath.Join(t.TempDir(), "none.jsonl")); code != 1 || !strings.Contains(stderr, "no audit log at") {
		t.Errorf("missing log: exit %d %q", code, stderr)
	}
}
