package history

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/taskjob/task-job/task"
)

// doneDeadline bounds the wait, once every fault is healed, for every
// accepted task's done. Peers need about two executor_ttl to declare a
// death; the rest is for tasks still queued behind others.
const doneDeadline = 25 * time.Second

// execute runs the plan: start everything, apply each op at its time, heal
// everything, wait for the dones, stop the executors gracefully, and
// collect what the host shows. It returns harness errors (not invariant
// violations: those are check's).
func (r *run) execute() error {
	r.t0 = time.Now()
	for _, e := range r.execs {
		if err := r.startExec(e); err != nil {
			return err
		}
	}
	if r.plan.Fleet != nil {
		if err := r.startFleet(); err != nil {
			return err
		}
	}
	r.t0 = time.Now() // plan times count from here
	for _, e := range append(r.execs, r.disps...) {
		r.record("start", "", e.id, "")
	}
	r.stopPoll, r.pollDone = make(chan struct{}), make(chan struct{})
	go r.poll()
	defer func() {
		select {
		case <-r.pollDone:
		default:
			close(r.stopPoll)
			<-r.pollDone
		}
	}()

	for _, o := range r.plan.Ops {
		if d := o.At - r.now(); d > 0 {
			time.Sleep(d) // the workload's own schedule
		}
		if err := r.apply(o); err != nil {
			return err
		}
	}
	if err := r.healAll(); err != nil {
		return err
	}
	r.waitDones()
	r.readWaiting()
	r.stopAll()
	close(r.stopPoll)
	<-r.pollDone
	return nil
}

func (r *run) apply(o op) error {
	switch o.Kind {
	case "submit", "kill":
		s := r.plan.Tasks[o.Task]
		var err error
		if o.Kind == "kill" {
			err = r.br.kill(s.ID)
		} else {
			err = r.br.submit(s)
		}
		note := o.Note
		if err != nil {
			// The harness talks to the server directly and does one thing
			// at a time: a failed push never reached a server that was down.
			r.record(o.Kind+"-refused", s.ID, "", err.Error())
			return nil
		}
		r.mu.Lock()
		if o.Kind == "submit" {
			if r.submitted[o.Task] == 0 {
				r.firstSub[o.Task] = r.now()
			}
			r.submitted[o.Task]++
			if note == "" {
				note = fmt.Sprintf("lines=%d sleep=%v exit=%d timeout=%d invalid=%v", s.Lines, s.Sleep, s.Exit, s.Timeout, s.Invalid)
				if r.plan.Fleet != nil {
					note += fmt.Sprintf(" tube=%q constraints=%v via-Q=%v", s.Tube, s.Constraints, s.ViaQ)
				}
			}
		} else {
			r.killSent[o.Task]++
			if r.submitted[o.Task] > 0 {
				r.killQueued[o.Task]++
			}
		}
		r.mu.Unlock()
		r.record(o.Kind, s.ID, "", note)
	case "sigkill":
		e := r.execs[o.Exec]
		e.signal(syscall.SIGKILL)
		e.waitExit(10 * time.Second)
		r.record("sigkill", "", e.id, "")
	case "term":
		e := r.execs[o.Exec]
		e.signal(syscall.SIGTERM)
		r.record("sigterm", "", e.id, "")
		if !e.waitExit(15 * time.Second) {
			r.record("stuck", "", e.id, "did not exit within 15s of SIGTERM")
		}
	case "start":
		e := r.execs[o.Exec]
		if e.alive() {
			return nil
		}
		if err := r.startExec(e); err != nil {
			r.record("start-failed", "", e.id, err.Error())
			return nil
		}
		r.record("start", "", e.id, o.Note)
	case "stop":
		e := r.execs[o.Exec]
		if e.alive() {
			e.signal(syscall.SIGSTOP)
			e.paused = true
			r.record("sigstop", "", e.id, fmt.Sprintf("for %v, %s", o.Arg.Round(time.Millisecond), o.Note))
		}
	case "cont":
		e := r.execs[o.Exec]
		if e.paused {
			e.signal(syscall.SIGCONT)
			e.paused = false
			r.record("sigcont", "", e.id, "")
		}
	case "redis-stop", "redis-kill", "broker-stop":
		r.br.stop(o.Kind == "redis-kill")
		r.brokerUp = false
		r.record(o.Kind, "", "", "")
	case "redis-start", "broker-start":
		r.br.restart()
		r.brokerUp = true
		r.record(o.Kind, "", "", "")
	case "cut":
		r.execs[o.Exec].proxy.Cut()
		r.record("cut", "", r.execs[o.Exec].id, "")
	case "delay":
		r.execs[o.Exec].proxy.SetDelay(o.Arg)
		r.record("delay", "", r.execs[o.Exec].id, o.Arg.String())
	case "partition":
		r.execs[o.Exec].proxy.Partition()
		r.record("partition", "", r.execs[o.Exec].id, fmt.Sprintf("for %v", o.Arg.Round(time.Millisecond)))
	case "heal":
		r.execs[o.Exec].proxy.Heal()
		r.record("heal", "", r.execs[o.Exec].id, "")
	default:
		return r.applyFleet(o)
	}
	return nil
}

