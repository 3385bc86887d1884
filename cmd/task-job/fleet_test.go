package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue/redisqueue"
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
