package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"

	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/ptytest"
	"github.com/taskjob/task-job/test/redisserver"
)

// typist is a task that tries every way it has to type into a terminal
// (TIOCSTI, which this host's dev.tty.legacy_tiocsti=1 allows to a process
// of the terminal's session): /dev/tty, its stdio and the executor's pty,
// named by its argument (only that one: a test must not type into a
// terminal of someone else's on the host if the sandbox failed).
const typist = `#!/usr/bin/python3
import fcntl, os, sys, termios
fds = [0, 1, 2]
try:
    fds.append(os.open("/dev/tty", os.O_RDWR))
    print("open /dev/tty: ok")
except OSError as e:
    print("open /dev/tty:", e.strerror)
for name in sys.argv[1:]:
    try:
        fds.append(os.open(name, os.O_RDWR | os.O_NOCTTY))
        print("open", name, "ok")
    except OSError as e:
        print("open", name, e.strerror)
for fd in fds:
    try:
        for c in b"echo INJECTED-BY-TASK\n":
            fcntl.ioctl(fd, termios.TIOCSTI, bytes([c]))
        print("fd", fd, "TIOCSTI ok")
    except OSError as e:
        print("fd", fd, "TIOCSTI:", e.strerror)
print("session leader:", os.getsid(0) == os.getpid())
`

// TestTaskCannotTypeIntoTheExecutorsTerminal is issue 14's first attack as
// the README's users would meet it: task-job (or task-job dev) started from
// a terminal, here a pty it controls, and a task that pushes a command into
// that terminal's input, which the operator's shell would run as root once
// task-job exits. Nothing may reach the terminal's input queue.
func TestTaskCannotTypeIntoTheExecutorsTerminal(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root: this test must run there")
		}
		t.Skip("the sandbox, which this test is about, needs root (CI runs as root)")
	}
	for _, mode := range []string{"serve", "dev"} {
		t.Run(mode, func(t *testing.T) {
			dir := sandboxDir(t)
			if err := os.WriteFile(filepath.Join(dir, "typist.py"), []byte(typist), 0o755); err != nil {
				t.Fatal(err)
			}
			master, slave := ptytest.Open(t)
			var p *proc
			var rdb *redis.Client
			if mode == "serve" {
				srv := redisserver.Start(t)
				id := uniqueID("tty")
				p = startOnPty(t, master, slave, "-config="+config(t, srv.Addr(), dir, id, map[string]any{"isolation": "on"}))
				t.Cleanup(func() {
					for _, c := range []string{"memory", "cpu", "cpuacct", "pids", "freezer", ""} {
						_ = os.Remove(filepath.Join("/sys/fs/cgroup", c, "task-job-"+id))
					}
				})
				rdb = srv.Client(t)
			} else {
				p = startOnPty(t, master, slave, "dev", "-addr=127.0.0.1:0", "-cmd_dir="+dir)
				p.waitLog(t, "NOTHING is kept", 20*time.Second)
				out := p.output()
				i := strings.Index(out, "-redis_addr ")
				if i < 0 {
					t.Fatalf("no address in the banner:\n%s", out)
				}
				rdb = redis.NewClient(&redis.Options{Addr: strings.Fields(out[i+len("-redis_addr "):])[0]})
				t.Cleanup(func() { rdb.Close() })
			}
			p.waitLog(t, "executor serving", 20*time.Second)

			g := &guarded{p: p, rdb: rdb, seen: map[string][]task.Log{}}
			d := g.run(t, "typist", 20, "typist.py", slave.Name())
			out := joinLines(g.lines("typist", task.MsgStdout))
			t.Logf("the task said:\n%s\nstderr: %s", out, joinLines(g.lines("typist", task.MsgStderr)))
			expectStatus(t, "typist", d, task.Succeeded)
			for _, want := range []string{"open /dev/tty: No such file or directory", "session leader: True"} {
				if !strings.Contains(out, want) {
					t.Errorf("the task's report lacks %q", want)
				}
			}
			if strings.Contains(out, "TIOCSTI ok") || strings.Contains(out, slave.Name()+" ok") {
				t.Errorf("the task reached a terminal:\n%s", out)
			}
			// Whatever the task said, the terminal itself is the judge.
			n, err := unix.IoctlGetInt(int(slave.Fd()), unix.TIOCINQ)
			if err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				buf := make([]byte, n)
				m, _ := slave.Read(buf)
				t.Errorf("%d bytes reached the executor's terminal input: %q", n, buf[:m])
			}
		})
	}
}

// startOnPty starts the binary with args in a session of its own whose
// controlling terminal is the pty, as a shell starts a command; what it
// writes there is its log. It is stopped gracefully at cleanup.
func startOnPty(t *testing.T, master, slave *os.File, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(binary, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = slave, slave, slave
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { // the terminal's screen
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			p.mu.Lock()
			p.log.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("the executor's terminal:\n%s", p.output())
		}
	})
	return p
}
