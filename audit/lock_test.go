package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 8, report 4: two writers of one audit file broke the chain at once
// ("seq goes back from 1 to 1"). The second writer must refuse to start and
// name the first.
func TestSecondWriterIsRefusedAndTheChainHolds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	first := openLog(t, path, Options{Executor: "a"})
	if err := first.Append(Record{Kind: KindReceived, ID: "1"}); err != nil {
		t.Fatal(err)
	}
	second, err := Open(path, Options{Executor: "b"})
	if err == nil {
		second.Close()
		t.Fatal("a second writer opened the audit log")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("second Open = %v; want ErrLocked naming pid %d", err, os.Getpid())
	}
	if err := first.Append(Record{Kind: KindReceived, ID: "2"}); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	// Once the writer is gone the log opens again and continues its chain.
	again := openLog(t, path, Options{Executor: "b"})
	if err := again.Append(Record{Kind: KindReceived, ID: "3"}); err != nil {
		t.Fatal(err)
	}
	again.Close()
	rep, err := Verify(path)
	if err != nil || !rep.OK() {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}