// healAll ends every fault the plan left open (it closes its own, but a
// harness error path may not have run them).
func (r *run) healAll() error {
	if !r.brokerUp {
		r.br.restart()
		r.brokerUp = true
		r.record(r.br.name()+"-start", "", "", "at the end")
	}
	for _, e := range append(r.execs, r.disps...) {
		if e.proxy != nil {
			e.proxy.Heal()
		}
		if e.paused {
			e.signal(syscall.SIGCONT)
			e.paused = false
			r.record("sigcont", "", e.id, "at the end")
		}
		if !e.alive() {
			if err := r.startExec(e); err != nil {
				r.record("start-failed", "", e.id, err.Error()+" (at the end, "+r.br.name()+" up)")
				continue
			}
			r.record("start", "", e.id, "at the end")
		}
	}
	// One started during an outage serves once it reaches Redis (its wait
	// between attempts grows to 15 s); only then has it cleaned up what
	// its previous life left.
	deadline := time.Now().Add(20 * time.Second)
	for _, e := range append(r.execs, r.disps...) {
		for e.alive() && !e.serving() && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond) // polling its log
		}
		if e.alive() && !e.serving() {
			r.record("stuck", "", e.id, "not serving 20s after every fault was healed")
		}
	}
	return nil
}

// waitDones waits until every accepted task has a done, or doneDeadline.
func (r *run) waitDones() {
	wait := doneDeadline
	if r.params.DoneWait > 0 {
		wait = r.params.DoneWait
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if len(r.missingDones()) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond) // polling the recorded history
	}
	r.record("deadline", "", "", fmt.Sprintf("still no done for %v after %v", r.missingDones(), wait))
}

func (r *run) missingDones() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	has := map[string]bool{}
	for _, m := range r.recv {
		if m.Log.MsgType == task.MsgDone {
			has[m.Log.ID] = true
		}
	}
	var miss []string
	for i, s := range r.plan.Tasks {
		if r.submitted[i] > 0 && !has[s.ID] && !r.waitsForever(i) {
			miss = append(miss, s.ID)
		}
	}
	return miss
}

