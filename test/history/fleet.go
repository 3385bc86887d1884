package history

import (
	"fmt"
	"math/rand"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/taskjob/task-job/registry/etcdreg/etcdtest"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/tcpproxy"
)

// A fleet history runs the executors `dispatched`, registered in a real
// etcd with tubes and labels, behind two `task-job dispatcher` processes;
// its tasks carry tubes and constraints. Beyond the lifecycle invariants
// it checks that each task ran only on an executor eligible for it, and
// that a task nobody can take stays queued, with its reason, and no done.

// registryTTL is the executors' and the dispatchers' etcd lease (the
// registry's minimum): the leader pause of the plan outlasts it.
const registryTTL = 2 * time.Second

// fleetTubes are the tubes a fleet history's tasks and executors use;
// nobodyTube is served by no executor, and label zone=c is on none.
var fleetTubes = []string{"", "build", "deploy", "gpu"}

const nobodyTube = "nobody"

// fleetPlan is what a seed decides of the fleet: each executor's tubes
// and labels.
type fleetPlan struct {
	Tubes  [][]string
	Labels []map[string]string
}

func drawFleet(rng *rand.Rand, executors int) *fleetPlan {
	fp := &fleetPlan{}
	for i := 0; i < executors; i++ {
		var tubes []string
		for _, t := range rng.Perm(len(fleetTubes)) {
			if rng.Intn(3) > 0 {
				tubes = append(tubes, fleetTubes[t])
			}
		}
		if len(tubes) == 0 {
			tubes = []string{fleetTubes[rng.Intn(len(fleetTubes))]}
		}
		zone := "a"
		if (i+rng.Intn(2))%2 == 1 {
			zone = "b"
		}
		fp.Tubes = append(fp.Tubes, tubes)
		fp.Labels = append(fp.Labels, map[string]string{"zone": zone, "slot": fmt.Sprint(i)})
	}
	return fp
}

// route draws s's tube and constraints: mostly ones some executor of the
// plan can take, some that none can (a tube nobody serves, a label
// nobody has).
func (fp *fleetPlan) route(rng *rand.Rand, s *taskSpec) {
	s.Tube = fleetTubes[rng.Intn(len(fleetTubes))]
	switch rng.Intn(3) {
	case 1:
		s.Constraints = map[string]string{"zone": "a"}
	case 2:
		s.Constraints = map[string]string{"zone": "b"}
	}
	switch rng.Intn(16) {
	case 0:
		s.Tube = nobodyTube
	case 1:
		s.Constraints = map[string]string{"zone": "c"}
	}
	s.ViaQ = s.Tube != "" && rng.Intn(4) == 0
}

// eligible reports whether executor i of the plan may run s.
func (fp *fleetPlan) eligible(i int, s taskSpec) bool {
	serves := false
	for _, t := range fp.Tubes[i] {
		serves = serves || t == s.Tube
	}
	if !serves {
		return false
	}
	for k, v := range s.Constraints {
		if fp.Labels[i][k] != v {
			return false
		}
	}
	return true
}

// placeable reports whether some executor of the plan may run s.
func (fp *fleetPlan) placeable(s taskSpec) bool {
	for i := range fp.Tubes {
		if fp.eligible(i, s) {
			return true
		}
	}
	return false
}

// waitsForever reports whether task i must end the history queued: a
// fleet task nobody can take, not killed while queued (a kill sent ahead
// of it is applied by the claim that never comes, or, if an executor
// handles the kill only once the task is queued, it takes the task out:
// checkFleet accepts either).
func (r *run) waitsForever(i int) bool {
	fp := r.plan.Fleet
	return fp != nil && !fp.placeable(r.plan.Tasks[i]) && r.killQueued[i] == 0
}

// startFleet starts the etcd server and the two dispatcher replicas, and
// waits for one to lead.
func (r *run) startFleet() error {
	for _, d := range r.disps {
		if err := r.startExec(d); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for r.leader() == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("no dispatcher replica leads 30s after their start")
		}
		time.Sleep(20 * time.Millisecond) // polling their logs
	}
	return nil
}

