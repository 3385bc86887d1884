package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is the benchmark's own redis-server: a private process on a
// free loopback port, so that nothing else touches the lists being timed and
// results do not depend on how some shared Redis is configured.
type redisServer struct {
	cmd  *exec.Cmd
	addr string
	dir  string
	done chan struct{} // closed once the process has exited
}

// startRedis launches redis-server without persistence (the figures are about
// task-job, not about fsync) in its own directory under tmp, and waits until
// it answers PING.
func startRedis(tmp string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server is needed to benchmark against a real Redis: %w", err)
	}
	dir := filepath.Join(tmp, "redis")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &redisServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, done: make(chan struct{})}
	s.cmd = exec.Command(bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--protected-mode", "no",
		"--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	// Its own process group keeps a Ctrl-C in the terminal from killing it
	// before the benchmark has reported; the parent-death signal makes sure
	// it never outlives the benchmark, even one killed with SIGKILL.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()

	rdb := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			return nil, fmt.Errorf("redis-server exited at start-up: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("redis-server on %s did not answer PING: %w", s.addr, err)
		}
		time.Sleep(10 * time.Millisecond) // it usually answers within a few of these
	}
}

// stop kills the server by its PID and waits for it.
func (s *redisServer) stop() {
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		fmt.Fprintln(os.Stderr, "bench: kill redis-server:", err)
	}
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		fmt.Fprintln(os.Stderr, "bench: redis-server did not exit after SIGKILL")
	}
}

// version asks the server for its version, for the header.
func (s *redisServer) version(ctx context.Context, rdb *redis.Client) string {
	info, err := rdb.InfoMap(ctx, "server").Result()
	if err != nil {
		return "unknown"
	}
	return info["Server"]["redis_version"]
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before redis-server binds it; start-up then fails loudly.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
