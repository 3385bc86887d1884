package redisserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStartAnswersPing(t *testing.T) {
	t.Parallel()
	s := Start(t)
	if !s.Running() {
		t.Fatal("Running() = false right after Start")
	}
	if want := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port())); s.Addr() != want {
		t.Errorf("Addr() = %q, want %q", s.Addr(), want)
	}
	if got, err := s.Client(t).Ping(context.Background()).Result(); err != nil || got != "PONG" {
		t.Fatalf("PING = %q, %v; want PONG", got, err)
	}
}

func TestStartsAreIsolated(t *testing.T) {
	t.Parallel()
	a, b := Start(t), Start(t)
	if a.Port() == b.Port() || a.Dir() == b.Dir() {
		t.Fatalf("two servers share a port or dir: %s %s, %s %s", a.Addr(), a.Dir(), b.Addr(), b.Dir())
	}
	ctx := context.Background()
	if err := a.Client(t).Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Client(t).Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("key written to one server exists on the other: %d, %v", n, err)
	}
}

func TestStartPassesArgs(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{Args: []string{"--maxmemory", "12345678"}})
	got, err := s.Client(t).ConfigGet(context.Background(), "maxmemory").Result()
	if err != nil {
		t.Fatal(err)
	}
	if got["maxmemory"] != "12345678" {
		t.Fatalf("maxmemory = %q, want 12345678", got["maxmemory"])
	}
}

func TestKillRestart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		persist bool
		want    int64 // list length after the crash
	}{
		{name: "persist keeps the list", persist: true, want: 3},
		{name: "no persistence starts empty", persist: false, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, Options{Persist: tt.persist})
			c := s.Client(t)
			ctx := context.Background()
			if err := c.RPush(ctx, "tasks", "a", "b", "c").Err(); err != nil {
				t.Fatal(err)
			}
			port := s.Port()

			s.Kill(t)
			if s.Running() {
				t.Fatal("Running() = true after Kill")
			}
			s.Restart(t)

			if !s.Running() || s.Port() != port {
				t.Fatalf("after Restart: running %v on port %d, want running on %d", s.Running(), s.Port(), port)
			}
			n, err := c.LLen(ctx, "tasks").Result()
			if err != nil {
				t.Fatal(err)
			}
			if n != tt.want {
				t.Fatalf("LLEN tasks after kill and restart = %d, want %d", n, tt.want)
			}
		})
	}
}

func TestStopRefusesConnections(t *testing.T) {
	t.Parallel()
	s := Start(t)
	s.Stop(t)
	if s.Running() {
		t.Fatal("Running() = true after Stop")
	}
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err == nil {
		conn.Close()
		t.Fatalf("dial %s succeeded after Stop", s.Addr())
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s after Stop: %v, want connection refused", s.Addr(), err)
	}
	s.Stop(t) // stopping twice is harmless
}

func TestRestartRunningServer(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{Persist: true})
	c := s.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Restart(t)
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET k after Restart = %q, %v; want v", got, err)
	}
}

// TestStartFailureShowsLog runs Start against a bad argument in a subtest
// that is expected to fail, and checks the failure carries redis-server's
// own complaint.
func TestStartFailureShowsLog(t *testing.T) {
	t.Parallel()
	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(ft, Options{Args: []string{"--no-such-option", "1"}})
	}()
	<-done
	if !ft.failed {
		t.Fatal("Start with a bad option did not fail")
	}
	if !strings.Contains(ft.msg, "no-such-option") {
		t.Fatalf("failure does not show redis-server's output:\n%s", ft.msg)
	}
}

// TestMissingBinary checks that a machine without redis-server skips the
// test with install advice, while CI fails it.
func TestMissingBinary(t *testing.T) {
	tests := []struct {
		name     string
		ci       string
		wantSkip bool
	}{
		{name: "developer machine skips", ci: "", wantSkip: true},
		{name: "CI fails", ci: "true", wantSkip: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", t.TempDir())
			t.Setenv("CI", tt.ci)
			rec := &fatalRecorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				Start(rec)
			}()
			<-done
			if rec.skipped != tt.wantSkip || rec.failed == tt.wantSkip {
				t.Fatalf("skipped %v, failed %v; want skipped %v", rec.skipped, rec.failed, tt.wantSkip)
			}
			for _, want := range []string{"install", "CI"} {
				if !strings.Contains(rec.msg, want) {
					t.Errorf("message does not mention %q: %s", want, rec.msg)
				}
			}
		})
	}
}

// fatalRecorder is a testing.TB whose Fatal and Skip record the message
// and end the calling goroutine, so a test can check how a helper gives up.
type fatalRecorder struct {
	testing.TB
	failed, skipped bool
	msg             string
}

func (r *fatalRecorder) Skipf(format string, args ...any) {
	r.skipped = true
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.failed = true
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *fatalRecorder) Fatal(args ...any) {
	r.failed = true
	r.msg = fmt.Sprint(args...)
	runtime.Goexit()
}
