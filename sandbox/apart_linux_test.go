package sandbox_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taskjob/task-job/sandbox"
)

// TestTasksKeepApart is the setuid plant of the attack pass, step by step: a
// nobody task may not leave anything that a later task (run as root by a
// rule) would execute. cmd_dir is read-only to it; its HOME, TMPDIR and
// TASK_WORKDIR are a directory of its own, gone when it ends; its working
// directory is still cmd_dir, so sibling scripts run by relative path.
func TestTasksKeepApart(t *testing.T) {
	r := jailed(t)
	dir := taskDir(t) // 0777, like a sticky /tmp: writable to nobody on the host
	if err := os.WriteFile(filepath.Join(dir, "sibling.sh"), []byte("echo sibling ran\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, res := run(t, r, dir, sandbox.Limits{}, `
		echo "home=$HOME"; echo "tmp=$TMPDIR"; echo "work=$TASK_WORKDIR"; echo "pwd=$(pwd)"
		sh ./sibling.sh
		mkdir -p "$HOME/.local/lib/python3/site-packages" && echo 'import os' > "$HOME/.local/lib/python3/site-packages/x.pth" && echo planted home
		{ mkdir -p .local/lib && echo plant > .local/lib/x.pth; } 2>/dev/null && echo PLANTED CMD_DIR
		{ mkdir bin && cp /bin/sh bin/bash; } 2>/dev/null && echo PLANTED BIN
		stat -c '%U %a' "$HOME"`)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d: %s", res.ExitCode, out)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	home := vars["home"]
	switch {
	case home == "" || home == dir || strings.HasPrefix(home, dir+"/"):
		t.Errorf("HOME = %q, want a directory of the task's own outside cmd_dir %s", home, dir)
	case vars["tmp"] != home || vars["work"] != home:
		t.Errorf("TMPDIR %q and TASK_WORKDIR %q, want both = HOME %q", vars["tmp"], vars["work"], home)
	case vars["pwd"] != dir:
		t.Errorf("the working directory is %q, want cmd_dir %s", vars["pwd"], dir)
	}
	for _, want := range []string{"sibling ran\n", "planted home\n", "nobody 700\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "PLANTED") {
		t.Errorf("the task wrote cmd_dir:\n%s", out)
	}
	for _, p := range []string{".local", "bin"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
			t.Errorf("cmd_dir/%s exists on the host after the task", p)
		}
	}
	// Removed once the task's resources are released, just after its result.
	eventually(t, 5*time.Second, "the task's work directory "+home+" to be removed", func() bool {
		_, err := os.Lstat(home)
		return err != nil
	})

	// The next task, even root, gets a fresh HOME: nothing of the first.
	out, res = run(t, r, dir, sandbox.Limits{User: "root"}, `ls -A "$HOME"; echo "home=$HOME"; ls `+home+` 2>&1 | head -1`)
	if res.ExitCode != 0 || !strings.HasPrefix(out, "home=") || strings.Contains(out, "home="+home+"\n") || strings.Contains(out, ".local") {
		t.Errorf("the second task's HOME: exit %d\n%s", res.ExitCode, out)
	}
}

// TestNoSetidFileOnHost: a root task allowed to write cmd_dir cannot leave a
// set-user-id (or set-group-id) file there that would give root to whoever
// runs it on the host, however it tries; nor a device node.
func TestNoSetidFileOnHost(t *testing.T) {
	r := jailed(t)
	dir := taskDir(t)
	out, res := run(t, r, dir, sandbox.Limits{User: "root", CmdDirWritable: true}, `
		cp /usr/bin/id id1 && chmod 4755 id1; chmod u+s id1
		cp /usr/bin/id id2 && chmod 2755 id2
		install -m 4755 /usr/bin/id id3
		cp -p /usr/bin/id id4 && chmod +s id4
		cp /usr/bin/id "$HOME/id5" && chmod 4755 "$HOME/id5" && cp -a "$HOME/id5" id5
		python3 -c 'import os; fd = os.open("id6", os.O_CREAT|os.O_WRONLY, 0o4755); os.close(fd)' 2>/dev/null
		mknod dev c 1 3; mknod blk b 8 0
		setcap cap_setuid+ep id1 2>/dev/null
		ls -l; true`)
	t.Logf("exit %d:\n%s", res.ExitCode, out)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		fi, err := os.Lstat(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeDevice|os.ModeCharDevice) != 0 {
			t.Errorf("the task left %s with mode %v on the host", e.Name(), fi.Mode())
		}
	}
	// And what is there gives nobody nothing.
	for _, name := range []string{"id1", "id2", "id3", "id4"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		cmd := exec.Command(p, "-u")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		b, err := cmd.Output()
		if err == nil && strings.TrimSpace(string(b)) != "65534" {
			t.Errorf("on the host, nobody running %s gets euid %s", name, b)
		}
	}
}

// TestWritableMountsAreNosuid: every place a task can write is mounted
// nosuid,nodev, in both root modes.
func TestWritableMountsAreNosuid(t *testing.T) {
	for _, writable := range []bool{false, true} {
		r := jailed(t)
		out, res := run(t, r, taskDir(t), sandbox.Limits{CmdDirWritable: writable}, `cat /proc/self/mountinfo`)
		if res.ExitCode != 0 {
			t.Fatalf("exit %d: %s", res.ExitCode, out)
		}
		rw := 0
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			mp, opts := f[4], ","+f[5]+","
			// /proc's masks are /dev/null bound over host-wide files.
			if strings.HasPrefix(mp, "/proc/") || !strings.Contains(opts, ",rw,") {
				continue
			}
			rw++
			if !strings.Contains(opts, ",nosuid,") || !strings.Contains(opts, ",nodev,") {
				t.Errorf("cmd_dir_writable=%v: %s is writable without nosuid,nodev: %s", writable, mp, f[5])
			}
		}
		// /tmp, /dev/shm, the work dir, /proc (and cmd_dir when writable).
		if want := 4; writable && rw < want+1 || !writable && rw < want {
			t.Errorf("cmd_dir_writable=%v: only %d writable mounts seen:\n%s", writable, rw, out)
		}
	}
}

// TestChrootRunsNoUncheckedInterpreter: in chroot mode /bin/bash means
// cmd_dir/bin/bash, which a task could have planted; the sandbox refuses a
// program outside cmd_dir rather than run whatever is at that place inside
// it, and refuses a writable cmd_dir, which would let a task plant one.
func TestChrootRunsNoUncheckedInterpreter(t *testing.T) {
	r := jailed(t, func(o *sandbox.Options) { o.Chroot = true })
	dir := taskDir(t)
	prog := staticLister(t, dir)
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyExecutable(t, prog, filepath.Join(dir, "bin", "bash")) // the plant
	var out syncBuffer
	p, err := r.Start(sandbox.Spec{
		Path: "/bin/bash", Args: []string{"bash", "/"}, Dir: dir, Name: "chroot-bash",
		Env: []string{"SANDBOX_TEST_HELPER=list"}, Stdout: &out, Stderr: &out,
	})
	if err == nil {
		res := wait(t, p)
		t.Fatalf("the planted %s/bin/bash ran (exit %d): %q", dir, res.ExitCode, out.String())
	}
	if !strings.Contains(err.Error(), "chroot") {
		t.Errorf("refusal %q should explain chroot mode", err)
	}
	_, err = r.Start(sandbox.Spec{Path: prog, Dir: dir, Name: "chroot-rw", Limits: sandbox.Limits{CmdDirWritable: true}})
	if err == nil || !strings.Contains(err.Error(), "cmd_dir_writable") {
		t.Errorf("a writable cmd_dir in chroot mode: %v, want a refusal", err)
	}
}

// TestWorkDirIsCapped: what a task writes to its own work dir is bounded
// (sandbox_work_size), as /tmp is: the attack pass filled 1.9 GB of the
// host's disk in 4 s through a writable directory.
func TestWorkDirIsCapped(t *testing.T) {
	r := jailed(t, func(o *sandbox.Options) { o.WorkBytes = 8 << 20 })
	out, res := run(t, r, taskDir(t), sandbox.Limits{}, `
		head -c 20000000 /dev/zero > "$HOME/big" 2>/dev/null; echo "rc=$?"
		echo "size=$(stat -c %s "$HOME/big")"
		stat -c '%U %a' "$HOME"`)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d: %s", res.ExitCode, out)
	}
	var size int
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "size="); ok {
			size, _ = strconv.Atoi(v)
		}
	}
	if strings.Contains(out, "rc=0\n") || size == 0 || size > 8<<20 || !strings.Contains(out, "nobody 700") {
		t.Errorf("a 20 MB write into an 8 MiB work dir: %d bytes written\n%s", size, out)
	}
}
