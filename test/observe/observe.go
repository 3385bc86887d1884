// Package observe holds what tests use to watch the host: waiting for a
// condition with a deadline instead of sleeping, and finding a process by a
// marker in its command line (a task's processes live in their own pid
// namespace, so their pids mean nothing here; their argv does), and a
// small disk that fills up, to watch what fails closed.
package observe

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Binary finds the program name in PATH. A missing program fails the
// test in CI (env CI set) and skips it elsewhere, so developers without it
// can still run the rest of the suite; install says how to get it.
func Binary(t testing.TB, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required in CI (env CI is set) but was not found: %v; install it with: %s", name, err, install)
	}
	t.Skipf("%s not found (%v); install it (%s) to run this test; in CI (env CI set) this is a failure, not a skip", name, err, install)
	return ""
}

// Eventually polls cond until it holds, failing the test after timeout.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // the polling interval, not a wait for an event
	}
}

// ProcessWithMarker reports whether a live process on this host has marker
// in its command line. Zombies have an empty command line and do not count.
func ProcessWithMarker(marker string) bool {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), marker) {
			return true
		}
	}
	return false
}

// Buffer collects output that a process's copy goroutines write while the
// test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TinyTmpfs mounts a 64 KiB tmpfs in a fresh directory for the test, which
// it unmounts at cleanup: a disk the test can fill. Mounting needs root;
// CI runs as root, so there a failure fails the test instead of skipping it.
func TinyTmpfs(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI runs as root and must test a full disk, but mounting a tmpfs failed: %v %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here (needs root; CI runs as root): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}
