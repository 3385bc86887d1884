package history

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/taskjob/task-job/task"
)

// Invariant names, as reported and as counted.
const (
	InvAtMostOnce   = "ran-at-most-once"
	InvOneDone      = "exactly-one-done"
	InvNoDoneUnsent = "no-done-unless-accepted"
	InvNoAfterDone  = "no-output-after-done"
	InvStatus       = "status-agrees"
	InvOutput       = "output-complete-in-order"
	InvNoProcess    = "no-process-left"
	InvNoCgroup     = "no-cgroup-left"
	InvAudit        = "audit-chain-verifies"
	InvCleanStop    = "graceful-stop"
	InvStaysUp      = "executor-stays-up"
	// Fleet histories only.
	InvEligible = "ran-where-eligible"
	InvWaits    = "unplaceable-waits-queued"
)

// violation is one broken invariant.
type violation struct {
	Inv  string
	ID   string // task or executor id
	What string
}

func (v violation) String() string {
	if v.ID == "" {
		return fmt.Sprintf("%s: %s", v.Inv, v.What)
	}
	return fmt.Sprintf("%s [%s]: %s", v.Inv, v.ID, v.What)
}

var diedRe = regexp.MustCompile(`executor (\S+) died`)

// check turns the recorded history into the list of broken invariants.
func (r *run) check(lo leftovers) []violation {
	var vs []violation
	add := func(inv, id, f string, a ...any) {
		vs = append(vs, violation{Inv: inv, ID: id, What: fmt.Sprintf(f, a...)})
	}
	starts, ends, err := r.readMarks()
	if err != nil {
		add(InvAtMostOnce, "", "cannot read the marker file: %v", err)
	}
	byID := map[string][]received{}
	for _, m := range r.recv {
		byID[m.Log.ID] = append(byID[m.Log.ID], m)
	}
	for i, s := range r.plan.Tasks {
		msgs := byID[s.ID]
		var dones []received
		for _, m := range msgs {
			if m.Log.MsgType == task.MsgDone && !r.repeatedDone(dones, m) {
				dones = append(dones, m)
			}
		}
		if starts[s.ID] > 1 {
			add(InvAtMostOnce, s.ID, "its script started %d times (submitted %d times)", starts[s.ID], r.submitted[i])
		}
		if r.submitted[i] == 0 {
			if len(dones) > 0 {
				add(InvNoDoneUnsent, s.ID, "never accepted, yet %d done(s)", len(dones))
			}
			if starts[s.ID] > 0 {
				add(InvAtMostOnce, s.ID, "never accepted, yet it ran")
			}
			continue
		}
		if r.waitsForever(i) {
			continue // checkFleet's
		}
		if len(dones) != 1 {
			var sts []string
			for _, d := range dones {
				sts = append(sts, fmt.Sprintf("%s by %s at list position %d", d.Log.Status, d.Log.Executor, d.Pos))
			}
			add(InvOneDone, s.ID, "%d dones (want exactly 1): %v", len(dones), sts)
		}
		if len(dones) == 0 {
			continue
		}
		first := dones[0]
		for _, m := range msgs {
			if m.Part != first.Part {
				// Kafka: the logs topic is keyed by task id, so one task's
				// messages have one partition, and order, or none at all.
				add(InvNoAfterDone, s.ID, "%s (seq %d, from %s) in partition %d of the logs topic, its done in %d: no order between them", m.Log.MsgType, m.Log.Seq, m.Log.Executor, m.Part, first.Part)
				break
			}
			if m.Log.MsgType != task.MsgDone && m.Pos > first.Pos && !r.fencedLine(m, first) {
				add(InvNoAfterDone, s.ID, "%s line %q (seq %d, from %s) after its done (%s by %s)", m.Log.MsgType, m.Log.Data, m.Log.Seq, m.Log.Executor, first.Log.Status, first.Log.Executor)
				break
			}
		}
		for _, d := range dones {
			if why := r.statusProblem(i, d, starts[s.ID], ends[s.ID]); why != "" {
				add(InvStatus, s.ID, "%s", why)
			}
		}
		if why := outputProblem(s, msgs, first); why != "" {
			add(InvOutput, s.ID, "%s", why)
		}
	}
	if r.plan.Fleet != nil {
		r.checkFleet(byID, starts, add)
	}
	for _, p := range lo.procs {
		add(InvNoProcess, "", "left after the graceful stop: %s", p)
	}
	for _, g := range lo.cgroups {
		add(InvNoCgroup, "", "left after the graceful stop: %s", g)
	}
	ids := make([]string, 0, len(lo.audit))
	for id := range lo.audit {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		add(InvAudit, id, "%s", lo.audit[id])
	}
	for _, ev := range r.events {
		switch {
		case ev.Kind == "stuck" || (ev.Kind == "stopped" && ev.Note != "exit 0"):
			add(InvCleanStop, ev.Exec, "%s %s", ev.Kind, ev.Note)
		case ev.Kind == "exited" || ev.Kind == "start-failed":
			add(InvStaysUp, ev.Exec, "at %+.3fs: %s", ev.At.Seconds(), ev.Note)
		}
	}
	return vs
}

