package signature

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/taskjob/task-job/task"
)

// benchTasks signs n distinct tasks, so that none is a replay.
func benchTasks(n int) []*task.Task {
	ts := make([]*task.Task, n)
	for i := range ts {
		tk := &task.Task{ID: "task-" + strconv.Itoa(i), Type: "deploy", Task: task.Spec{
			Cmdline: "install.sh --env prod", CmdArgs: []string{"feature/homestead", "--verbose"}, Timeout: 3600}}
		Sign(tk, "web", secretA, t0)
		ts[i] = tk
	}
	return ts
}

func benchVerify(b *testing.B, guard func() ReplayGuard) {
	tasks := benchTasks(b.N)
	v := NewVerifier(testKeyring(b), Options{Now: func() time.Time { return t0 }, Replay: guard()})
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := v.Verify(ctx, tasks[i]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify is the cost a signed task adds in an executor with a
// MemoryGuard: HMAC, window and replay memory.
func BenchmarkVerify(b *testing.B) {
	benchVerify(b, func() ReplayGuard { return NewMemoryGuard(b.N + 1) })
}

func BenchmarkCanonical(b *testing.B) {
	tk := benchTasks(1)[0]
	b.ReportAllocs()
	for b.Loop() {
		Canonical(tk, "web", 1764000000)
	}
}