// stopAll stops every executor gracefully, as an operator would; one that
// does not exit in time is SIGKILLed (by the PID the harness started) and
// recorded as stuck.
func (r *run) stopAll() {
	var up []*executorProc
	for _, e := range append(r.execs, r.disps...) {
		if e.alive() {
			up = append(up, e)
			e.signal(syscall.SIGTERM)
			r.record("sigterm", "", e.id, "the final graceful stop")
		}
	}
	for _, e := range up {
		if !e.waitExit(20 * time.Second) {
			if r.params.Kafka {
				// Where it hangs is the first question: a Go program dumps
				// its goroutines into its log on SIGQUIT, and exits.
				r.record("stuck", "", e.id, "did not exit within 20s of SIGTERM; SIGQUIT for its goroutines (in its log), then SIGKILLed")
				e.signal(syscall.SIGQUIT)
				e.waitExit(5 * time.Second)
			} else {
				r.record("stuck", "", e.id, "did not exit within 20s of SIGTERM; SIGKILLed")
			}
			e.signal(syscall.SIGKILL)
			e.waitExit(10 * time.Second)
			continue
		}
		note := "exit 0"
		if e.exit != nil {
			note = e.exit.Error()
		}
		r.record("stopped", "", e.id, note)
	}
	for _, e := range r.execs {
		if e.proxy != nil {
			e.proxy.Close()
		}
	}

}

// leftovers are what the host shows after the graceful stop.
type leftovers struct {
	procs   []string // "pid: why"
	cgroups []string
	audit   map[string]string // executor id -> verify failure
}

// inspect looks at /proc, the cgroup trees and the audit files, and then
// cleans up what it may: processes it can prove are this run's (their
// environment carries the run's marker), and this run's executors' cgroups.
func (r *run) inspect() leftovers {
	var lo leftovers
	lo.audit = map[string]string{}
	for _, pid := range r.runProcesses() {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		lo.procs = append(lo.procs, fmt.Sprintf("%d: %s", pid, strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")))
	}
	for _, e := range r.execs {
		lo.cgroups = append(lo.cgroups, cgroupsOf(e.id)...)
		out, err := exec.Command(r.bin.exe, "audit", "-verify", "-file="+e.audit).CombinedOutput()
		if err != nil {
			lo.audit[e.id] = fmt.Sprintf("%v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	r.cleanup()
	return lo
}

// runProcesses lists live processes whose environment names this run: task
// processes (TASK_ID starts with the marker) and executors (HISTORY_RUN).
func (r *run) runProcesses() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, ent := range entries {
		var pid int
		if _, err := fmt.Sscanf(ent.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "environ"))
		if err != nil || len(env) == 0 { // gone, or a zombie
			continue
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if kv == "HISTORY_RUN="+r.marker || strings.HasPrefix(kv, "TASK_ID="+r.marker+"-") {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// cgroupRoots are where an executor's parent group can live: each v1
// controller hierarchy, the v2 tree (unified, or at the root on v2 hosts).
func cgroupRoots() []string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{"/sys/fs/cgroup"}
	}
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	var roots []string
	for _, e := range ents {
		if e.IsDir() {
			roots = append(roots, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	return roots
}

// cgroupsOf lists the cgroups left under the executor's parent group
// (task-job-<id>) in every hierarchy. After a graceful stop there must be
// none: the parent itself is allowed, its children (tasks' groups and
// spares) are not.
func cgroupsOf(id string) []string {
	var left []string
	for _, root := range cgroupRoots() {
		parent := filepath.Join(root, "task-job-"+id)
		ents, err := os.ReadDir(parent)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() {
				left = append(left, filepath.Join(parent, e.Name()))
			}
		}
	}
	return left
}

// cleanup kills the run's leftover processes by PID (each proven by its
// environment) and removes the run's executors' cgroups, children first.
func (r *run) cleanup() {
	for i := 0; i < 50; i++ {
		pids := r.runProcesses()
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond) // polling for the kills to land
	}
	for _, e := range r.execs {
		for _, root := range cgroupRoots() {
			parent := filepath.Join(root, "task-job-"+e.id)
			ents, _ := os.ReadDir(parent)
			for _, c := range ents {
				if c.IsDir() {
					_ = os.Remove(filepath.Join(parent, c.Name()))
				}
			}
			_ = os.Remove(parent)
		}
	}
}