// repeatedDone reports whether done m repeats one of dones byte for byte
// and is to be counted once: over Kafka, a done a produce retry repeated
// after a lost reply carries the same content and seq, and readers keep
// the first per id (README, "Exactly one done"). Over Redis the script
// that ends a task publishes its done, once; every copy counts.
func (r *run) repeatedDone(dones []received, m received) bool {
	if !r.params.Kafka {
		return false
	}
	for _, d := range dones {
		if d.Raw == m.Raw {
			return true
		}
	}
	return false
}

// fencedLine reports whether line m, after the lost done first, is the
// one race the Kafka transport documents (README, "Output lines stop at
// the end"): the executor the done names as dead checked that it still
// ran the task, the peer's lost report came, and then its line. Only the
// executor named dead may send it; over Redis, never.
func (r *run) fencedLine(m, first received) bool {
	if !r.params.Kafka || first.Log.Result == nil || first.Log.Status != task.Lost {
		return false
	}
	dead := diedRe.FindStringSubmatch(first.Log.Reason)
	if dead == nil || m.Log.Executor != dead[1] {
		return false
	}
	r.mu.Lock()
	r.fenced++
	r.mu.Unlock()
	return true
}

// readMarks counts each id's start and end lines in the marker file.
func (r *run) readMarks() (starts, ends map[string]int, err error) {
	starts, ends = map[string]int{}, map[string]int{}
	b, err := os.ReadFile(r.marks)
	if os.IsNotExist(err) {
		return starts, ends, nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[1] {
		case "start":
			starts[f[0]]++
		case "end":
			ends[f[0]]++
		}
	}
	return starts, ends, err
}

// statusProblem says why done d does not agree with what happened to task
// i, or "" if it does.
func (r *run) statusProblem(i int, d received, started, ended int) string {
	s := r.plan.Tasks[i]
	l := d.Log
	if l.Result == nil {
		return "a done without a status"
	}
	if s.Invalid {
		// A kill that reaches it before its claim ends it first: killed
		// before it started is as true as rejected.
		killedFirst := l.Status == task.Killed && r.killSent[i] > 0 && strings.Contains(l.Reason, "before it started")
		if l.Status != task.Rejected && !killedFirst {
			return fmt.Sprintf("a refused cmdline ended %s (%s), want rejected", l.Status, l.Reason)
		}
		if started > 0 {
			return "a refused cmdline ran"
		}
		return ""
	}
	switch l.Status {
	case task.Succeeded:
		switch {
		case ended == 0:
			return fmt.Sprintf("succeeded, but its script never reached its end (started %d times)", started)
		case s.Exit != 0:
			return fmt.Sprintf("succeeded, but its script exits %d", s.Exit)
		}
	case task.Failed:
		if s.Exit == 0 || l.ExitCode != s.Exit || ended == 0 {
			return fmt.Sprintf("failed (%s, exit %d), but its script exits %d and reached its end %d times", l.Reason, l.ExitCode, s.Exit, ended)
		}
	case task.Timeout:
		if s.Timeout <= 0 {
			return fmt.Sprintf("timeout (%s), but it had none", l.Reason)
		}
	case task.Killed:
		if strings.Contains(l.Reason, "before it started") && started > 0 {
			return fmt.Sprintf("killed (%s), but its script ran", l.Reason)
		}
		if strings.Contains(l.Reason, "shut down") {
			if !r.hadEvent(l.Executor, r.firstSub[i], d.At, "sigterm") {
				return fmt.Sprintf("killed by a shutdown (%s), but %s was not sent SIGTERM while the task was in its hands", l.Reason, l.Executor)
			}
		} else if r.killSent[i] == 0 {
			return fmt.Sprintf("killed (%s), but no kill was sent for it", l.Reason)
		}
	case task.Lost:
		if strings.Contains(l.Reason, "lost its registry lease") {
			// It fenced itself: it was cut off from etcd past the lease.
			if !r.hadEvent(l.Executor, r.firstSub[i], d.At, "sigstop-past-lease") {
				return fmt.Sprintf("lost (%q), but %s was not paused past its registry lease while it had the task", l.Reason, l.Executor)
			}
			return ""
		}
		m := diedRe.FindStringSubmatch(l.Reason)
		if m == nil {
			return fmt.Sprintf("lost, but the reason names no executor: %q", l.Reason)
		}
		if !r.hadEvent(m[1], r.firstSub[i], d.At, "sigkill", "exited", "sigstop-past-ttl", "partition-past-ttl") {
			return fmt.Sprintf("lost (reported by %s: %q), but %s neither died nor was paused or cut off past executor_ttl after the task's submit", l.Executor, l.Reason, m[1])
		}
	case task.Rejected:
		return fmt.Sprintf("rejected (%s), but its task is valid", l.Reason)
	default:
		return fmt.Sprintf("unknown status %q", l.Status)
	}
	return ""
}

