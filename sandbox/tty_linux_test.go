package sandbox_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/taskjob/task-job/sandbox"
	"github.com/taskjob/task-job/test/ptytest"
)

// TestTaskCannotTypeIntoTerminal starts a stand-in executor on a pty, as an
// operator running task-job in a terminal does, and has a task try to push
// input into that terminal (TIOCSTI): through /dev/tty, its stdio and any
// pty it can find. Nothing may arrive in the terminal's input queue, and
// the task must lead a session of its own with no controlling terminal.
func TestTaskCannotTypeIntoTerminal(t *testing.T) {
	for _, mode := range []string{"isolated", "group"} {
		t.Run(mode, func(t *testing.T) {
			dir := taskDir(t)
			prog := selfCopy(t, dir)
			master, slave := ptytest.Open(t)
			report := filepath.Join(t.TempDir(), "report")
			cmd := exec.Command(os.Args[0])
			// The fallback runs tasks as the executor's user, here root, who
			// may open any terminal: it only promises no controlling one.
			cmd.Env = append(os.Environ(), "SANDBOX_TEST_HELPER=ttyhost", "SANDBOX_TEST_MODE="+mode,
				"SANDBOX_TEST_PROG="+prog, "SANDBOX_TEST_DIR="+dir, "SANDBOX_TEST_REPORT="+report,
				"SANDBOX_TEST_CGROUP="+testCgroup()+"-tty", "SANDBOX_TEST_PTY="+slave.Name())
			cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			slave.Close()
			go func() { // keep the terminal's output flowing
				buf := make([]byte, 4096)
				for {
					if _, err := master.Read(buf); err != nil {
						return
					}
				}
			}()
			err := cmd.Wait()
			b, _ := os.ReadFile(report)
			out := string(b)
			t.Logf("stand-in executor: %v\n%s", err, out)
			if err != nil {
				t.Fatalf("the stand-in executor failed: %v", err)
			}
			if !strings.Contains(out, "queued 0 <nil>\n") {
				t.Errorf("the task's input reached the executor's terminal:\n%s", out)
			}
			if strings.Contains(out, "INJECTED") {
				t.Errorf("the executor read the task's input:\n%s", out)
			}
			for _, want := range []string{"open /dev/tty: ", "session leader: true", "controlling tty: 0"} {
				if !strings.Contains(out, want) {
					t.Errorf("the task's report lacks %q", want)
				}
			}
			if strings.Contains(out, "TIOCSTI ok") {
				t.Errorf("a TIOCSTI succeeded:\n%s", out)
			}
		})
	}
}

func init() {
	// ttyhost is the stand-in executor: its stdin is its controlling
	// terminal. It runs one task and reports what reached the terminal.
	helpers["ttyhost"] = func() {
		var rep strings.Builder
		defer func() { os.WriteFile(os.Getenv("SANDBOX_TEST_REPORT"), []byte(rep.String()), 0o644) }()
		opts := runnerOptions(os.Getenv("SANDBOX_TEST_MODE") == "isolated", nil)
		r, err := sandbox.New(opts)
		if err != nil {
			fmt.Fprintln(&rep, "error", err)
			return
		}
		defer r.Close()
		var out syncBuffer
		p, err := r.Start(sandbox.Spec{
			Path: os.Getenv("SANDBOX_TEST_PROG"), Args: []string{"typist"}, Dir: os.Getenv("SANDBOX_TEST_DIR"),
			Name: "typist", Env: []string{"SANDBOX_TEST_HELPER=typist", "SANDBOX_TEST_MODE=" + os.Getenv("SANDBOX_TEST_MODE"), "SANDBOX_TEST_PTY=" + os.Getenv("SANDBOX_TEST_PTY")},
			Stdout: &out, Stderr: &out,
		})
		if err != nil {
			fmt.Fprintln(&rep, "error", err)
			return
		}
		res, err := p.Wait()
		fmt.Fprintf(&rep, "task exit %d %v\n%s", res.ExitCode, err, out.String())
		n, err := unix.IoctlGetInt(0, unix.TIOCINQ)
		fmt.Fprintf(&rep, "queued %d %v\n", n, err)
		if n > 0 {
			buf := make([]byte, n)
			m, _ := os.Stdin.Read(buf)
			fmt.Fprintf(&rep, "read %q\n", buf[:m])
		}
	}
	// typist tries every way it has to type into a terminal.
	helpers["typist"] = func() {
		stat, _ := os.ReadFile("/proc/self/stat")
		// Fields after the command's closing parenthesis: state ppid pgrp
		// session tty_nr ...
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		fmt.Printf("session leader: %v\ncontrolling tty: %s\n", f[3] == fmt.Sprint(os.Getpid()), f[4])
		fds := []int{0, 1, 2}
		if tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0); err != nil {
			fmt.Println("open /dev/tty:", err)
		} else {
			fmt.Println("open /dev/tty: ok")
			fds = append(fds, int(tty.Fd()))
		}
		// Only the stand-in's own pty: a broken sandbox must not let this
		// test type into another terminal on the host.
		var pts []string
		if os.Getenv("SANDBOX_TEST_MODE") == "isolated" {
			pts = []string{os.Getenv("SANDBOX_TEST_PTY")}
		}
		for _, name := range pts {
			if f, err := os.OpenFile(name, os.O_RDWR|syscall.O_NOCTTY, 0); err == nil {
				fmt.Println("open", name, "ok")
				fds = append(fds, int(f.Fd()))
			}
		}
		for _, fd := range fds {
			for _, c := range []byte("INJECTED\n") {
				if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCSTI, uintptr(unsafe.Pointer(&c))); e != 0 {
					fmt.Printf("fd %d TIOCSTI: %v\n", fd, e)
					break
				}
				if c == '\n' {
					fmt.Printf("fd %d TIOCSTI ok\n", fd)
				}
			}
		}
	}
}
