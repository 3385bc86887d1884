package etcdtest

import (
	"context"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/taskjob/task-job/test/observe"
)

// Process is a real etcd server (Debian's etcd-server, /usr/bin/etcd) run
// by a test on free ports, with the same short ticks as Start, so that the
// registry and the dispatcher are checked against the etcd operators
// install and not only against the embedded one of the client's version.
type Process struct {
	t            testing.TB
	bin, dir     string
	client, peer url.URL
	cmd          *exec.Cmd
	log          *observe.Buffer
	done         chan struct{}
}

// StartProcess starts etcd in a temporary directory and stops it when the
// test ends (showing its log if the test failed). Without the etcd
// program it skips the test, or fails it in CI (observe.Binary).
func StartProcess(t testing.TB) *Process {
	t.Helper()
	p := &Process{t: t, bin: observe.Binary(t, "etcd", "apt-get install etcd-server"), dir: filepath.Join(t.TempDir(), "etcd"), log: &observe.Buffer{}}
	var err error
	if p.client, err = freeURL(); err == nil {
		p.peer, err = freeURL()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("etcd log:\n%s", p.log.String())
		}
	})
	p.Start()
	return p
}

// Endpoint is the client address, host:port.
func (p *Process) Endpoint() string { return p.client.Host }

// Start starts the server again after Stop, on the same ports and data,
// and waits until it answers.
func (p *Process) Start() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, "--name=test", "--data-dir="+p.dir,
		"--listen-client-urls="+p.client.String(), "--advertise-client-urls="+p.client.String(),
		"--listen-peer-urls="+p.peer.String(), "--initial-advertise-peer-urls="+p.peer.String(),
		"--initial-cluster=test="+p.peer.String(),
		"--heartbeat-interval=10", "--election-timeout=100", "--logger=zap", "--log-level=warn")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("etcdtest: start %s: %v", p.bin, err)
	}
	done := make(chan struct{})
	p.done = done
	cmd := p.cmd
	go func() { _ = cmd.Wait(); close(done) }()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{p.Endpoint()}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		p.t.Fatal(err)
	}
	defer cli.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "ready")
		cancel()
		if err == nil {
			return
		}
		select {
		case <-done:
			p.t.Fatalf("etcdtest: etcd exited: %s", strings.TrimSpace(p.log.String()))
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("etcdtest: etcd not ready after 30 s: %v\n%s", err, p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the server (SIGTERM, SIGKILL after 10 s); its data stays.
func (p *Process) Stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}
