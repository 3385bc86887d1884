// Package history is a randomized, seeded checker of task-job's lifecycle
// promises, in the manner of Jepsen-style history checkers: it runs real
// executor processes against a real redis-server, drives them with a
// random workload and random faults, records everything that was sent and
// received and what the tasks' processes did, and checks invariants over
// that history (see check.go). The executors are black boxes: only their
// binaries, config files, Redis keys, signals and the host's /proc and
// cgroup trees are used.
package history

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/tcpproxy"
)

const (
	queueName = "hq"
	logsList  = queueName + "_logs"
	ctrlList  = queueName + "_control"
	// nobody is the sandbox's default task user; the marker directory is
	// given to it so tasks can write their start and end lines there.
	nobodyUID = 65534
)

// binaries are built once per test binary run.
type binaries struct {
	exe, init string
}

// buildBinaries builds task-job and task-job-init into dir (without the
// race detector: the executors are the system under test, and two shared
// cores are better spent on more histories).
func buildBinaries(dir string) (binaries, error) {
	b := binaries{exe: filepath.Join(dir, "task-job"), init: filepath.Join(dir, "task-job-init")}
	for _, c := range [][]string{
		{"build", "-o", b.exe, "../../cmd/task-job"},
		{"build", "-trimpath", "-o", b.init, "../../cmd/task-job-init"},
	} {
		cmd := exec.Command("go", c...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("history: go %s: %w\n%s", strings.Join(c, " "), err, out)
		}
	}
	return b, nil
}

// event is one line of the history.
type event struct {
	At   time.Duration // since the history began
	Kind string
	ID   string // task id, if any
	Exec string // executor id, if any
	Note string
}

// received is one TaskLog message as it arrived on the logs list.
type received struct {
	At time.Duration
	// Part and Pos are where it was published: on Redis, Pos is the
	// position in the logs list, the global order of publication (Part
	// 0); on Kafka, the offset in partition Part of the logs topic, which
	// is keyed by task id, so one task's messages share a partition and
	// Pos orders them (messages of tasks in different partitions have no
	// order).
	Part int
	Pos  int
	Log  task.Log
	Raw  string
}

// executorProc is one executor identity; it may live several lives.
type executorProc struct {
	id      string
	cfg     string
	logPath string
	audit   string
	proxy   *tcpproxy.Proxy
	// args and ready are a dispatcher's (default: the executor's
	// -config=cfg and "executor serving").
	args  []string
	ready string
	netns string // the network namespace it runs in ("" = the harness's)

	cmd    *exec.Cmd
	done   chan struct{}
	exit   error
	paused bool
	lives  int
	// logStart is where the current life's log begins.
	logStart int64
	// expected is set before the harness signals an exit, so an exit
	// nobody asked for is recorded as one.
	expected atomic.Bool
}

func (e *executorProc) alive() bool {
	if e.cmd == nil {
		return false
	}
	select {
	case <-e.done:
		return false
	default:
		return true
	}
}

// run is one history being executed.
type run struct {
	t      testing.TB
	bin    binaries
	params Params
	plan   plan
	marker string // in every task id and in every executor's environment
	dir    string
	cmdDir string
	marks  string // the file tasks append "<id> start" / "<id> end" to
	policy string // the policy file: one rule for work.sh, cmd_dir writable
	br     broker
	execs  []*executorProc
	disps  []*executorProc // a fleet history's dispatcher replicas
	etcd   string          // a fleet history's etcd endpoint
	t0     time.Time
	// waiting is what `task-job status` said at the end about each task
	// nobody can take (fleet histories).
	waiting map[string]string

	mu     sync.Mutex
	events []event
	recv   []received

	// submitted[i] counts accepted RPUSHes of task i; sentKill[i] kills sent.
	submitted []int
	firstSub  []time.Duration
	killSent  []int
	// killQueued[i] counts kills sent once task i was accepted: a kill
	// sent before waits for the task's claim (README, "Lifecycle").
	killQueued []int
	brokerUp   bool // Redis, or the Kafka broker, is up
	// fenced counts the lines after a lost done that check let pass (a
	// race the Kafka transport documents: fencedLine).
	fenced   int
	stopPoll chan struct{}
	pollDone chan struct{}
}

func (r *run) now() time.Duration { return time.Since(r.t0) }

func (r *run) record(kind, id, exec, note string) {
	r.mu.Lock()
	r.events = append(r.events, event{At: r.now(), Kind: kind, ID: id, Exec: exec, Note: note})
	r.mu.Unlock()
}

