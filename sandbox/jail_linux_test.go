package sandbox_test

import (
	"debug/elf"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/taskjob/task-job/sandbox"
	"github.com/taskjob/task-job/sandbox/nsinit"
)

// The tests in this file show, each with a real process in the sandbox,
// what a task can and cannot do. They need root; CI runs them as root on
// Linux (and inside a cgroup v2 VM), so they never skip there.

// jailed returns a sandbox Runner and fails the test when the sandbox is
// unavailable (newRunner skips only outside CI without root).
func jailed(t *testing.T, edit ...func(*sandbox.Options)) *sandbox.Runner {
	t.Helper()
	opts := runnerOptions(true, testLogger(t))
	for _, e := range edit {
		e(&opts)
	}
	return newRunnerWith(t, opts)
}

// run starts script with sh in dir (cmd_dir) with limits and returns its
// combined output and result.
func run(t *testing.T, r *sandbox.Runner, dir string, lim sandbox.Limits, script string) (string, sandbox.Result) {
	t.Helper()
	var out syncBuffer
	spec := shell(script, &out, &out)
	spec.Dir, spec.Limits, spec.Name = dir, lim, t.Name()
	res := wait(t, start(t, r, spec))
	return out.String(), res
}

func TestJailSeesNoHostProcess(t *testing.T) {
	r := jailed(t)
	out, res := run(t, r, taskDir(t), sandbox.Limits{}, `ls /proc | grep -c '^[0-9]'; cat /proc/1/cmdline | tr '\0' ' '`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if res.ExitCode != 0 || len(lines) != 2 {
		t.Fatalf("exit %d, output %q", res.ExitCode, out)
	}
	// sh, ls and grep: the task's own, nothing of the host's hundreds.
	if n, _ := strconv.Atoi(lines[0]); n < 1 || n > 4 {
		t.Errorf("the task sees %s processes in /proc, want only its own (<= 4)", lines[0])
	}
	if !strings.HasPrefix(lines[1], "sh -c ") {
		t.Errorf("PID 1 is %q, want the task's own sh", lines[1])
	}
}

func TestJailCannotReadOutside(t *testing.T) {
	r := jailed(t)
	// A secret in a host directory the task would see without a mount
	// namespace, readable by anyone.
	secretDir, err := os.MkdirTemp("/var/tmp", "task-job-secret-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(secretDir) })
	os.Chmod(secretDir, 0o755)
	secret := filepath.Join(secretDir, "secret")
	if err := os.WriteFile(secret, []byte("host secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := taskDir(t)
	// Escape attempts: a symlink in cmd_dir pointing out, .., and the
	// /proc links that lead to a process's root and cwd.
	if err := os.Symlink(secret, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		secret, filepath.Join(dir, "link"), dir + "/../../../.." + secret,
		"/proc/self/root" + secret, "/proc/1/root" + secret, "/proc/1/cwd/../../../.." + secret,
		"/etc/shadow", "/root", "/home", "/work", "/var/log", "/sys/fs/cgroup",
	} {
		out, res := run(t, r, dir, sandbox.Limits{}, "cat "+path+" || ls "+path+"/")
		if res.ExitCode == 0 || strings.Contains(out, "host secret") {
			t.Errorf("%s: the task could read it (exit %d): %q", path, res.ExitCode, out)
		}
	}
	// What it needs is there: system programs and its own files.
	os.WriteFile(filepath.Join(dir, "mine"), []byte("mine\n"), 0o644)
	if out, res := run(t, r, dir, sandbox.Limits{}, "cat mine; ls /usr/bin/env"); res.ExitCode != 0 || out != "mine\n/usr/bin/env\n" {
		t.Errorf("reading cmd_dir and /usr: exit %d, %q", res.ExitCode, out)
	}
}

func TestJailCannotWriteOutside(t *testing.T) {
	for _, user := range []string{"", "root"} {
		t.Run("user="+user, func(t *testing.T) {
			r := jailed(t)
			dir := taskDir(t)
			for _, path := range []string{"/usr/evil", "/etc/evil", "/evil", "/dev/evil", "/proc/sys/kernel/hostname", "/var/tmp/evil"} {
				out, res := run(t, r, dir, sandbox.Limits{User: user}, "echo x > "+path)
				if res.ExitCode == 0 {
					t.Errorf("%s: the task could write it: %q", path, out)
				}
				if _, err := os.Stat(path); err == nil && !strings.HasPrefix(path, "/proc") {
					t.Errorf("%s exists on the host", path)
				}
			}
			name := "private-" + strconv.Itoa(os.Getpid())
			out, res := run(t, r, dir, sandbox.Limits{User: user}, "echo x > /tmp/"+name+" && cat /tmp/"+name+
				` && echo y > "$TASK_WORKDIR/out" && cat "$HOME/out" && { echo z > out; } 2>/dev/null || echo cmd_dir read-only`)
			if res.ExitCode != 0 || out != "x\ny\ncmd_dir read-only\n" {
				t.Fatalf("writing /tmp, the work dir and cmd_dir: exit %d, %q", res.ExitCode, out)
			}
			if _, err := os.Stat("/tmp/" + name); err == nil {
				os.Remove("/tmp/" + name)
				t.Errorf("the task's /tmp is the host's: /tmp/%s appeared", name)
			}
			if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
				t.Errorf("the task wrote cmd_dir/out, which should be read-only to it")
			}
			// A rule may ask for a writable cmd_dir.
			out, res = run(t, r, dir, sandbox.Limits{User: user, CmdDirWritable: true}, "echo y > out && id -u >> out")
			if b, _ := os.ReadFile(filepath.Join(dir, "out")); res.ExitCode != 0 || !strings.HasPrefix(string(b), "y\n") {
				t.Errorf("with CmdDirWritable: exit %d, %q; cmd_dir/out = %q, want the task's write", res.ExitCode, out, b)
			}
			if !res.Limits.CmdDirWritable {
				t.Errorf("Result.Limits.CmdDirWritable = false for a task that could write cmd_dir")
			}
		})
	}
}

func TestJailNetwork(t *testing.T) {
	r := jailed(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	accepted := 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted++
			mu.Unlock()
			c.Close()
		}
	}()
	dir := taskDir(t)
	dialer := selfCopy(t, dir)
	dial := func(lim sandbox.Limits) (string, sandbox.Result) {
		var out syncBuffer
		res := wait(t, start(t, r, sandbox.Spec{
			Path: dialer, Args: []string{"dialer", ln.Addr().String()}, Dir: dir, Limits: lim, Name: "dial",
			Env: []string{"SANDBOX_TEST_HELPER=dial"}, Stdout: &out, Stderr: &out,
		}))
		return out.String(), res
	}

	out, res := dial(sandbox.Limits{})
	if res.ExitCode == 0 || strings.Contains(out, "connected") {
		t.Errorf("without network the task reached the host's loopback: exit %d, %q", res.ExitCode, out)
	}
	if got := strings.Fields(strings.SplitN(out, "\n", 2)[0]); strings.Join(got, " ") != "interfaces: lo" {
		t.Errorf("%q, want only a loopback interface", out)
	}
	out, res = dial(sandbox.Limits{Network: true})
	if res.ExitCode != 0 || !strings.Contains(out, "connected") {
		t.Errorf("with network allowed the task could not connect: exit %d, %q", res.ExitCode, out)
	}
	mu.Lock()
	defer mu.Unlock()
	if accepted != 1 {
		t.Errorf("the host accepted %d connections, want exactly the allowed task's", accepted)
	}
}

func init() {
	// dial lists the network interfaces it sees, then connects to
	// os.Args[1].
	helpers["dial"] = func() {
		ifaces, _ := net.Interfaces()
		fmt.Print("interfaces:")
		for _, i := range ifaces {
			fmt.Print(" ", i.Name)
		}
		fmt.Println()
		c, err := net.DialTimeout("tcp", os.Args[1], 2*time.Second)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		c.Close()
		fmt.Println("connected")
	}
}

// selfCopy copies this test binary into dir, where a sandboxed task can run
// it (its shared libraries, if any, are under the read-only /usr).
func selfCopy(t *testing.T, dir string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "self")
	copyExecutable(t, self, dst)
	return dst
}

// copyExecutable copies src to dst with cp(1), not os.WriteFile: a
// descriptor this process opens for writing is inherited by every child it
// forks meanwhile (the helper pool refills in the background) until that
// child execs, and an exec of dst while any such copy is open fails with
// "text file busy". cp's descriptor lives in cp alone.
func copyExecutable(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp %s %s: %v %s", src, dst, err, out)
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestJailCredentials(t *testing.T) {
	r := jailed(t)
	status := `id -u; id -g; id -G; grep -E '^(NoNewPrivs|CapEff|CapBnd)' /proc/self/status | tr -s '\t' ' '`
	out, res := run(t, r, taskDir(t), sandbox.Limits{}, status)
	want := "65534\n65534\n65534\nCapEff: 0000000000000000\nCapBnd: 0000000000000000\nNoNewPrivs: 1\n"
	if res.ExitCode != 0 || out != want {
		t.Errorf("as the default user: exit %d\n%s\nwant\n%s", res.ExitCode, out, want)
	}
	if res.Limits.User != "nobody" {
		t.Errorf("Result.Limits.User = %q, want nobody", res.Limits.User)
	}
	out, res = run(t, r, taskDir(t), sandbox.Limits{User: "nobody", Group: "12345"}, "id -u; id -g; id -G")
	if res.ExitCode != 0 || out != "65534\n12345\n12345\n" {
		t.Errorf("with a group: exit %d, %q", res.ExitCode, out)
	}

	// Root, when asked for, is a root without the capabilities that reach
	// the host: no mounts, no raw sockets, no device nodes, no modules.
	out, res = run(t, r, taskDir(t), sandbox.Limits{User: "root"},
		`id -u; grep NoNewPrivs /proc/self/status; mount -t tmpfs x /tmp 2>&1 && echo MOUNTED; mknod /tmp/d c 1 1 2>&1 && echo MKNOD; grep CapBnd /proc/self/status`)
	if res.ExitCode != 0 || strings.Contains(out, "MOUNTED") || strings.Contains(out, "MKNOD") || !strings.HasPrefix(out, "0\n") {
		t.Errorf("as root: exit %d, %q", res.ExitCode, out)
	}
	var bnd uint64
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			bnd, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	const sysAdmin, sysModule, netRaw, mknod = 21, 16, 13, 27
	for _, c := range []int{sysAdmin, sysModule, netRaw, mknod} {
		if bnd&(1<<c) != 0 || bnd == 0 {
			t.Errorf("root's bounding set %x holds capability %d (or nothing at all)", bnd, c)
		}
	}
}

func TestJailRlimits(t *testing.T) {
	r := jailed(t, func(o *sandbox.Options) { o.Rlimits = sandbox.Rlimits{FileBytes: 1 << 20, OpenFiles: 64} })
	out, res := run(t, r, taskDir(t), sandbox.Limits{}, `cd "$TMPDIR"; ulimit -n; ulimit -c; head -c 2000000 /dev/zero > big; echo status $?; wc -c < big`)
	// SIGXFSZ (status 128+25) stops the write at the limit.
	if want := "64\n0\nFile size limit exceeded\nstatus 153\n1048576\n"; res.ExitCode != 0 || out != want {
		t.Errorf("exit %d, output %q, want %q: nofile 64, core 0, a write stopped at 1 MiB", res.ExitCode, out, want)
	}
}

func TestJailMemoryLimit(t *testing.T) {
	r := jailed(t)
	if !strings.Contains(r.Describe(), "cgroup") || strings.Contains(r.Describe(), "NOT ENFORCED") {
		t.Fatalf("no cgroups: %s", r.Describe())
	}
	// tail must hold the whole 256 MiB "line" in memory.
	out, res := run(t, r, taskDir(t), sandbox.Limits{MemoryBytes: 32 << 20}, `head -c 268435456 /dev/zero | tail -n 1 >/dev/null; echo survived $?`)
	if !res.OOMKilled {
		t.Errorf("OOMKilled = false; exit %d, output %q", res.ExitCode, out)
	}
	if res.MaxRSS > 40<<20 {
		t.Errorf("peak memory %d bytes, over the 32 MiB limit", res.MaxRSS)
	}
	if res.Limits.MemoryBytes != 32<<20 {
		t.Errorf("Result.Limits.MemoryBytes = %d", res.Limits.MemoryBytes)
	}
}

func TestJailForkBombIsHeld(t *testing.T) {
	r := jailed(t)
	var out syncBuffer
	spec := shell(`bomb() { bomb | bomb & }; bomb; sleep 1000`, &out, &out)
	spec.Dir, spec.Limits, spec.Name = taskDir(t), sandbox.Limits{Pids: 32}, "bomb"
	p := start(t, r, spec)
	time.Sleep(time.Second)
	// The host, and other tasks, are unaffected.
	for i := 0; i < 5; i++ {
		o, res := run(t, r, taskDir(t), sandbox.Limits{}, "echo fine")
		if res.ExitCode != 0 || o != "fine\n" {
			t.Fatalf("another task during the bomb: exit %d, %q", res.ExitCode, o)
		}
	}
	p.Stop(0)
	res := wait(t, p)
	// Either the kill ended it or its own shell gave up for want of a fork;
	// either way the limit held it, and Wait returned only once every
	// process of it was gone.
	if !strings.Contains(strings.ToLower(out.String()), "fork") {
		t.Errorf("the bomb never hit the pids limit (exit %d, signal %q): %.300s", res.ExitCode, res.Signal, out.String())
	}
}

func TestJailCPUQuota(t *testing.T) {
	r := jailed(t)
	spec := shell(`while :; do :; done`, nil, nil)
	spec.Dir, spec.Limits, spec.Name = taskDir(t), sandbox.Limits{CPUCores: 0.2}, "cpu-hog"
	begin := time.Now()
	p := start(t, r, spec)
	time.Sleep(2 * time.Second)
	p.Stop(0)
	res := wait(t, p)
	wall := time.Since(begin)
	share := res.CPU.Seconds() / wall.Seconds()
	t.Logf("CPU %v over %v wall: %.2f of a core (quota 0.2)", res.CPU, wall, share)
	// The quota is a ceiling; on a busy machine the hog may get less.
	if share < 0.02 || share > 0.3 {
		t.Errorf("the busy loop used %.2f of a core, want at most about 0.2 (and more than nothing)", share)
	}
}

func TestJailChroot(t *testing.T) {
	r := jailed(t, func(o *sandbox.Options) { o.Chroot = true })
	dir := taskDir(t)
	prog := staticLister(t, dir)
	os.WriteFile(filepath.Join(dir, "visible"), nil, 0o644)
	var out syncBuffer
	res := wait(t, start(t, r, sandbox.Spec{
		Path: prog, Args: []string{"lister", "/"}, Dir: dir, Name: "chroot",
		Env: []string{"SANDBOX_TEST_HELPER=list"}, Stdout: &out, Stderr: &out,
	}))
	got := strings.Fields(out.String())
	// .task-work: the mount point of the task's own directory.
	want := []string{".task-work", filepath.Base(prog), "visible"}
	if res.ExitCode != 0 || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("exit %d: / holds %q, want only cmd_dir's %q", res.ExitCode, got, want)
	}
}

func init() {
	helpers["list"] = func() {
		ents, err := os.ReadDir(os.Args[1])
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		for _, e := range ents {
			fmt.Println(e.Name())
		}
	}
}

// staticLister puts a statically linked copy of this test binary in dir
// (one that runs with nothing else around it, as chroot mode needs), built
// with the Go toolchain when this binary is not static.
func staticLister(t *testing.T, dir string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "lister")
	if f, err := elf.Open(self); err == nil {
		static := true
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				static = false
			}
		}
		f.Close()
		if static {
			copyExecutable(t, self, dst)
			return dst
		}
	}
	cmd := exec.Command("go", "test", "-c", "-o", dst, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building a static test binary: %v\n%s", err, out)
	}
	return dst
}

