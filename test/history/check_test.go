package history

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taskjob/task-job/task"
)

// synthetic builds a run from hand-written records, without processes, so
// each invariant can be shown to catch what it is meant to.
func synthetic(t *testing.T, marks string, specs ...taskSpec) *run {
	t.Helper()
	r := &run{
		t: t, params: Params{TTL: time.Second}, plan: plan{Tasks: specs},
		submitted: make([]int, len(specs)), firstSub: make([]time.Duration, len(specs)), killSent: make([]int, len(specs)),
		marks: filepath.Join(t.TempDir(), "log"),
	}
	if err := os.WriteFile(r.marks, []byte(marks), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range specs {
		r.submitted[i] = 1
	}
	return r
}

func (r *run) got(at time.Duration, l task.Log) {
	r.recv = append(r.recv, received{At: at, Pos: len(r.recv), Log: l})
}

func out(id string, seq uint64, data string) task.Log {
	return task.Log{ID: id, MsgType: task.MsgStdout, Seq: seq, Data: data, Executor: "e0"}
}

func done(id string, seq uint64, st task.State, exit int, reason string) task.Log {
	return task.Log{ID: id, MsgType: task.MsgDone, Seq: seq, Executor: "e0",
		Result: &task.Result{Status: st, ExitCode: exit, Reason: reason}}
}

// TestCheckerCatches: a clean history passes, and each way of breaking a
// promise is reported under its invariant.
func TestCheckerCatches(t *testing.T) {
	a := taskSpec{ID: "a", Lines: 2}
	clean := func(t *testing.T) *run {
		r := synthetic(t, "a start 1\na end 2\n", a)
		r.got(1, out("a", 1, "line 1"))
		r.got(2, out("a", 2, "line 2"))
		r.got(3, done("a", 3, task.Succeeded, 0, "exited with status 0"))
		return r
	}
	if vs := clean(t).check(leftovers{}); len(vs) != 0 {
		t.Fatalf("a clean history broke %v", vs)
	}
	cases := []struct {
		name  string
		inv   string
		spoil func(r *run) leftovers
	}{
		{"ran twice", InvAtMostOnce, func(r *run) leftovers {
			os.WriteFile(r.marks, []byte("a start 1\na start 2\na end 3\na end 4\n"), 0o644)
			return leftovers{}
		}},
		{"two dones", InvOneDone, func(r *run) leftovers {
			r.got(4, done("a", 0, task.Lost, -1, "executor e0 died while the task ran"))
			return leftovers{}
		}},
		{"no done", InvOneDone, func(r *run) leftovers { r.recv = r.recv[:2]; return leftovers{} }},
		{"output after done", InvNoAfterDone, func(r *run) leftovers {
			r.recv[1], r.recv[2] = r.recv[2], r.recv[1]
			r.recv[1].Pos, r.recv[2].Pos = 1, 2
			return leftovers{}
		}},
		{"killed without a kill", InvStatus, func(r *run) leftovers {
			r.recv[2].Log = done("a", 3, task.Killed, -1, "killed by a kill message")
			return leftovers{}
		}},
		{"lost without a death", InvStatus, func(r *run) leftovers {
			r.recv[2].Log = done("a", 0, task.Lost, -1, "executor e0 died while the task ran")
			return leftovers{}
		}},
		{"succeeded short of its end", InvStatus, func(r *run) leftovers {
			os.WriteFile(r.marks, []byte("a start 1\n"), 0o644)
			return leftovers{}
		}},
		{"a line missing", InvOutput, func(r *run) leftovers { r.recv = append(r.recv[:1], r.recv[2]); return leftovers{} }},
		{"lines out of order", InvOutput, func(r *run) leftovers {
			r.recv[0].Log.Data, r.recv[1].Log.Data = "line 2", "line 1"
			return leftovers{}
		}},
		{"a process left", InvNoProcess, func(r *run) leftovers { return leftovers{procs: []string{"7: sleep 1"}} }},
		{"a cgroup left", InvNoCgroup, func(r *run) leftovers { return leftovers{cgroups: []string{"/sys/fs/cgroup/pids/task-job-x/t"}} }},
		{"a broken chain", InvAudit, func(r *run) leftovers { return leftovers{audit: map[string]string{"e0": "BROKEN"}} }},
		{"an executor died by itself", InvStaysUp, func(r *run) leftovers {
			r.events = append(r.events, event{Kind: "exited", Exec: "e0", Note: "exit status 1"})
			return leftovers{}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := clean(t)
			vs := r.check(c.spoil(r))
			if len(vs) == 0 || !strings.Contains(invariantsOf(vs), c.inv) {
				t.Fatalf("want %s broken, got %v", c.inv, vs)
			}
		})
	}
	// The same lost done is fine when its executor was SIGKILLed meanwhile.
	r := clean(t)
	r.recv[2].Log = done("a", 0, task.Lost, -1, "executor e0 died while the task ran")
	r.recv[2].At = 5
	r.events = append(r.events, event{At: 2, Kind: "sigkill", Exec: "e0"})
	os.WriteFile(r.marks, []byte("a start 1\n"), 0o644)
	if vs := r.check(leftovers{}); len(vs) != 0 {
		t.Fatalf("a justified lost broke %v", vs)
	}
}

// TestCheckerKafkaAllowances: the two documented Kafka differences pass
// over Kafka only, and only in their narrow form; a task's messages in two
// partitions of the logs topic break no-output-after-done.
func TestCheckerKafkaAllowances(t *testing.T) {
	a := taskSpec{ID: "a", Lines: 2}
	history := func(t *testing.T, kafka bool) *run {
		r := synthetic(t, "a start 1\na end 2\n", a)
		r.params.Kafka = kafka
		r.got(1, out("a", 1, "line 1"))
		r.got(2, out("a", 2, "line 2"))
		r.got(3, done("a", 3, task.Succeeded, 0, "exited with status 0"))
		for i := range r.recv {
			r.recv[i].Raw = fmt.Sprintf("raw %d", i)
		}
		return r
	}
	// A done repeated byte for byte (a produce retry) counts once on Kafka.
	for _, kafka := range []bool{false, true} {
		r := history(t, kafka)
		r.recv = append(r.recv, r.recv[2])
		r.recv[3].Pos = 3
		vs := r.check(leftovers{})
		if broke := strings.Contains(invariantsOf(vs), InvOneDone); broke == kafka {
			t.Errorf("kafka=%v: a done repeated byte for byte: %v", kafka, vs)
		}
	}
	// A different second done is two dones on Kafka too.
	r := history(t, true)
	r.got(4, done("a", 0, task.Lost, -1, "lost: executor e1 died while the task ran"))
	r.recv[3].Raw = "another"
	if vs := r.check(leftovers{}); !strings.Contains(invariantsOf(vs), InvOneDone) {
		t.Errorf("two different dones over Kafka: %v", vs)
	}
	// A line after a lost done: from the executor it names dead, on Kafka
	// only; from anyone else, never.
	lostFirst := func(kafka bool, from string) []violation {
		r := history(t, kafka)
		r.recv[2].Log = done("a", 0, task.Lost, -1, "lost: executor e0 died (or was paused or cut off past its TTL) while the task ran")
		r.recv[2].Log.Executor = "e1"
		r.recv[1], r.recv[2] = r.recv[2], r.recv[1]
		r.recv[1].Pos, r.recv[2].Pos = 1, 2
		r.recv[2].Log.Executor = from
		r.events = append(r.events, event{At: 0, Kind: "sigkill", Exec: "e0"})
		os.WriteFile(r.marks, []byte("a start 1\n"), 0o644)
		return r.check(leftovers{})
	}
	if vs := lostFirst(true, "e0"); len(vs) != 0 {
		t.Errorf("kafka: the fenced executor's line after its lost done: %v", vs)
	}
	if vs := lostFirst(true, "e1"); !strings.Contains(invariantsOf(vs), InvNoAfterDone) {
		t.Errorf("kafka: another executor's line after a lost done: %v", vs)
	}
	if vs := lostFirst(false, "e0"); !strings.Contains(invariantsOf(vs), InvNoAfterDone) {
		t.Errorf("redis: the dead executor's line after its lost done: %v", vs)
	}
	// One task's messages in two partitions have no order.
	r = history(t, true)
	r.recv[0].Part = 1
	if vs := r.check(leftovers{}); !strings.Contains(invariantsOf(vs), InvNoAfterDone) {
		t.Errorf("a task's messages in two partitions: %v", vs)
	}
}
