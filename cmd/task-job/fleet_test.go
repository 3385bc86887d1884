package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/registry"
	"github.com/taskjob/task-job/registry/etcdreg"
	"github.com/taskjob/task-job/registry/etcdreg/etcdtest"
	"github.com/taskjob/task-job/test/observe"
	"github.com/taskjob/task-job/test/redisserver"
)

// submit -tube pushes to the tube's list; status says that a tube no live
// executor serves is why a task waits.
func TestSubmitToTubeAndStatusSaysWhyItWaits(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	names := redisqueue.Names{Tasks: "fq", Control: "fq_control", Logs: "fq_logs"}
	id := fmt.Sprintf("fleet-%d", os.Getpid())
	ex := redisqueue.New(redis.NewClient(&redis.Options{Addr: srv.Addr()}),
		redisqueue.Options{Names: names, ExecutorID: id, TTL: 5 * time.Second, Tubes: []string{"build"}})
	defer ex.Close()
	if err := ex.Join(ctx); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	ex.Take(tctx) // announces that it serves build
	cancel()

	a := "-redis_addr=" + srv.Addr()
	for _, tc := range []struct{ id, tube, want string }{
		{"t-gpu", "gpu", `waits in tube "gpu" (list fq:tube:gpu), 0 tasks ahead of it; 1 of 1 executors alive: no live executor serves tube "gpu"`},
		{"t-plain", "", `waits in the untubed list fq, 0 tasks ahead of it; 1 of 1 executors alive: no live executor serves the untubed list`},
		{"t-build", "build", `waits in tube "build" (list fq:tube:build), 0 tasks ahead of it; 1 of 1 executors alive; served by ` + id},
	} {
		var out, errOut bytes.Buffer
		if code := run([]string{"submit", a, "-queue=fq", "-id=" + tc.id, "-tube=" + tc.tube, "hello.sh"}, &out, &errOut); code != 0 {
			t.Fatalf("submit: exit %d: %s", code, errOut.String())
		}
		if n := rdb.LLen(ctx, ex.TubeKey(tc.tube)).Val(); n != 1 {
			t.Errorf("%s: %d tasks in %s, want 1", tc.id, n, ex.TubeKey(tc.tube))
		}
		out.Reset()
		errOut.Reset()
		run([]string{"status", a, "-queue=fq", tc.id}, &out, &errOut)
		if !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("status %s said:\n%s\nwant it to contain:\n%s", tc.id, errOut.String(), tc.want)
		}
	}
}

// An executor with a registry registers its tubes and labels on a lease,
// runs a task of its tube, and is gone from the registry once it stops.
func TestExecutorRegistersInTheFleetRegistry(t *testing.T) {
	srv := redisserver.Start(t)
	etcd := etcdtest.Start(t)
	dir := scripts(t)
	id := fmt.Sprintf("reg-%d", os.Getpid())
	cfg, _ := json.Marshal(map[string]any{
		"redis_addr": srv.Addr(), "queue_name": "rq", "cmd_dir": dir, "executor_id": id,
		"isolation": "off", "spool_dir": filepath.Join(t.TempDir(), "spool"), "shutdown_grace": "2s",
		"tubes": []string{"build"}, "labels": map[string]string{"zone": "b"}, "registry": "etcd://" + etcd.Endpoint(), "registry_ttl": "2s",
	})
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	log := &observe.Buffer{}
	cmd := exec.Command(self, "-config="+path)
	cmd.Env = append(os.Environ(), mainEnv+"=1", "GORACE=atexit_sleep_ms=0")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("executor log:\n%s", log.String())
		}
	}()
	reg, err := etcdreg.New(etcdreg.Options{Endpoints: []string{etcd.Endpoint()}, Prefix: "/task-job/rq/"})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	var me *registry.Member
	observe.Eventually(t, "the executor to register", 20*time.Second, func() bool {
		ms, _ := reg.Members(context.Background())
		for _, m := range ms {
			if m.ID == id {
				me = &m
			}
		}
		return me != nil
	})
	if strings.Join(me.Tubes, ",") != "build" || me.Labels["zone"] != "b" || me.Incarnation == 0 {
		t.Errorf("registered %+v", me)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"submit", "-redis_addr=" + srv.Addr(), "-queue=rq", "-tube=build", "-wait", "-wait_timeout=20s", "hello.sh", "fleet"}, &out, &errOut); code != 0 {
		t.Fatalf("submit -tube=build -wait: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	<-done
	if ms, _ := reg.Members(context.Background()); len(ms) != 0 {
		t.Errorf("still registered after a clean stop: %+v", ms)
	}
}
