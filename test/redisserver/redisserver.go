// Package redisserver runs real redis-server and redis-sentinel processes for
// tests.
//
// Tests across task-job talk to a real Redis rather than a fake so that
// blocking commands, persistence and failover behave exactly as in
// production. Each server gets its own free loopback port and its own
// t.TempDir(), so tests can run in parallel, and is stopped by t.Cleanup.
// Servers can be stopped, killed and restarted to test outages.
package redisserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/test/observe"
)

const (
	// startTimeout bounds how long a fresh process may take to answer PING.
	// Loading a large append-only file after a crash is the slow case.
	startTimeout = 10 * time.Second
	// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
	stopGrace = 5 * time.Second
	// killWait bounds the wait for exit after SIGKILL, which the kernel
	// delivers promptly; hitting it means something is badly wrong.
	killWait = 10 * time.Second
	// pollInterval is how often readiness and state are re-checked.
	pollInterval = 10 * time.Millisecond
	// portAttempts is how many free ports are tried: another process may
	// take the port between our probe closing it and redis binding it.
	portAttempts = 5
)

// Options tunes a server started by Start.
type Options struct {
	// Persist turns on the append-only file with an fsync per write, so
	// that Kill and Restart keep every acknowledged write. Without it the
	// server persists nothing and restarts empty.
	Persist bool
	// Args are extra redis-server arguments, such as "--maxmemory", "1mb".
	Args []string
}

// Server is one redis-server (or redis-sentinel) process owned by a test.
// Its methods are safe for concurrent use.
type Server struct {
	bin     string   // path of the executable
	dir     string   // working dir, data and logs
	logFile string   // the server's own log, kept across restarts
	args    []string // everything but the port, which is appended per start

	mu   sync.Mutex
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd has exited; exitErr is set first
	// exitErr is the result of cmd.Wait, valid after done is closed.
	exitErr error
}

// Start launches redis-server on a free loopback port with its own
// t.TempDir() as working directory, waits until it answers PING, and
// registers t.Cleanup to stop it.
//
// When redis-server cannot start, the test fails with the server's own log
// output. When redis-server is not installed the test is skipped, except in
// CI (env CI set), where a missing server must not silently pass.
// Several Options are merged: Persist if any asks for it, Args concatenated.
func Start(t testing.TB, opts ...Options) *Server {
	t.Helper()
	var o Options
	for _, op := range opts {
		o.Persist = o.Persist || op.Persist
		o.Args = append(o.Args, op.Args...)
	}
	dir := t.TempDir()
	logFile := filepath.Join(dir, "redis.log")
	args := []string{
		"--bind", "127.0.0.1",
		"--protected-mode", "no",
		"--dir", dir,
		"--logfile", logFile,
	}
	if o.Persist {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--save", "", "--appendonly", "no")
	}
	args = append(args, o.Args...)
	return startServer(t, lookBinary(t, "redis-server"), dir, logFile, args)
}

// startServer registers the cleanup that stops the process and then
// launches it on a new free port.
func startServer(t testing.TB, bin, dir, logFile string, args []string) *Server {
	t.Helper()
	s := &Server{bin: bin, dir: dir, logFile: logFile, args: args}
	t.Cleanup(func() {
		if err := s.signalAndWait(syscall.SIGTERM, stopGrace); err != nil {
			t.Errorf("redisserver: stop %s at cleanup: %v", s.Addr(), err)
		}
	})
	s.launch(t, true)
	return s
}

// lookBinary finds a Redis program in PATH (see observe.Binary).
func lookBinary(t testing.TB, name string) string {
	t.Helper()
	return observe.Binary(t, name, "apt-get install redis-server redis-sentinel")
}

// Addr returns the server's address, "127.0.0.1:port".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port()))
}

// Port returns the server's TCP port, which stays the same across Restart.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// Dir returns the server's working directory, which holds its data and log.
func (s *Server) Dir() string { return s.dir }

// Client returns a go-redis client for the server, closed at t's cleanup.
// The client reconnects by itself after a Restart.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Running reports whether the server process is alive.
func (s *Server) Running() bool {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Stop shuts the server down cleanly: SIGTERM, then SIGKILL if it has not
// exited within 5 s. It returns once the process has exited. Stopping a
// stopped server does nothing.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.signalAndWait(syscall.SIGTERM, stopGrace); err != nil {
		t.Fatalf("redisserver: stop %s: %v", s.Addr(), err)
	}
}

// Kill crashes the server with SIGKILL, as a power cut or OOM kill would,
// and returns once the process has exited. Killing a stopped server does
// nothing.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if err := s.signalAndWait(syscall.SIGKILL, killWait); err != nil {
		t.Fatalf("redisserver: kill %s: %v", s.Addr(), err)
	}
}

