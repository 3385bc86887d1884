//go:build linux

// Command init is PID 1 of the vmtest VM. It moves the initramfs into a
// tmpfs (pivot_root refuses to leave the initramfs), mounts the usual
// filesystems and a pure cgroup2 hierarchy, loads the virtio and 9p modules,
// checks the environment is what the harness promises, runs each test binary
// in turn, writes the results to the host over 9p and on the console, and
// powers the VM off. It ignores its arguments: the kernel passes it the
// command-line words it does not know.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/taskjob/task-job/sandbox/nsinit"

	"github.com/taskjob/task-job/test/vm/internal/proto"
)

// console serializes what the init and the test binaries print, and
// remembers whether the last line is complete so markers start lines.
type console struct {
	mu      sync.Mutex
	f       *os.File
	midLine bool
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(p) > 0 {
		c.midLine = p[len(p)-1] != '\n'
	}
	return c.f.Write(p)
}

// lenient drops write errors so a failing results mount cannot cut the
// console copy short and SIGPIPE the test.
type lenient struct{ w io.Writer }

func (l lenient) Write(p []byte) (int, error) {
	_, _ = l.w.Write(p)
	return len(p), nil
}

func (c *console) printf(format string, a ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.midLine {
		c.f.WriteString("\n")
		c.midLine = false
	}
	fmt.Fprintf(c.f, format+"\n", a...)
}

func (c *console) marker(format string, a ...any) {
	c.printf(proto.Marker+format, a...)
}

var con = &console{f: os.Stdout}

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "vmtest init: not PID 1; this program is only a VM's init")
		os.Exit(2)
	}
	defer powerOff()
	defer func() {
		if r := recover(); r != nil {
			con.printf("vmtest init: panic: %v\n%s", r, debug.Stack())
			con.marker("done")
		}
	}()
	run()
}

func run() {
	if err := switchRoot(); err != nil {
		con.printf("vmtest init: moving the root to a tmpfs: %v (pivot_root will fail)", err)
	}
	if err := mountAll(); err != nil {
		con.printf("vmtest init: %v", err)
		con.marker("env FAIL %v", err)
		con.marker("done")
		return
	}
	_ = unix.Sethostname([]byte("vmtest"))
	if err := nsinit.LoopbackUp(); err != nil {
		con.printf("vmtest init: lo: %v", err)
	}

	var cfg proto.Config
	b, err := os.ReadFile(proto.ConfigPath)
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		con.marker("env FAIL config: %v", err)
		con.marker("done")
		return
	}
	loadModules(cfg.Modules)
	haveOut := mountOut()

	var rep proto.Report
	rep.Env, rep.EnvOK = checkEnv()
	state := "ok"
	if !rep.EnvOK {
		state = "FAIL"
	}
	con.marker("env %s %s", state, rep.Env)
	if rep.EnvOK {
		for i, t := range cfg.Tests {
			con.marker("run %s", t.Pkg)
			res := runTest(cfg, i, t, haveOut)
			rep.Results = append(rep.Results, res)
			con.marker("result %s exit=%d time=%s error=%q", res.Pkg, res.Exit, res.Duration.Round(time.Millisecond), res.Error)
		}
	}
	if haveOut {
		if b, err := json.MarshalIndent(rep, "", "  "); err == nil {
			if err := os.WriteFile(filepath.Join(proto.OutDir, proto.ResultFile), b, 0o644); err != nil {
				con.printf("vmtest init: writing results: %v", err)
			}
		}
		unix.Sync()
		_ = unix.Unmount(proto.OutDir, 0)
	}
	con.marker("done")
}

func powerOff() {
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// Only reached on failure; the harness runs QEMU with -no-reboot, so a
	// restart ends the VM too.
	con.printf("vmtest init: power off: %v", err)
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}

// switchRoot moves every file of the initramfs into a tmpfs and makes that
// the root, as switch_root does: pivot_root(2) fails with EINVAL while the
// root is the initramfs, and the sandbox uses pivot_root.
func switchRoot() error {
	const newRoot = "/newroot"
	if err := os.Mkdir(newRoot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", newRoot, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs: %w", err)
	}
	ents, err := os.ReadDir("/")
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() == "newroot" {
			continue
		}
		if err := move("/"+e.Name(), newRoot+"/"+e.Name()); err != nil {
			return err
		}
	}
	if err := unix.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(newRoot, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move mount: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	return unix.Chdir("/")
}

