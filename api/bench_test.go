package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/task"
)

// BenchmarkListTasks: GET /api/v1/tasks over HTTP, first page (50) and a
// filtered page, with the recent index full (100,000 ended tasks).
//
//	go test -run='^$' -bench=ListTasks -benchtime=200x ./api/
func BenchmarkListTasks(b *testing.B) {
	e := newEnv(b, envOpt{})
	ctx := context.Background()
	const n = 100_000
	now := time.Now().UnixMilli()
	for start := 0; start < n; start += 5000 {
		_, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := start; i < start+5000; i++ {
				id := fmt.Sprintf("bench-%06d", i)
				state := task.Succeeded
				if i%10 == 0 {
					state = task.Failed
				}
				done, _ := json.Marshal(task.Log{ID: id, MsgType: task.MsgDone, Seq: 3, Result: &task.Result{Status: state, Reason: "exited"}})
				raw, _ := json.Marshal(task.Task{ID: id, Type: "bench", Task: task.Spec{Cmdline: "x.sh", CmdArgs: []string{"a"}}})
				p.ZAdd(ctx, e.q.RecentKey(), redis.Z{Score: float64(now - int64(n-i)), Member: id})
				p.HSet(ctx, e.q.StatusKey(id), "state", string(state), "executor", "ex", "updated", now, "done", done)
				p.Set(ctx, e.q.TaskKey(id), raw, time.Hour)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, q := range []string{"", "?state=failed", "?state=failed&limit=500"} {
		b.Run("query="+q, func(b *testing.B) {
			for b.Loop() {
				resp, err := http.Get(e.http.URL + "/api/v1/tasks" + q)
				if err != nil || resp.StatusCode != 200 {
					b.Fatal(err, resp.StatusCode)
				}
				resp.Body.Close()
			}
		})
	}
}
