// Package containershell gives tests the shell a redis:7-alpine container
// has, so the examples' container-side scripts are run as a container runs
// them: Alpine's sh and its coreutils are busybox, and a script that uses a
// GNU-only option works on the host but fails there.
package containershell

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Env returns base with PATH set to a directory of busybox's applets and
// the host programs named (redis-cli, which the image has; openssl, which
// the signed example adds with apk), and nothing else.
func Env(t testing.TB, base []string, programs ...string) []string {
	t.Helper()
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatalf("the container-side scripts are checked under busybox sh, as in an Alpine image: apt-get install busybox-static (make deps installs it): %v", err)
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	dir := t.TempDir()
	for _, applet := range strings.Fields(string(out)) {
		if err := os.Symlink(busybox, filepath.Join(dir, applet)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range programs {
		path, err := exec.LookPath(p)
		if err != nil {
			t.Fatalf("%s is needed: %v", p, err)
		}
		if err := os.Symlink(path, filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// exec keeps the last of two values of one variable.
	return append(base, "PATH="+dir)
}

// Command runs script with busybox sh in env (from Env), as
// "sh SCRIPT ARGS" in the container.
func Command(env []string, script string, args ...string) *exec.Cmd {
	// exec.Command looks names up in this process's PATH, not env's.
	path := ""
	for _, kv := range env {
		if p, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = p
		}
	}
	cmd := exec.Command(filepath.Join(path, "sh"), append([]string{script}, args...)...)
	cmd.Env = env
	return cmd
}