// newRun prepares the run directory, Redis, proxies and executor configs.
func newRun(t testing.TB, bin binaries, p Params, pl plan, marker string) *run {
	t.Helper()
	r := &run{t: t, bin: bin, params: p, plan: pl, marker: marker,
		submitted: make([]int, len(pl.Tasks)), firstSub: make([]time.Duration, len(pl.Tasks)), killSent: make([]int, len(pl.Tasks)), killQueued: make([]int, len(pl.Tasks))}
	dir, err := os.MkdirTemp("", "task-job-history-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("HISTORY_KEEP") != "" {
			t.Logf("kept the run directory for a look: %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	r.dir = dir
	// cmd_dir must pass the jail's trust check: root's, not writable by
	// others. The marker directory inside it belongs to the task user.
	r.cmdDir = filepath.Join(dir, "cmd")
	markDir := filepath.Join(r.cmdDir, "marks")
	r.marks = filepath.Join(markDir, "log")
	for _, d := range []string{dir, r.cmdDir, markDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(markDir, nobodyUID, nobodyUID); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\n" +
		"# work.sh LINES SLEEP EXIT: marks its start and end, prints numbered lines.\n" +
		"echo \"$TASK_ID start $(date +%s%N)\" >> " + r.marks + "\n" +
		"i=1\n" +
		"while [ $i -le $1 ]; do echo \"line $i\"; i=$((i+1)); sleep $2; done\n" +
		"echo \"$TASK_ID end $(date +%s%N)\" >> " + r.marks + "\n" +
		"exit $3\n"
	if err := os.WriteFile(filepath.Join(r.cmdDir, "work.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	// The tasks record into cmd_dir, which the sandbox shows read-only
	// unless a rule says otherwise.
	r.policy = filepath.Join(dir, "policy.hcl")
	pol := "rule \"work\" {\n  cmdline = \"work.sh\"\n  args = [\"[0-9]+\", \"[0-9.]+\", \"[0-9]+\"]\n  cmd_dir_writable = true\n}\n"
	if err := os.WriteFile(r.policy, []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}

	if p.Kafka {
		r.br = newKafkaBroker(t, filepath.Join(dir, "kafka"))
	} else {
		r.br = newRedisBroker(t)
	}
	r.brokerUp = true

	var cfgs []map[string]any
	for i := 0; i < pl.Executors; i++ {
		e := &executorProc{id: fmt.Sprintf("%s-e%d", marker, i)}
		ip := "127.0.0.1"
		if p.Netns != nil {
			e.netns, ip = p.Netns[i], p.BridgeIP
		}
		var addr string
		if target := r.br.target(); target != "" {
			px, err := tcpproxy.NewAt(ip, target)
			if err != nil {
				t.Fatal(err)
			}
			e.proxy, addr = px, px.Addr()
		}
		edir := filepath.Join(dir, e.id)
		e.logPath = filepath.Join(edir, "executor.log")
		e.audit = filepath.Join(edir, "audit.log")
		cfg := map[string]any{
			"cmd_dir":     r.cmdDir,
			"executor_id": e.id, "concurrency": p.Concurrency, "logs": true,
			"executor_ttl": p.TTL.String(), "kill_grace": "1s", "shutdown_grace": "1s",
			"spool_dir": filepath.Join(edir, "spool"), "audit_file": e.audit,
			"isolation": "on", "sandbox_init": bin.init, "policy_file": r.policy,
		}
		maps.Copy(cfg, r.br.keys(addr))
		e.cfg = filepath.Join(edir, "config.json")
		cfgs = append(cfgs, cfg)
		r.execs = append(r.execs, e)
	}
	if pl.Fleet != nil {
		r.setupFleet(cfgs)
	}
	for i, e := range r.execs {
		r.writeConfig(filepath.Dir(e.cfg), e.cfg, cfgs[i])
	}
	return r
}

// writeConfig writes cfg to path, in its own directory dir.
func (r *run) writeConfig(dir, path string, cfg map[string]any) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		r.t.Fatal(err)
	}
	raw, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// startExec starts one life of e and waits until it serves.
func (r *run) startExec(e *executorProc) error {
	logf, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	e.lives++
	fmt.Fprintf(logf, "=== life %d at +%v\n", e.lives, r.now().Round(time.Millisecond))
	start, _ := logf.Seek(0, 2)
	e.logStart = start
	args := e.args
	if args == nil {
		args = []string{"-config=" + e.cfg}
	}
	cmd := exec.Command(r.bin.exe, args...)
	if e.netns != "" {
		// nsenter enters only the network namespace (ip netns exec would
		// also remount /sys, hiding the cgroup trees) and execs, so the
		// PID is the executor's.
		cmd = exec.Command("nsenter", append([]string{"--net=/run/netns/" + e.netns, "--", r.bin.exe}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// The marker lets the leak scan tell this run's executors from anyone
	// else's; Pdeathsig takes them down with a crashed harness.
	cmd.Env = append(os.Environ(), "HISTORY_RUN="+r.marker)
	if r.params.Kafka {
		cmd.Env = append(cmd.Env, "GOTRACEBACK=all") // every goroutine in a stuck one's SIGQUIT dump
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	e.cmd, e.done, e.paused = cmd, make(chan struct{}), false
	e.expected.Store(false)
	done := e.done
	go func() {
		err := cmd.Wait()
		e.exit = err
		if !e.expected.Load() {
			r.record("exited", "", e.id, fmt.Sprintf("exited on its own (%v) in life %d", err, e.lives))
		}
		close(done)
	}()
	// An executor started during a Redis (or broker) outage cannot serve
	// before it is back, and must not have to: once it says it is waiting
	// for it, the plan goes on (and brings it back).
	down := !r.brokerUp
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(e.logPath)
		if int64(len(b)) > start {
			l := string(b[start:])
			if strings.Contains(l, e.readyLine()) || down && strings.Contains(l, r.br.waiting()) {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("executor %s exited before serving (%v); its log: %s", e.id, e.exit, e.logPath)
		case <-time.After(20 * time.Millisecond): // polling its log
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("executor %s did not serve within 20s; its log: %s", e.id, e.logPath)
		}
	}
}

func (e *executorProc) readyLine() string {
	if e.ready != "" {
		return e.ready
	}
	return "executor serving"
}

// serving reports whether the current life has logged that it serves.
func (e *executorProc) serving() bool {
	return strings.Contains(e.lifeLog(), e.readyLine())
}

// lifeLog is the current life's log.
func (e *executorProc) lifeLog() string {
	b, _ := os.ReadFile(e.logPath)
	if int64(len(b)) <= e.logStart {
		return ""
	}
	return string(b[e.logStart:])
}

// signal sends sig to the executor the harness started (by its PID).
func (e *executorProc) signal(sig syscall.Signal) {
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		e.expected.Store(true)
	}
	if e.alive() {
		_ = e.cmd.Process.Signal(sig)
	}
}

// waitExit waits for the current life to end.
func (e *executorProc) waitExit(d time.Duration) bool {
	if e.cmd == nil {
		return true
	}
	select {
	case <-e.done:
		return true
	case <-time.After(d):
		return false
	}
}

// poll copies new TaskLog messages from the logs list until stopPoll.
func (r *run) poll() {
	defer close(r.pollDone)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		r.fetch(false)
		select {
		case <-r.stopPoll:
			r.fetch(true)
			return
		case <-tick.C:
		}
	}
}

func (r *run) fetch(final bool) {
	msgs, err := r.br.fetch(final)
	if err != nil && len(msgs) == 0 {
		return // down or slow: the server keeps everything
	}
	at := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		var l task.Log
		if err := json.Unmarshal([]byte(m.Raw), &l); err != nil {
			l = task.Log{ID: "?", MsgType: "unparseable"}
		}
		r.recv = append(r.recv, received{At: at, Part: m.Part, Pos: m.Pos, Log: l, Raw: m.Raw})
	}
}

// taskJSON is the exact message a client pushes for s; a duplicate pushes
// the same bytes.
func (s taskSpec) taskJSON() string {
	cmdline := "work.sh"
	if s.Invalid {
		cmdline = "../work.sh"
	}
	raw, _ := json.Marshal(task.Task{ID: s.ID, Type: "history", Tube: s.Tube, Constraints: s.Constraints, Task: task.Spec{
		Cmdline: cmdline,
		CmdArgs: []string{fmt.Sprint(s.Lines), fmt.Sprintf("%.3f", s.Sleep.Seconds()), fmt.Sprint(s.Exit)},
		Timeout: task.Seconds(s.Timeout),
	}})
	return string(raw)
}

// list is the list a client pushes s to: its tube's (README, "Tubes"),
// or the untubed list for an old client's.
func (s taskSpec) list() string {
	if s.Tube == "" || s.ViaQ {
		return queueName
	}
	return queueName + ":tube:" + s.Tube
}

// killJSON is the kill message a client sends for id.
func killJSON(id string) string { return fmt.Sprintf(`{"id":%q,"type":"kill"}`, id) }