// move copies src to dst and removes src, so the initramfs does not hold a
// second copy of the test binaries in memory.
func move(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return err
	}
	mode := st.Mode & 0o7777
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := os.Mkdir(dst, os.FileMode(mode)); err != nil {
			return err
		}
		_ = unix.Chmod(dst, mode) // Mkdir applies the umask
		ents, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := move(src+"/"+e.Name(), dst+"/"+e.Name()); err != nil {
				return err
			}
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	case unix.S_IFREG:
		if err := copyFile(src, dst, mode); err != nil {
			return err
		}
	default: // device nodes, fifos
		if err := unix.Mknod(dst, st.Mode, int(st.Rdev)); err != nil {
			return fmt.Errorf("mknod %s: %w", dst, err)
		}
	}
	if err := os.Remove(src); err != nil && !errors.Is(err, syscall.EBUSY) {
		return err
	}
	return nil
}

func copyFile(src, dst string, mode uint32) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, os.FileMode(mode))
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return unix.Chmod(dst, mode) // keeps setuid bits and ignores the umask
}

func mountAll() error {
	type m struct{ src, dst, fstype, data string }
	var flags uintptr = unix.MS_NOSUID | unix.MS_NODEV
	for _, x := range []m{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", "mode=0755"},
		{"devpts", "/dev/pts", "devpts", "ptmxmode=0666,mode=0620"},
		{"tmpfs", "/dev/shm", "tmpfs", "mode=1777"},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777"},
		{"tmpfs", "/run", "tmpfs", "mode=0755"},
		// The options systemd uses on the production hosts.
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", "nsdelegate,memory_recursiveprot"},
	} {
		if err := os.MkdirAll(x.dst, 0o755); err != nil {
			return err
		}
		f := flags
		if x.fstype == "devtmpfs" || x.fstype == "devpts" {
			f = unix.MS_NOSUID
		}
		if err := unix.Mount(x.src, x.dst, x.fstype, f, x.data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", x.fstype, x.dst, err)
		}
	}
	return nil
}

// loadModules loads the modules in dependency order. A module that is built
// in, already loaded or missing from this kernel build is not an error.
func loadModules(paths []string) {
	for _, p := range paths {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			con.printf("vmtest init: module %s: %v", p, err)
			continue
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			con.printf("vmtest init: module %s: %v", filepath.Base(p), err)
		}
	}
}

// mountOut mounts the host's results directory. Without it the run still
// reports through the console markers.
func mountOut() bool {
	if err := os.MkdirAll(proto.OutDir, 0o755); err != nil {
		con.printf("vmtest init: %v", err)
		return false
	}
	if err := unix.Mount(proto.MountTag, proto.OutDir, "9p", unix.MS_NOSUID|unix.MS_NODEV, "trans=virtio,version=9p2000.L,msize=262144"); err != nil {
		con.printf("vmtest init: mount 9p results directory: %v (results go to the console only)", err)
		return false
	}
	return true
}