// Restart starts the server again on the same port with the same
// directory, stopping it first if it is still running, and waits until it
// answers PING. Data written before survives only with Options.Persist.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	s.launch(t, false)
}

// signalAndWait sends sig and waits up to grace for the process to exit,
// escalating to SIGKILL if it has not.
func (s *Server) signalAndWait(sig syscall.Signal, grace time.Duration) error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("send %v: %w", sig, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(grace):
	}
	if sig == syscall.SIGKILL {
		return fmt.Errorf("pid %d still running %v after SIGKILL", cmd.Process.Pid, grace)
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGKILL after %v grace: %w", grace, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("pid %d still running %v after SIGKILL", cmd.Process.Pid, killWait)
	}
}

// launch starts the process and waits for PING, failing t with the
// server's log if it does not come up. With newPort it picks a free port
// (again on "Address already in use"); otherwise it keeps the current one.
func (s *Server) launch(t testing.TB, newPort bool) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		if newPort {
			port, err := freePort()
			if err != nil {
				t.Fatalf("redisserver: %v", err)
			}
			s.mu.Lock()
			s.port = port
			s.mu.Unlock()
		}
		logStart := fileSize(s.logFile)
		err := s.spawn()
		if err == nil {
			err = s.waitReady(startTimeout)
		}
		if err == nil {
			break
		}
		// Reap a half-started process before retrying or reporting.
		_ = s.signalAndWait(syscall.SIGKILL, killWait)
		logs := s.logsSince(logStart)
		if attempt < portAttempts && strings.Contains(logs, "Address already in use") {
			continue
		}
		t.Fatalf("redisserver: %s on %s did not start: %v\n--- %s output ---\n%s",
			filepath.Base(s.bin), s.Addr(), err, filepath.Base(s.bin), logs)
	}
}

// spawn starts the process. Its stdout and stderr go to a file rather
// than a pipe: a pipe would keep Wait blocked while a forked persistence
// child of a killed server still holds it.
func (s *Server) spawn() error {
	out, err := os.Create(s.stdoutFile())
	if err != nil {
		return fmt.Errorf("create output file: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(s.bin, append(s.args, "--port", strconv.Itoa(s.Port()))...)
	cmd.Dir = s.dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.exitErr = err
		s.mu.Unlock()
		close(done)
	}()
	return nil
}

// waitReady polls PING until the server answers PONG, exits, or the
// timeout passes.
func (s *Server) waitReady(timeout time.Duration) error {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	addr := s.Addr()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last error
	for {
		if last = ping(addr); last == nil {
			return nil
		}
		select {
		case <-done:
			s.mu.Lock()
			err := s.exitErr
			s.mu.Unlock()
			return fmt.Errorf("process exited before answering PING: %w", err)
		case <-deadline.C:
			return fmt.Errorf("no PONG within %v: %w", timeout, last)
		case <-tick.C:
		}
	}
}

// stdoutFile holds what the process printed outside its log file, such
// as configuration errors reported before the log is opened.
func (s *Server) stdoutFile() string { return filepath.Join(s.dir, "stdout.log") }

// logsSince returns the process output and the log written since offset
// logStart, for failure messages.
func (s *Server) logsSince(logStart int64) string {
	var b strings.Builder
	if out, err := os.ReadFile(s.stdoutFile()); err == nil {
		b.Write(out)
	}
	if f, err := os.Open(s.logFile); err == nil {
		defer f.Close()
		if _, err := f.Seek(logStart, 0); err == nil {
			_, _ = bufio.NewReader(f).WriteTo(&b)
		}
	}
	return b.String()
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// freePort asks the kernel for a free loopback port. The port is released
// before redis binds it, so callers retry when it is taken in between.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("release probe port %d: %w", port, err)
	}
	return port, nil
}

// ping sends one inline PING and expects +PONG. It speaks the protocol
// directly so that polling a starting server does not make a client log a
// dial error per attempt; a server still loading its data answers
// -LOADING, which counts as not ready.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return fmt.Errorf("write PING: %w", err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read PING reply: %w", err)
	}
	if reply := strings.TrimSpace(line); reply != "+PONG" {
		return fmt.Errorf("PING answered %q", reply)
	}
	return nil
}

// poll calls cond every pollInterval until it returns nil or timeout
// passes, and then returns cond's last error.
func poll(ctx context.Context, timeout time.Duration, cond func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		err := cond(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %v: %w", timeout, err)
		case <-tick.C:
		}
	}
}