// TestJailLeavesNothing: after many tasks, no cgroup and no mount is left.
func TestJailLeavesNothing(t *testing.T) {
	fdsBefore := openFds(t)
	r := jailed(t)
	mountsBefore := countLines(t, "/proc/self/mountinfo")
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 4)
	dir := taskDir(t)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			p, err := r.Start(sandbox.Spec{Path: "/bin/true", Dir: dir, Name: "many-" + strconv.Itoa(i)})
			if err != nil {
				errs <- err
				return
			}
			if res, err := p.Wait(); err != nil || res.ExitCode != 0 {
				errs <- fmt.Errorf("task %d: exit %d, %v", i, res.ExitCode, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Groups are removed off the task's path; Close waits for that.
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if after := countLines(t, "/proc/self/mountinfo"); after != mountsBefore {
		t.Errorf("host mounts: %d before, %d after %d tasks", mountsBefore, after, n)
	}
	if left := cgroupsOf(t, testCgroup()); len(left) > 0 {
		t.Errorf("%d task cgroups left after %d tasks, e.g. %s", len(left), n, left[0])
	}
	// No process: the pre-started helpers not taken are gone with Close.
	if kids := childrenOf(t, os.Getpid()); len(kids) > 0 {
		t.Errorf("processes of ours left after %d tasks and Close: %v", n, kids)
	}
	// Nor an fd of ours: sockets of pre-started helpers, held namespaces,
	// cgroup fds, pipes.
	if after := openFds(t); after > fdsBefore {
		t.Errorf("%d fds open before the runner, %d after %d tasks and Close", fdsBefore, after, n)
	}
}

func openFds(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func countLines(t *testing.T, path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// TestJailSeccomp: the calls that would reach the kernel's least-hardened
// corners or undo the sandbox fail with EPERM, for root tasks too; threads
// and processes are still made as usual.
func TestJailSeccomp(t *testing.T) {
	if !nsinit.SeccompFilter {
		t.Skipf("no seccomp filter on %s", runtime.GOARCH)
	}
	r := jailed(t)
	dir := taskDir(t)
	prog := selfCopy(t, dir)
	for _, user := range []string{"", "root"} {
		var out syncBuffer
		res := wait(t, start(t, r, sandbox.Spec{
			Path: prog, Args: []string{"syscalls"}, Dir: dir, Name: "seccomp", Limits: sandbox.Limits{User: user},
			Env: []string{"SANDBOX_TEST_HELPER=syscalls"}, Stdout: &out, Stderr: &out,
		}))
		want := "unshare(user) operation not permitted\nunshare(mount) operation not permitted\n" +
			"clone(newuser) operation not permitted\nkeyctl operation not permitted\nbpf operation not permitted\n" +
			"ioctl(TIOCSTI) operation not permitted\nioctl(TIOCLINUX) operation not permitted\n" +
			"io_uring_setup function not implemented\nsocket(AF_VSOCK) operation not permitted\n" +
			"socket(AF_ALG) operation not permitted\nsocket(AF_INET) ok\npersonality(PER_LINUX32) operation not permitted\n" +
			"personality(query) ok\n" + archSyscallsWant +
			"chmod(04755) operation not permitted\nchmod(02755) operation not permitted\nchmod(0755) ok\n" +
			"openat(O_CREAT, 04755) operation not permitted\nmknod(S_IFREG|04755) operation not permitted\n" +
			"fork ok\n"
		if res.ExitCode != 0 || out.String() != want {
			t.Errorf("user %q: exit %d\n%s\nwant\n%s", user, res.ExitCode, out.String(), want)
		}
	}
}

func init() {
	helpers["syscalls"] = func() {
		report := func(what string, err error) {
			if err == nil {
				fmt.Println(what, "ALLOWED")
				return
			}
			fmt.Println(what, err)
		}
		runtime.LockOSThread()
		report("unshare(user)", unix.Unshare(unix.CLONE_NEWUSER))
		report("unshare(mount)", unix.Unshare(unix.CLONE_NEWNS))
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
		err := cmd.Run()
		var errno syscall.Errno
		if errors.As(err, &errno) {
			err = errno
		}
		report("clone(newuser)", err)
		_, err = unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_SESSION_KEYRING, 0, 0, 0)
		report("keyctl", err)
		_, _, e := unix.Syscall(unix.SYS_BPF, 0, 0, 0)
		report("bpf", e)
		// stdin is /dev/null: without the filter these fail with ENOTTY.
		c := byte('x')
		report("ioctl(TIOCSTI)", errnoOf(unix.Syscall(unix.SYS_IOCTL, 0, unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))))
		report("ioctl(TIOCLINUX)", errnoOf(unix.Syscall(unix.SYS_IOCTL, 0, unix.TIOCLINUX, uintptr(unsafe.Pointer(&c)))))
		var params [120]byte // struct io_uring_params, zeroed
		fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params)), 0)
		if e == 0 {
			unix.Close(int(fd))
		}
		report("io_uring_setup", errnoOf(fd, 0, e))
		for _, s := range []struct {
			name      string
			family, t int
		}{{"AF_VSOCK", unix.AF_VSOCK, unix.SOCK_STREAM}, {"AF_ALG", unix.AF_ALG, unix.SOCK_SEQPACKET}, {"AF_INET", unix.AF_INET, unix.SOCK_DGRAM}} {
			fd, err := unix.Socket(s.family, s.t|unix.SOCK_CLOEXEC, 0)
			if err == nil {
				unix.Close(fd)
				fmt.Println("socket(" + s.name + ") ok")
				continue
			}
			report("socket("+s.name+")", err)
		}
		okOr := func(what string, err error) {
			if err == nil {
				fmt.Println(what, "ok")
				return
			}
			report(what, err)
		}
		_, _, e = unix.Syscall(unix.SYS_PERSONALITY, 8, 0, 0) // PER_LINUX32
		if e == 0 {
			unix.Syscall(unix.SYS_PERSONALITY, 0, 0, 0)
			fmt.Println("personality(PER_LINUX32) ALLOWED")
		} else {
			report("personality(PER_LINUX32)", e)
		}
		_, _, e = unix.Syscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0)
		okOr("personality(query)", errnoOrNil(e))
		archSyscalls(report)
		f := filepath.Join(os.TempDir(), "setid")
		os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755)
		report("chmod(04755)", unix.Chmod(f, 0o4755))
		report("chmod(02755)", unix.Chmod(f, 0o2755))
		okOr("chmod(0755)", unix.Chmod(f, 0o755))
		fd2, err := unix.Open(f+"2", unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o4755)
		if err == nil {
			unix.Close(fd2)
		}
		report("openat(O_CREAT, 04755)", err)
		report("mknod(S_IFREG|04755)", unix.Mknod(f+"3", unix.S_IFREG|0o4755, 0))
		if err := exec.Command("/bin/true").Run(); err != nil {
			fmt.Println("fork", err)
		} else {
			fmt.Println("fork ok")
		}
	}
}

// errnoOf turns a raw system call's results into an error, nil on success.
func errnoOf(_, _ uintptr, e syscall.Errno) error { return errnoOrNil(e) }

func errnoOrNil(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}
