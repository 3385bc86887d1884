package audit

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func openLog(t testing.TB, path string, opts Options) *Log {
	t.Helper()
	l, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// taskRecords is what the executor writes for one task.
func taskRecords(id, status, rule, key string) []Record {
	code := 0
	if status != "succeeded" {
		code = 3
	}
	return []Record{
		{Kind: KindReceived, ID: id, Digest: DigestOf([]byte(id)), Size: len(id), Type: "test", KeyID: key},
		{Kind: KindDecision, ID: id, Decision: DecisionAllowed, Rule: rule},
		{Kind: KindStart, ID: id, User: "nobody", PID: 1234, Cgroup: "/task-job/" + id, Limits: &Limits{MemoryBytes: 1 << 28, Pids: 64}},
		{Kind: KindEnd, ID: id, Status: status, ExitCode: IntPtr(code), Reason: fmt.Sprintf("exited with status %d", code), CPUMs: 5, PeakMemoryBytes: 1 << 20, OutputBytes: 10},
	}
}

func appendN(t testing.TB, l *Log, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := l.Append(Record{Kind: KindReceived, ID: fmt.Sprint("t", i), Size: i, Digest: DigestOf([]byte{byte(i)})}); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(data, []byte{'\n'})
}

func writeLines(t testing.TB, path string, ls [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(ls, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustVerify(t testing.TB, path string) Report {
	t.Helper()
	rep, err := Verify(path)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if rep.Break != nil {
		t.Fatalf("Verify: unexpected break: %v", rep.Break)
	}
	return rep
}

func rotatedFiles(t testing.TB, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + ".*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
