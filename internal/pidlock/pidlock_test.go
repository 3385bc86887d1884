package pidlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// One holder at a time, even within one process; the refused one learns
// the holder's pid; closing releases it.
func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	f, err := Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Lock(path)
	var held *HeldError
	if !errors.Is(err, ErrHeld) || !errors.As(err, &held) || held.Holder != fmt.Sprintf("pid %d", os.Getpid()) {
		t.Fatalf("a second Lock = %v, want held by pid %d", err, os.Getpid())
	}
	f.Close()
	g, err := Lock(path)
	if err != nil {
		t.Fatalf("Lock after the holder closed = %v", err)
	}
	g.Close()
}
