// Package metrics holds task-job's Prometheus metrics: their names, the
// executor's counters (through executor.Observer) and the queue figures
// collected at scrape time. Labels are bounded: tube (capped, the rest
// "other"), status, reason class and queue name — never a task id, cmdline
// or user.
package metrics

import (
	"context"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/taskjob/task-job/executor"
	"github.com/taskjob/task-job/task"
)

// Refusal reason classes, the values of taskjob_tasks_refused_total's
// reason label.
var RefusalReasons = []string{"policy", "signature", "jail", "invalid", "audit", "other"}

// Statuses are the terminal states, the values of the status label.
var Statuses = []task.State{task.Succeeded, task.Failed, task.Timeout, task.Killed, task.Lost, task.Rejected}

// DefaultTube labels tasks without a tube; OtherTube those past MaxTubes.
const (
	DefaultTube = "default"
	OtherTube   = "other"
)

// QueueFigure is one list's figures at scrape time.
type QueueFigure struct {
	Name   string
	Length int64
	// OldestAge is how long the head has waited; negative = unknown or
	// not applicable.
	OldestAge time.Duration
}

// Options configure Metrics.
type Options struct {
	Version string
	// Executor registers the executor's metrics (tasks, slots, sandbox);
	// a server that only watches leaves it false.
	Executor bool
	Slots    int
	// Queues reads the queue figures at scrape time; nil = none.
	Queues func(ctx context.Context) ([]QueueFigure, error)
	// QueueTimeout bounds Queues (default 2 s): a slow Redis must not hang
	// the scrape.
	QueueTimeout time.Duration
	// MaxTubes bounds the tube label's values (default 32).
	MaxTubes int
}

// Metrics is the registry and the executor's observer.
type Metrics struct {
	opt Options
	reg *prometheus.Registry

	received  *prometheus.CounterVec
	refused   *prometheus.CounterVec
	finished  *prometheus.CounterVec
	duration  prometheus.Histogram
	wait      prometheus.Histogram
	setup     prometheus.Histogram
	running   prometheus.Gauge
	oom       prometheus.Counter
	dropped   prometheus.Counter
	auditErrs prometheus.Counter

	mu    sync.Mutex
	tubes map[string]bool
}

var _ executor.Observer = (*Metrics)(nil)

// New builds the metrics and registers them.
func New(o Options) *Metrics {
	if o.QueueTimeout <= 0 {
		o.QueueTimeout = 2 * time.Second
	}
	if o.MaxTubes <= 0 {
		o.MaxTubes = 32
	}
	m := &Metrics{opt: o, reg: prometheus.NewRegistry(), tubes: map[string]bool{}}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "taskjob_build_info", Help: "Always 1; the labels say which task-job build this is.",
		ConstLabels: prometheus.Labels{"version": o.Version, "goversion": runtime.Version()},
	}, func() float64 { return 1 }))
	if o.Queues != nil {
		m.reg.MustRegister(&queueCollector{m: m})
	}
	if !o.Executor {
		return m
	}
	m.received = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "taskjob_tasks_received_total", Help: "Tasks this executor claimed, by tube.",
	}, []string{"tube"})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "taskjob_tasks_refused_total", Help: "Tasks rejected before running, by reason class.",
	}, []string{"reason"})
	m.finished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "taskjob_tasks_finished_total", Help: "Tasks ended, by tube and terminal status.",
	}, []string{"tube", "status"})
	m.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "taskjob_task_duration_seconds", Help: "How long started tasks ran.",
		Buckets: prometheus.ExponentialBuckets(0.005, 4, 10),
	})
	m.wait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "taskjob_task_wait_seconds", Help: "From the task entering the queue to its process start. The queue time is known for tasks submitted through the API or CLI and for Kafka records; for a plain RPUSH it is not, and the wait counts from this executor taking the task off the list.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
	})
	m.setup = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "taskjob_sandbox_setup_seconds", Help: "How long the sandbox took to start a task's process.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	m.running = prometheus.NewGauge(prometheus.GaugeOpts{Name: "taskjob_tasks_running", Help: "Tasks whose process is running now."})
	slots := prometheus.NewGauge(prometheus.GaugeOpts{Name: "taskjob_slots", Help: "Tasks this executor runs at once at most (concurrency)."})
	slots.Set(float64(o.Slots))
	m.oom = prometheus.NewCounter(prometheus.CounterOpts{Name: "taskjob_oom_kills_total", Help: "Tasks killed for going over their memory limit."})
	m.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "taskjob_output_dropped_bytes_total", Help: "Output bytes beyond max_output_bytes, not shipped."})
	m.auditErrs = prometheus.NewCounter(prometheus.CounterOpts{Name: "taskjob_audit_write_errors_total", Help: "Audit records that could not be written (tasks stop starting meanwhile)."})
	m.reg.MustRegister(m.received, m.refused, m.finished, m.duration, m.wait, m.setup, m.running, slots, m.oom, m.dropped, m.auditErrs)
	for _, r := range RefusalReasons {
		m.refused.WithLabelValues(r)
	}
	m.tube("")
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, Timeout: 10 * time.Second})
}

