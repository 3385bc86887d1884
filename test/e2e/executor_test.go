package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/observe"
	"github.com/taskjob/task-job/test/redisserver"
)

func config(t *testing.T, srv string, dir, id string, extra map[string]any) string {
	keys := map[string]any{
		"redis_addr": srv, "cmd_dir": dir, "executor_id": id, "concurrency": 1,
		"executor_ttl": "1s", "kill_grace": "1s", "logs": true,
		"spool_dir": t.TempDir(),
	}
	for k, v := range extra {
		keys[k] = v
	}
	return writeConfig(t, keys)
}

// The original command line keeps working: single-dash glog-style flags.
func TestRunsWithTheOriginalCommandLine(t *testing.T) {
	srv := redisserver.Start(t)
	dir := t.TempDir()
	script(t, dir, "install.sh", `echo "installing $1"`)
	logDir := t.TempDir()
	p := start(t, "-config="+config(t, srv.Addr(), dir, uniqueID("a"), nil), "-alsologtostderr", "-log_dir="+logDir, "-v=1")
	p.waitLog(t, "executor serving", 20*time.Second)
	rdb := srv.Client(t)
	// The exact message from the original README.
	if err := rdb.RPush(context.Background(), "queue_job_task",
		`{"id":"101","type":"test","tube":"","task":{"cmdline":"install.sh","cmd_args":["feature/homestead"],"timeout":3600}}`).Err(); err != nil {
		t.Fatal(err)
	}
	seen := map[string][]task.Log{}
	d := doneOf(t, rdb, seen, "101", 20*time.Second)
	if d.Status != task.Succeeded || d.ExitCode != 0 {
		t.Fatalf("done %+v", d)
	}
	if len(seen["101"]) != 2 || seen["101"][0].Data != "installing feature/homestead" || seen["101"][0].MsgType != "stdout" || seen["101"][0].Type != "test" {
		t.Fatalf("messages %+v", seen["101"])
	}
	b, err := os.ReadFile(logDir + "/task-job.log")
	if err != nil || !strings.Contains(string(b), "task ended") && !strings.Contains(string(b), "executor serving") {
		t.Errorf("-log_dir file: %v %q", err, b)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}

func TestInvalidConfigIsReportedAllAtOnce(t *testing.T) {
	path := writeConfig(t, map[string]any{"concurency": 2, "logs": "yes", "cmd_dir": "relative/dir"})
	out, err := exec.Command(binary, "-config="+path).CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() == 0 {
		t.Fatalf("exit %v, want non-zero; output:\n%s", err, out)
	}
	for _, want := range []string{"concurency", "did you mean", "logs", "cmd_dir", path + ":"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// SIGKILL of an executor mid-task: no task process survives it, a peer
// reports the task lost within seconds, and queued tasks still run.
func TestExecutorSIGKILLMidTask(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	dir := t.TempDir()
	marker := fmt.Sprintf("9%09d", time.Now().UnixNano()%1e9)
	script(t, dir, "long.sh", "setsid sleep 1"+marker+" &\nsleep 2"+marker)
	script(t, dir, "ok.sh", "echo ok")

	idA, idB := uniqueID("a"), uniqueID("b")
	a := start(t, "-config="+config(t, srv.Addr(), dir, idA, nil))
	a.waitLog(t, "executor serving", 20*time.Second)
	submit(t, rdb, "victim", "long.sh")
	observe.Eventually(t, "the task to run", 10*time.Second, func() bool { return observe.ProcessWithMarker("2" + marker) })
	submit(t, rdb, "queued-1", "ok.sh")
	submit(t, rdb, "queued-2", "ok.sh")

	b := start(t, "-config="+config(t, srv.Addr(), dir, idB, nil))
	b.waitLog(t, "executor serving", 20*time.Second)
	a.signal(syscall.SIGKILL)
	a.wait(t, 10*time.Second)
	killed := time.Now()

	observe.Eventually(t, "the task's processes to die with their executor", 5*time.Second, func() bool {
		return !observe.ProcessWithMarker("1"+marker) && !observe.ProcessWithMarker("2"+marker)
	})
	seen := map[string][]task.Log{}
	d := doneOf(t, rdb, seen, "victim", 20*time.Second)
	if d.Status != task.Lost || d.Executor != idB {
		t.Fatalf("victim: %+v", d)
	}
	t.Logf("lost reported %v after the SIGKILL", time.Since(killed))
	for _, id := range []string{"queued-1", "queued-2"} {
		if d := doneOf(t, rdb, seen, id, 20*time.Second); d.Status != task.Succeeded {
			t.Errorf("%s: %+v", id, d)
		}
	}
	if n := rdb.LLen(context.Background(), "queue_job_task:processing:"+idA).Val(); n != 0 {
		t.Errorf("dead executor's processing list still holds %d", n)
	}
}

// The same executor restarted after a SIGKILL reports its own lost task.
func TestRestartReportsItsOwnLostTask(t *testing.T) {
	srv := redisserver.Start(t)
	rdb := srv.Client(t)
	dir := t.TempDir()
	script(t, dir, "long.sh", "sleep 60")
	cfg := config(t, srv.Addr(), dir, uniqueID("solo"), nil)
	a := start(t, "-config="+cfg)
	a.waitLog(t, "executor serving", 20*time.Second)
	submit(t, rdb, "mine", "long.sh")
	observe.Eventually(t, "the task to run", 10*time.Second, func() bool {
		return rdb.HGet(context.Background(), "queue_job_task:status:mine", "state").Val() == "running"
	})
	a.signal(syscall.SIGKILL)
	a.wait(t, 10*time.Second)
	a2 := start(t, "-config="+cfg)
	seen := map[string][]task.Log{}
	if d := doneOf(t, rdb, seen, "mine", 20*time.Second); d.Status != task.Lost {
		t.Fatalf("mine: %+v", d)
	}
	a2.waitLog(t, "recovered the work of this executor's previous run", 5*time.Second)
}

func TestSentinelFailover(t *testing.T) {
	s := redisserver.StartSentinel(t)
	addr := "sentinel://" + s.MasterName() + "@" + strings.Join(s.SentinelAddrs(), ",")
	dir := t.TempDir()
	script(t, dir, "ok.sh", "echo ok")
	p := start(t, "-config="+config(t, addr, dir, uniqueID("a"), nil))
	p.waitLog(t, "executor serving", 20*time.Second)
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.MasterName(), SentinelAddrs: s.SentinelAddrs()})
	defer rdb.Close()
	seen := map[string][]task.Log{}
	submit(t, rdb, "before", "ok.sh")
	if d := doneOf(t, rdb, seen, "before", 20*time.Second); d.Status != task.Succeeded {
		t.Fatalf("before failover: %+v", d)
	}
	s.Failover(t)
	// The client and the executor both find the new master through the sentinels.
	observe.Eventually(t, "the new master to take writes", 30*time.Second, func() bool {
		return rdb.Set(context.Background(), "probe", "1", 0).Err() == nil
	})
	submit(t, rdb, "after", "ok.sh")
	if d := doneOf(t, rdb, seen, "after", 60*time.Second); d.Status != task.Succeeded {
		t.Fatalf("after failover: %+v", d)
	}
}
