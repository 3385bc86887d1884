package sandbox_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/taskjob/task-job/sandbox"
	"github.com/taskjob/task-job/sandbox/nsinit"
)

// TestLandlockRefusesWritesAMountAllows: the second wall on its own. A
// process confined as a task is may write beneath its own directory and
// nowhere else, even in a directory its mounts and permissions let it
// write; and the sandbox's tasks, confined this way, still write
// everything they should (work dir, /tmp, /dev/shm, /dev/null).
func TestLandlockRefusesWritesAMountAllows(t *testing.T) {
	if nsinit.LandlockABI() == 0 {
		if os.Getenv("CI") != "" && os.Getenv("TASK_JOB_VMTEST") == "" {
			t.Fatal("this host's kernel has Landlock; CI runs where it does")
		}
		t.Skip("the kernel has no Landlock")
	}
	own, other := t.TempDir(), t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, own, other)
	cmd.Env = append(os.Environ(), "SANDBOX_TEST_HELPER=landlock")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"own: ok", "other: permission denied", "rename out: permission denied", "null: ok"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Lstat(filepath.Join(other, "f")); err == nil {
		t.Error("the confined process wrote outside its own directory")
	}

	r := jailed(t)
	out2, res := run(t, r, taskDir(t), sandbox.Limits{User: "root"}, `
		echo a > "$HOME/a" && echo a > /tmp/a && echo a > /dev/shm/a && echo a > /dev/null && mkdir "$HOME/d" && mv "$HOME/a" "$HOME/d/" && echo wrote`)
	if res.ExitCode != 0 || !strings.Contains(out2, "wrote") {
		t.Errorf("a confined root task could not write its own places: exit %d\n%s", res.ExitCode, out2)
	}
}

func init() {
	// landlock confines itself as a task, with os.Args[1] its own
	// directory, then tries to write there and in os.Args[2].
	helpers["landlock"] = func() {
		runtime.LockOSThread() // Landlock, like the sandbox's setup, is per thread
		if on, err := nsinit.RestrictWrites([]string{os.Args[1]}, []string{"/dev"}); err != nil || !on {
			fmt.Println("restrict:", on, err)
			os.Exit(1)
		}
		try := func(what string, err error) {
			if err != nil {
				fmt.Println(what+":", strings.ToLower(err.(*os.PathError).Err.Error()))
				return
			}
			fmt.Println(what + ": ok")
		}
		try("own", os.WriteFile(filepath.Join(os.Args[1], "f"), []byte("x"), 0o644))
		try("other", os.WriteFile(filepath.Join(os.Args[2], "f"), []byte("x"), 0o644))
		if err := os.Rename(filepath.Join(os.Args[1], "f"), filepath.Join(os.Args[2], "f")); err != nil {
			fmt.Println("rename out:", strings.ToLower(err.(*os.LinkError).Err.Error()))
		} else {
			fmt.Println("rename out: ok")
		}
		f, err := os.OpenFile(os.DevNull, os.O_WRONLY|os.O_TRUNC, 0)
		if err == nil {
			f.Close()
		}
		try("null", err)
	}
}