// Registry is for tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// tube returns the label value for tube, creating its series from 0 the
// first time, so that every tube × status combination is present.
func (m *Metrics) tube(tube string) string {
	if tube == "" {
		tube = DefaultTube
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tubes[tube] {
		return tube
	}
	if len(m.tubes) >= m.opt.MaxTubes {
		tube = OtherTube
		if m.tubes[tube] {
			return tube
		}
	}
	m.tubes[tube] = true
	m.received.WithLabelValues(tube)
	for _, s := range Statuses {
		m.finished.WithLabelValues(tube, string(s))
	}
	return tube
}

// RefusalReason classes a rejected task's reason.
func RefusalReason(reason string) string {
	switch {
	case strings.HasPrefix(reason, "policy:"):
		return "policy"
	case strings.HasPrefix(reason, "signature:"):
		return "signature"
	case strings.HasPrefix(reason, "jail:"):
		return "jail"
	case strings.HasPrefix(reason, "task:"):
		return "invalid"
	case strings.Contains(reason, "audit log"):
		return "audit"
	}
	return "other"
}

// TaskReceived implements executor.Observer.
func (m *Metrics) TaskReceived(tube string) { m.received.WithLabelValues(m.tube(tube)).Inc() }

// TaskStarted implements executor.Observer.
func (m *Metrics) TaskStarted(_ string, waited, setup time.Duration) {
	m.running.Inc()
	m.wait.Observe(waited.Seconds())
	m.setup.Observe(setup.Seconds())
}

// TaskEnded implements executor.Observer.
func (m *Metrics) TaskEnded(e executor.TaskEnd) {
	m.finished.WithLabelValues(m.tube(e.Tube), string(e.State)).Inc()
	if e.Started {
		m.running.Dec()
		m.duration.Observe(e.Ran.Seconds())
	}
	if e.State == task.Rejected {
		m.refused.WithLabelValues(RefusalReason(e.Reason)).Inc()
	}
	if e.OOMKilled {
		m.oom.Inc()
	}
	if e.DroppedBytes > 0 {
		m.dropped.Add(float64(e.DroppedBytes))
	}
}

// AuditWriteFailed implements executor.Observer.
func (m *Metrics) AuditWriteFailed() { m.auditErrs.Inc() }

var (
	queueLengthDesc = prometheus.NewDesc("taskjob_queue_length", "Messages in a list of the deployment, at scrape time.", []string{"queue"}, nil)
	queueAgeDesc    = prometheus.NewDesc("taskjob_queue_oldest_age_seconds", "How long the task at the head of the task list has waited (at least), at scrape time.", []string{"queue"}, nil)
	queueUpDesc     = prometheus.NewDesc("taskjob_queue_scrape_ok", "1 when the queue figures could be read within the timeout.", nil, nil)
)

// queueCollector reads the queues at scrape time, within the timeout.
type queueCollector struct{ m *Metrics }

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueLengthDesc
	ch <- queueAgeDesc
	ch <- queueUpDesc
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.m.opt.QueueTimeout)
	defer cancel()
	figs, err := c.m.opt.Queues(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(queueUpDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(queueUpDesc, prometheus.GaugeValue, 1)
	for _, f := range figs {
		ch <- prometheus.MustNewConstMetric(queueLengthDesc, prometheus.GaugeValue, float64(f.Length), f.Name)
		if f.OldestAge >= 0 {
			ch <- prometheus.MustNewConstMetric(queueAgeDesc, prometheus.GaugeValue, f.OldestAge.Seconds(), f.Name)
		}
	}
}