// checkEnv enables every controller for the root's children and proves the
// VM is a pure cgroup v2 host, as production is.
func checkEnv() (string, bool) {
	var notes, problems []string
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		notes = append(notes, "kernel "+unix.ByteSliceToString(uts.Release[:]))
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &sfs); err != nil || sfs.Type != unix.CGROUP2_SUPER_MAGIC {
		problems = append(problems, fmt.Sprintf("/sys/fs/cgroup is not cgroup2 (magic %#x, %v)", sfs.Type, err))
	} else {
		notes = append(notes, "cgroup2 at /sys/fs/cgroup")
	}
	if mounts, err := os.ReadFile("/proc/self/mounts"); err == nil {
		for _, l := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(l); len(f) > 2 && f[2] == "cgroup" {
				problems = append(problems, "a cgroup v1 hierarchy is mounted: "+l)
			}
		}
	}
	ctrls, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	if err != nil {
		problems = append(problems, err.Error())
	}
	for _, c := range strings.Fields(string(ctrls)) {
		if err := os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+"+c), 0); err != nil {
			notes = append(notes, fmt.Sprintf("cannot enable %s: %v", c, err))
		}
	}
	sub, err := os.ReadFile("/sys/fs/cgroup/cgroup.subtree_control")
	if err != nil {
		problems = append(problems, err.Error())
	}
	have := strings.Fields(string(sub))
	notes = append(notes, "subtree_control: "+strings.Join(have, " "))
	for _, want := range []string{"memory", "cpu", "pids"} {
		if !contains(have, want) {
			problems = append(problems, "controller "+want+" is not enabled in the root's cgroup.subtree_control")
		}
	}
	if self, err := os.ReadFile("/proc/self/cgroup"); err != nil || !bytes.Equal(self, []byte("0::/\n")) {
		problems = append(problems, fmt.Sprintf("/proc/self/cgroup is %q (%v), want 0::/", self, err))
	}
	return strings.Join(append(notes, problems...), "; "), len(problems) == 0
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runTest runs one test binary with its output on the console and in its log
// file. As PID 1 the init inherits every orphan, so it reaps all children
// while it waits, and afterwards kills whatever the tests left behind so each
// package starts on a clean VM.
func runTest(cfg proto.Config, i int, t proto.Test, haveOut bool) proto.Result {
	res := proto.Result{Pkg: t.Pkg, Exit: -1}
	var out io.Writer = con
	if haveOut {
		if f, err := os.Create(filepath.Join(proto.OutDir, t.Log)); err == nil {
			defer f.Close()
			out = io.MultiWriter(con, lenient{f})
		} else {
			con.printf("vmtest init: %v", err)
		}
	}
	sys := &syscall.SysProcAttr{}
	if cfg.Delegate {
		fd, err := delegatedCgroup(i)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		defer unix.Close(fd)
		sys.UseCgroupFD, sys.CgroupFD = true, fd
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer devnull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		res.Error = err.Error()
		return res
	}
	start := time.Now()
	pid, err := syscall.ForkExec(t.Bin, append([]string{t.Bin}, cfg.Args...), &syscall.ProcAttr{
		Dir:   t.Dir,
		Env:   cfg.Env,
		Files: []uintptr{devnull.Fd(), w.Fd(), w.Fd()},
		Sys:   sys,
	})
	w.Close()
	if err != nil {
		r.Close()
		res.Error = err.Error()
		return res
	}
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(out, r)
		r.Close()
		close(copied)
	}()
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			res.Error = "wait: " + err.Error()
			break
		}
		if wpid != pid {
			continue // a reparented orphan
		}
		switch {
		case ws.Exited():
			res.Exit = ws.ExitStatus()
		case ws.Signaled():
			res.Error = "killed by " + ws.Signal().String()
		}
		break
	}
	res.Duration = time.Since(start)
	if n := leftovers(); n > 0 {
		con.printf("vmtest init: killing %d processes the tests of %s left running", n, t.Pkg)
		// kill(-1) as PID 1 signals every process but the init itself.
		_ = unix.Kill(-1, unix.SIGKILL)
	}
	for {
		if _, err := unix.Wait4(-1, nil, 0, nil); errors.Is(err, unix.ECHILD) {
			break
		}
	}
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
		con.printf("vmtest init: the output of %s is still held open", t.Pkg)
	}
	return res
}

// delegatedCgroup makes /sys/fs/cgroup/vmtest.slice/test-N.service with all
// controllers available, as systemd makes a service's cgroup with
// Delegate=yes, and returns its fd for clone3(CLONE_INTO_CGROUP).
func delegatedCgroup(i int) (int, error) {
	parent := "/sys/fs/cgroup/vmtest.slice"
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return -1, err
	}
	ctrls, err := os.ReadFile(parent + "/cgroup.controllers")
	if err != nil {
		return -1, err
	}
	for _, c := range strings.Fields(string(ctrls)) {
		_ = os.WriteFile(parent+"/cgroup.subtree_control", []byte("+"+c), 0)
	}
	dir := fmt.Sprintf("%s/test-%d.service", parent, i)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return -1, err
	}
	return unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// leftovers counts live user processes other than the init: kernel threads
// and zombies have an empty command line.
func leftovers() int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		if e.Name() == "1" || e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && len(b) > 0 {
			n++
		}
	}
	return n
}
