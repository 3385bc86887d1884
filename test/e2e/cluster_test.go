package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/test/observe"
	"github.com/taskjob/task-job/test/redisserver"
)

// An executor and the client commands on a real 3-master Redis Cluster,
// with a queue_name carrying a hash tag: every key is in that tag's slot.
func TestOnRedisCluster(t *testing.T) {
	c := redisserver.StartCluster(t)
	dir := t.TempDir()
	script(t, dir, "hello.sh", `echo "hello $1"`)
	script(t, dir, "long.sh", `echo begun; sleep 60`)
	id := uniqueID("cl")
	cfg := config(t, c.URL(), dir, id, map[string]any{
		"queue_name": "{jobs}", "tubes": []string{"build", ""},
		"audit_file": filepath.Join(t.TempDir(), "audit.log"),
	})
	p := start(t, "-config="+cfg)
	p.waitLog(t, "executor serving", 20*time.Second)

	out, code := run(t, "submit", "-config="+cfg, "-id=c1", "-wait", "hello.sh", "cluster")
	if code != 0 || !strings.Contains(out, "hello cluster") || !strings.Contains(out, "succeeded") {
		t.Fatalf("submit -wait: code %d\n%s", code, out)
	}
	out, code = run(t, "submit", "-config="+cfg, "-id=t1", "-tube=build", "-wait", "hello.sh", "tube")
	if code != 0 || !strings.Contains(out, "hello tube") {
		t.Fatalf("submit -tube -wait: code %d\n%s", code, out)
	}
	if out, code = run(t, "status", "-config="+cfg, "c1"); code != 0 || !strings.Contains(out, "succeeded") {
		t.Fatalf("status: code %d\n%s", code, out)
	}
	if out, code = run(t, "logs", "-config="+cfg, "c1"); code != 0 || !strings.Contains(out, "hello cluster") {
		t.Fatalf("logs: code %d\n%s", code, out)
	}

	// concurrency 1: r1 runs, q1 stays queued behind it.
	if out, code = run(t, "submit", "-config="+cfg, "-id=r1", "long.sh"); code != 0 {
		t.Fatalf("submit r1: %d %s", code, out)
	}
	observe.Eventually(t, "r1 to run", 10*time.Second, func() bool {
		out, _ := run(t, "status", "-config="+cfg, "r1")
		return strings.Contains(out, "running")
	})
	if out, code = run(t, "submit", "-config="+cfg, "-id=q1", "long.sh"); code != 0 {
		t.Fatalf("submit q1: %d %s", code, out)
	}
	if out, code = run(t, "submit", "-config="+cfg, "-id=q1", "long.sh"); code == 0 {
		t.Fatalf("a second submit of queued q1 accepted:\n%s", out)
	}
	follow := exec.Command(binary, "logs", "-f", "-config="+cfg, "q1")
	var buf strings.Builder
	follow.Stdout, follow.Stderr = &buf, &buf
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer follow.Process.Kill()
	if out, code = run(t, "kill", "-config="+cfg, "q1"); code != 0 {
		t.Fatalf("kill of queued q1: %d %s", code, out)
	}
	if out, code = run(t, "kill", "-config="+cfg, "r1"); code != 0 {
		t.Fatalf("kill of running r1: %d %s", code, out)
	}
	for _, id := range []string{"q1", "r1"} {
		observe.Eventually(t, id+" to end killed", 20*time.Second, func() bool {
			out, _ := run(t, "status", "-config="+cfg, id)
			return strings.Contains(out, "killed")
		})
	}
	done := make(chan error, 1)
	go func() { done <- follow.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("logs -f of q1 did not end at its done:\n%s", buf.String())
	}
	if s := buf.String(); !strings.Contains(s, "killed") || strings.Contains(s, "begun") {
		t.Errorf("logs -f of the queued q1 printed:\n%s", s)
	}
	if out, code = run(t, "ps", "-config="+cfg); code != 0 {
		t.Errorf("ps: %d %s", code, out)
	}
	// The audit log's mirror is in the deployment's slot too.
	rdb := c.Client(t)
	observe.Eventually(t, "the audit mirror to hold records", 10*time.Second, func() bool {
		return rdb.XLen(context.Background(), "{jobs}_audit:"+id).Val() > 0
	})
}

// A cluster config whose queue_name has no hash tag would spread its keys
// over the slots: it is refused at start, naming the fix.
func TestClusterConfigNeedsAHashTag(t *testing.T) {
	c := redisserver.StartCluster(t)
	cfg := config(t, c.URL(), t.TempDir(), uniqueID("cl"), map[string]any{"queue_name": "jobs"})
	p := start(t, "-config="+cfg)
	if code := p.wait(t, 20*time.Second); code == 0 {
		t.Fatalf("started with an untagged queue_name on a cluster:\n%s", p.output())
	}
	if out := p.output(); !strings.Contains(out, `queue_name`) || !strings.Contains(out, `"{jobs}"`) {
		t.Errorf("the refusal does not name the fix:\n%s", out)
	}
	out, code := run(t, "submit", "-redis_addr="+c.URL(), "-queue=jobs", "x.sh")
	if code == 0 || !strings.Contains(out, "{jobs}") {
		t.Errorf("submit to an untagged queue on a cluster: %d\n%s", code, out)
	}
}
