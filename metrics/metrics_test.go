package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/taskjob/task-job/executor"
	"github.com/taskjob/task-job/task"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func newTest(queues func(context.Context) ([]QueueFigure, error)) *Metrics {
	return New(Options{Version: "v-test", Executor: true, Slots: 3, Queues: queues, QueueTimeout: 200 * time.Millisecond, MaxTubes: 3})
}

func TestNamesLintAndZeroes(t *testing.T) {
	m := newTest(func(context.Context) ([]QueueFigure, error) {
		return []QueueFigure{{Name: "q", Length: 7, OldestAge: 1500 * time.Millisecond}, {Name: "q_control", Length: 0, OldestAge: -1}}, nil
	})
	m.TaskReceived("blue")
	out := scrape(t, m)
	problems, err := promlint.New(strings.NewReader(out)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, want := range []string{
		"taskjob_tasks_received_total", "taskjob_tasks_refused_total", "taskjob_tasks_finished_total",
		"taskjob_task_duration_seconds", "taskjob_task_wait_seconds", "taskjob_sandbox_setup_seconds",
		"taskjob_tasks_running", "taskjob_slots 3", "taskjob_oom_kills_total", "taskjob_output_dropped_bytes_total",
		"taskjob_audit_write_errors_total", `taskjob_queue_length{queue="q"} 7`, `taskjob_queue_oldest_age_seconds{queue="q"} 1.5`,
		`taskjob_build_info{goversion=`, `version="v-test"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the scrape", want)
		}
	}
	// Every tube × status from 0, and every refusal reason.
	for _, tube := range []string{DefaultTube, "blue"} {
		for _, s := range Statuses {
			if want := fmt.Sprintf(`taskjob_tasks_finished_total{status=%q,tube=%q} 0`, s, tube); !strings.Contains(out, want) {
				t.Errorf("missing %s", want)
			}
		}
	}
	for _, r := range RefusalReasons {
		if want := fmt.Sprintf(`taskjob_tasks_refused_total{reason=%q} 0`, r); !strings.Contains(out, want) {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(out, `taskjob_queue_oldest_age_seconds{queue="q_control"}`) {
		t.Error("an unknown age was exported")
	}
}

func TestObserverCounts(t *testing.T) {
	m := newTest(nil)
	m.TaskReceived("")
	m.TaskStarted("", 2*time.Millisecond, time.Millisecond)
	if v := testutil.ToFloat64(m.running); v != 1 {
		t.Errorf("running = %v", v)
	}
	m.TaskEnded(executor.TaskEnd{State: task.Failed, Reason: "oom: …", Started: true, Ran: time.Second, OOMKilled: true, DroppedBytes: 10})
	m.TaskEnded(executor.TaskEnd{Tube: "a", State: task.Rejected, Reason: `policy: no rule allows cmdline "x"`})
	m.TaskEnded(executor.TaskEnd{Tube: "b", State: task.Rejected, Reason: "jail: leaves cmd_dir"})
	// A fourth tube exceeds MaxTubes (3, the default tube included) and goes to "other".
	m.TaskEnded(executor.TaskEnd{Tube: "c", State: task.Succeeded})
	m.AuditWriteFailed()
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"running", testutil.ToFloat64(m.running), 0},
		{"received default", testutil.ToFloat64(m.received.WithLabelValues(DefaultTube)), 1},
		{"failed default", testutil.ToFloat64(m.finished.WithLabelValues(DefaultTube, "failed")), 1},
		{"refused policy", testutil.ToFloat64(m.refused.WithLabelValues("policy")), 1},
		{"refused jail", testutil.ToFloat64(m.refused.WithLabelValues("jail")), 1},
		{"succeeded other", testutil.ToFloat64(m.finished.WithLabelValues(OtherTube, "succeeded")), 1},
		{"oom", testutil.ToFloat64(m.oom), 1},
		{"dropped", testutil.ToFloat64(m.dropped), 10},
		{"audit", testutil.ToFloat64(m.auditErrs), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.finished); n != 4*len(Statuses) { // default, a, b and other
		t.Errorf("finished has %d series, want %d: the tube label must stay bounded", n, 4*len(Statuses))
	}
}

// A queue reader that does not answer within the timeout does not hang
// the scrape; it says so.
func TestQueueTimeout(t *testing.T) {
	m := newTest(func(ctx context.Context) ([]QueueFigure, error) {
		<-ctx.Done()
		return nil, errors.New("slow")
	})
	start := time.Now()
	out := scrape(t, m)
	if time.Since(start) > 5*time.Second || !strings.Contains(out, "taskjob_queue_scrape_ok 0") {
		t.Errorf("after %v: %s", time.Since(start), out)
	}
}