// hadEvent reports whether executor exec suffered one of kinds within
// [from, to]. "sigstop-past-ttl" and "partition-past-ttl" are a pause or a
// partition of at least executor_ttl.
func (r *run) hadEvent(exec string, from, to time.Duration, kinds ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if ev.Exec != exec || ev.At < from-10*time.Millisecond || ev.At > to {
			continue
		}
		for _, k := range kinds {
			switch k {
			case "sigstop-past-ttl", "partition-past-ttl":
				base := strings.TrimSuffix(k, "-past-ttl")
				if ev.Kind == base && pastTTL(ev.Note, r.params.TTL) {
					return true
				}
			case "sigstop-past-lease":
				if ev.Kind == "sigstop" && pastTTL(ev.Note, registryTTL) {
					return true
				}
			default:
				if ev.Kind == k {
					return true
				}
			}
		}
	}
	return false
}

// pastTTL reads the "for 3.2s" an event note starts with.
func pastTTL(note string, ttl time.Duration) bool {
	f := strings.Fields(strings.TrimPrefix(note, "for "))
	if len(f) == 0 {
		return false
	}
	d, err := time.ParseDuration(strings.TrimSuffix(f[0], ","))
	return err == nil && d >= ttl
}

// outputProblem checks the task's stdout lines: deduplicated by seq (a
// batch retried after an outage may repeat lines, same seq), they must be
// "line 1", "line 2", … in seq order; complete if it succeeded. Seqs are
// shared with stderr, so gaps between stdout seqs are fine.
func outputProblem(s taskSpec, msgs []received, done received) string {
	bySeq := map[uint64]string{}
	var seqs []uint64
	for _, m := range msgs {
		// stderr carries what the shell says when a kill ends its sleep
		// ("Terminated"); the numbered lines are stdout's.
		if m.Log.MsgType != task.MsgStdout {
			continue
		}
		if prev, ok := bySeq[m.Log.Seq]; ok {
			if prev != m.Log.Data {
				return fmt.Sprintf("seq %d delivered as %q and as %q", m.Log.Seq, prev, m.Log.Data)
			}
			continue
		}
		bySeq[m.Log.Seq] = m.Log.Data
		seqs = append(seqs, m.Log.Seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for k, q := range seqs {
		if want := fmt.Sprintf("line %d", k+1); bySeq[q] != want {
			return fmt.Sprintf("line %d of its output (seq %d) is %q, want %q (lines by seq: %v)", k+1, q, bySeq[q], want, linesBySeq(seqs, bySeq))
		}
	}
	if done.Log.Result != nil && done.Log.Status == task.Succeeded {
		if len(seqs) != s.Lines {
			return fmt.Sprintf("succeeded with %d of its %d lines", len(seqs), s.Lines)
		}
		if done.Log.Seq != 0 && len(seqs) > 0 && done.Log.Seq <= seqs[len(seqs)-1] {
			return fmt.Sprintf("its done has seq %d, not after its last line's %d", done.Log.Seq, seqs[len(seqs)-1])
		}
	}
	return ""
}

func linesBySeq(seqs []uint64, bySeq map[uint64]string) string {
	var b strings.Builder
	for _, q := range seqs {
		fmt.Fprintf(&b, "%d:%q ", q, bySeq[q])
	}
	return strings.TrimSpace(b.String())
}