// setupFleet adds the fleet's parts to the executors' configs and
// prepares the dispatchers (called by newRun).
func (r *run) setupFleet(cfgs []map[string]any) {
	etcd := etcdtest.Start(r.t)
	r.etcd = etcd.Endpoint()
	fp := r.plan.Fleet
	endpoint := r.etcd
	if r.params.Netns != nil {
		px, err := tcpproxy.NewAt(r.params.BridgeIP, r.etcd)
		if err != nil {
			r.t.Fatal(err)
		}
		r.t.Cleanup(px.Close)
		endpoint = px.Addr()
	}
	for i, cfg := range cfgs {
		cfg["registry"] = "etcd://" + endpoint
		cfg["registry_ttl"] = registryTTL.String()
		cfg["dispatched"] = true
		cfg["tubes"] = fp.Tubes[i]
		cfg["labels"] = fp.Labels[i]
	}
	for i := 0; i < 2; i++ {
		d := &executorProc{id: fmt.Sprintf("%s-d%d", r.marker, i), ready: "dispatcher replica started"}
		dir := filepath.Join(r.dir, d.id)
		d.logPath = filepath.Join(dir, "dispatcher.log")
		d.cfg = filepath.Join(dir, "config.json")
		d.args = []string{"dispatcher", "-config=" + d.cfg}
		r.writeConfig(dir, d.cfg, map[string]any{
			"redis_addr": r.br.target(), "queue_name": queueName, "cmd_dir": r.cmdDir,
			"registry": "etcd://" + r.etcd, "registry_ttl": registryTTL.String(),
		})
		r.disps = append(r.disps, d)
	}
}

const leadingLine = "dispatcher: leading"

// leader is the replica that leads now, as its current life's log says
// (its last leading line after its last step-down), or nil.
func (r *run) leader() *executorProc {
	for _, d := range r.disps {
		if !d.alive() || d.paused {
			continue
		}
		l := d.lifeLog()
		if i := strings.LastIndex(l, leadingLine); i >= 0 && !strings.Contains(l[i:], "no longer leading") {
			return d
		}
	}
	return nil
}

// applyFleet applies the dispatcher ops of the plan.
func (r *run) applyFleet(o op) error {
	switch o.Kind {
	case "leader-kill":
		d := r.leader()
		if d == nil {
			r.record("no-leader", "", "", "no replica leads: nothing SIGKILLed")
			return nil
		}
		d.signal(syscall.SIGKILL)
		d.waitExit(10 * time.Second)
		r.record("leader-sigkill", "", d.id, "")
	case "dispatcher-start":
		for _, d := range r.disps {
			if d.alive() {
				continue
			}
			if err := r.startExec(d); err != nil {
				r.record("start-failed", "", d.id, err.Error())
				continue
			}
			r.record("start", "", d.id, o.Note)
		}
	case "leader-stop":
		d := r.leader()
		if d == nil {
			r.record("no-leader", "", "", "no replica leads: nothing SIGSTOPped")
			return nil
		}
		d.signal(syscall.SIGSTOP)
		d.paused = true
		r.record("leader-sigstop", "", d.id, fmt.Sprintf("for %v, %s", o.Arg.Round(time.Millisecond), o.Note))
	case "dispatcher-cont":
		for _, d := range r.disps {
			if d.paused {
				d.signal(syscall.SIGCONT)
				d.paused = false
				r.record("sigcont", "", d.id, "")
			}
		}
	default:
		return fmt.Errorf("history: unknown op %q", o.Kind)
	}
	return nil
}

// readWaiting asks `task-job status` about every task that must still
// wait, and keeps what it says, for check.
func (r *run) readWaiting() {
	if r.plan.Fleet == nil {
		return
	}
	r.waiting = map[string]string{}
	// The leader writes a reason when it looks past the task; give it a
	// moment after the last fault healed.
	deadline := time.Now().Add(5 * time.Second)
	for i, s := range r.plan.Tasks {
		if !r.waitsForever(i) || r.submitted[i] == 0 {
			continue
		}
		for {
			out, _ := exec.Command(r.bin.exe, "status", "-config="+r.execs[0].cfg, s.ID).CombinedOutput()
			r.waiting[s.ID] = strings.TrimSpace(string(out))
			if waitingReason(r.waiting[s.ID]) != "" || r.killSent[i] > 0 && strings.Contains(r.waiting[s.ID], task.KilledBeforeStart) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond) // polling the status
		}
	}
}

