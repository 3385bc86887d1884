package sandbox_test

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuditTable runs the probe (sandbox/probe) in the real sandbox and
// compares its table of what a task could and could not do with the one
// kept in testdata and quoted in the README. A difference is a change in
// what the sandbox allows: review it, then update both
// (make audit-sandbox > sandbox/testdata/audit-sandbox.md).
func TestAuditTable(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root")
		}
		t.Skip("the probe runs in the real sandbox, which needs root")
	}
	want, err := os.ReadFile("testdata/audit-sandbox.md")
	if err != nil {
		t.Fatal(err)
	}
	probe := "/bin/probe" // the VM test puts it there (vmtest.files)
	if os.Getenv("TASK_JOB_VMTEST") == "" {
		probe = filepath.Join(t.TempDir(), "probe")
		build := exec.Command("go", "build", "-o", probe, "./probe")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building the probe: %v\n%s", err, out)
		}
	}
	cmd := exec.Command(probe, "-run")
	cmd.Env = append(os.Environ(), "TASK_JOB_INIT="+os.Getenv("TASK_JOB_INIT"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("the probe: %v\n%s", err, stderr.String())
	}
	if string(got) != string(want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := 0; i < max(len(gl), len(wl)); i++ {
			g, w := "", ""
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Errorf("line %d:\n got  %s\n want %s", i+1, g, w)
			}
		}
	}
	readme, err := os.ReadFile("../README.md")
	if errors.Is(err, fs.ErrNotExist) {
		// The pure-v2 VM gets the test binary and testdata, not the
		// repository; the same test on the host checks the README.
		t.Log("no README here (the VM run): the host's run of this test compares it")
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), string(want)) {
		t.Errorf("the README's Sandbox section does not quote testdata/audit-sandbox.md exactly; copy it there")
	}
}
