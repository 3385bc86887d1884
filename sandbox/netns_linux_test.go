package sandbox_test

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/sandbox"
)

// TestTasksWithoutNetworkAreApart: two tasks without network run at the
// same time; the first listens on loopback TCP and on an abstract unix
// socket, the second cannot reach either (each task has a network
// namespace of its own). Through the pre-started helpers and through fresh
// ones alike: the pool is drained by running more tasks than it holds.
func TestTasksWithoutNetworkAreApart(t *testing.T) {
	r := jailed(t)
	dir := taskDir(t)
	self := selfCopy(t, dir)
	for round := range 6 {
		var lout, dout syncBuffer
		listener := start(t, r, sandbox.Spec{
			Path: self, Args: []string{"listener", "127.0.0.1:7777", "@task-job-test-peer"}, Dir: dir, Name: "listen",
			Env: []string{"SANDBOX_TEST_HELPER=listen"}, Stdout: &lout, Stderr: &lout,
		})
		eventually(t, 10*time.Second, "the listener to be up", func() bool { return strings.Contains(lout.String(), "listening") })
		dialer := wait(t, start(t, r, sandbox.Spec{
			Path: self, Args: []string{"peer", "127.0.0.1:7777", "@task-job-test-peer"}, Dir: dir, Name: "peer",
			Env: []string{"SANDBOX_TEST_HELPER=peer"}, Stdout: &dout, Stderr: &dout,
		}))
		listener.Stop(0)
		wait(t, listener)
		if dialer.ExitCode != 0 || strings.Contains(dout.String(), "REACHED") {
			t.Errorf("round %d: a task without network reached another's listener: exit %d\n%s", round, dialer.ExitCode, dout.String())
		}
		if strings.Contains(lout.String(), "accepted") {
			t.Errorf("round %d: the listener accepted a connection:\n%s", round, lout.String())
		}
	}
}

func init() {
	// listen listens on TCP os.Args[1] and the abstract unix socket
	// os.Args[2], says so, and reports what it accepts.
	helpers["listen"] = func() {
		tcp, err := net.Listen("tcp", os.Args[1])
		if err != nil {
			fmt.Println("tcp:", err)
			os.Exit(1)
		}
		unix, err := net.Listen("unix", os.Args[2])
		if err != nil {
			fmt.Println("unix:", err)
			os.Exit(1)
		}
		fmt.Println("listening")
		for _, l := range []net.Listener{tcp, unix} {
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					fmt.Println("accepted", l.Addr())
					c.Close()
				}
			}()
		}
		time.Sleep(time.Minute)
	}
	// peer tries to reach both, and says what it reached.
	helpers["peer"] = func() {
		for _, a := range [][2]string{{"tcp", os.Args[1]}, {"unix", os.Args[2]}} {
			c, err := net.DialTimeout(a[0], a[1], time.Second)
			if err == nil {
				fmt.Println("REACHED", a[0], a[1])
				c.Close()
				continue
			}
			fmt.Println("refused:", err)
		}
	}
}