// waitingReason is the reason `task-job status` gives for a queued task,
// or "".
func waitingReason(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if w, ok := strings.CutPrefix(l, "waiting:"); ok {
			return strings.TrimSpace(w)
		}
	}
	if strings.Contains(out, "no live executor serves") {
		return out
	}
	return ""
}

// checkFleet adds the fleet's invariants: each message about a task that
// only its runner sends came from an executor eligible for it; a task
// nobody can take has no done, never ran, and status says why it waits.
func (r *run) checkFleet(byID map[string][]received, starts map[string]int, add func(inv, id, f string, a ...any)) {
	fp := r.plan.Fleet
	index := map[string]int{}
	for i, e := range r.execs {
		index[e.id] = i
	}
	for i, s := range r.plan.Tasks {
		bad := map[string]bool{}
		for _, m := range byID[s.ID] {
			ran := m.Log.Executor
			switch {
			case m.Log.MsgType == task.MsgStdout || m.Log.MsgType == task.MsgStderr:
			case m.Log.MsgType != task.MsgDone || m.Log.Result == nil:
				continue
			case m.Log.Status == task.Lost:
				// A peer reports a dead executor's task; the dead one ran it.
				mm := diedRe.FindStringSubmatch(m.Log.Reason)
				if mm == nil {
					continue
				}
				ran = mm[1]
			case m.Log.Status == task.Killed && strings.Contains(m.Log.Reason, "before it started"):
				continue // whoever handled the kill: it never ran
			}
			if j, ok := index[ran]; ok && !fp.eligible(j, s) && !bad[ran] {
				bad[ran] = true
				add(InvEligible, s.ID, "%s %s on %s (tubes %q, labels %v), but the task asks tube %q, constraints %v", m.Log.MsgType, statusOf(m.Log), ran, fp.Tubes[j], fp.Labels[j], s.Tube, s.Constraints)
			}
		}
		if !r.waitsForever(i) || r.submitted[i] == 0 {
			continue
		}
		if r.killSent[i] > 0 && killedUnrun(byID[s.ID]) {
			// A kill sent ahead of it but handled once it was queued takes
			// it out of its list, as a kill sent after its submit does.
			continue
		}
		if n := len(byID[s.ID]); n > 0 {
			add(InvWaits, s.ID, "nobody can take it (tube %q, constraints %v), yet %d messages, the first %s %s from %s", s.Tube, s.Constraints, n, byID[s.ID][0].Log.MsgType, statusOf(byID[s.ID][0].Log), byID[s.ID][0].Log.Executor)
		}
		if starts[s.ID] > 0 {
			add(InvWaits, s.ID, "nobody can take it, yet its script started")
		}
		if waitingReason(r.waiting[s.ID]) == "" {
			add(InvWaits, s.ID, "nobody can take it (tube %q, constraints %v), but status gives no reason: %q", s.Tube, s.Constraints, r.waiting[s.ID])
		}
	}
}

// statusOf is a done's status, "" for other messages (which have no Result).
func statusOf(l task.Log) task.State {
	if l.Result == nil {
		return ""
	}
	return l.Status
}

// killedUnrun reports whether msgs are one `killed before it started`
// done and nothing else.
func killedUnrun(msgs []received) bool {
	if len(msgs) != 1 {
		return false
	}
	l := msgs[0].Log
	return l.MsgType == task.MsgDone && l.Result != nil && l.Status == task.Killed && l.Reason == task.KilledBeforeStart
}

// fleetSummary describes the plan's fleet for a failure's report.
func (fp *fleetPlan) String() string {
	var parts []string
	for i := range fp.Tubes {
		keys := make([]string, 0, len(fp.Labels[i]))
		for k := range fp.Labels[i] {
			keys = append(keys, k+"="+fp.Labels[i][k])
		}
		sort.Strings(keys)
		parts = append(parts, fmt.Sprintf("e%d tubes %q labels %v", i, fp.Tubes[i], keys))
	}
	return strings.Join(parts, "; ")
}
