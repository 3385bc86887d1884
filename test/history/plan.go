package history

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"time"
)

// Fault classes; each can be switched on or off (flag -faults, env
// HISTORY_FAULTS) so a run can aim at one kind of trouble.
const (
	FaultDup       = "dup"       // the same task JSON pushed again, back to back or later
	FaultKill      = "kill"      // kill messages at every moment of a task's life
	FaultSIGKILL   = "sigkill"   // executor SIGKILLed, restarted later with the same id
	FaultPause     = "pause"     // executor SIGSTOPped (past executor_ttl or not), then SIGCONT
	FaultTerm      = "term"      // executor SIGTERMed (graceful stop), restarted later
	FaultRedis     = "redis"     // redis-server stopped or SIGKILLed, then restarted (Kafka: the broker, with its data)
	FaultCut       = "cut"       // every connection of one executor to Redis closed at once
	FaultDelay     = "delay"     // latency on one executor's link
	FaultPartition = "partition" // one executor's link holds all traffic for a while
	// The fleet's own (fleet histories only): the dispatcher leader
	// SIGKILLed and restarted, or SIGSTOPped past its lease and resumed.
	FaultLeaderKill  = "leaderkill"
	FaultLeaderPause = "leaderpause"
)

// AllFaults lists every class, in a fixed order for reports.
var AllFaults = []string{FaultDup, FaultKill, FaultSIGKILL, FaultPause, FaultTerm, FaultRedis, FaultCut, FaultDelay, FaultPartition, FaultLeaderKill, FaultLeaderPause}

// fleetOnly are the classes a history without a dispatcher has no target for.
var fleetOnly = map[string]bool{FaultLeaderKill: true, FaultLeaderPause: true}

// FaultSet is the set of enabled classes.
type FaultSet map[string]bool

// ParseFaults reads "all", "none" or a comma list; "all,-pause" subtracts.
func ParseFaults(s string) (FaultSet, error) {
	fs := FaultSet{}
	for _, w := range strings.Split(s, ",") {
		w = strings.TrimSpace(w)
		neg := strings.HasPrefix(w, "-")
		w = strings.TrimPrefix(w, "-")
		var names []string
		switch w {
		case "":
			continue
		case "none":
			fs = FaultSet{}
			continue
		case "all":
			names = AllFaults
		default:
			ok := false
			for _, f := range AllFaults {
				ok = ok || f == w
			}
			if !ok {
				return nil, fmt.Errorf("history: unknown fault class %q; known: all, none, %s (prefix - to leave one out)", w, strings.Join(AllFaults, ", "))
			}
			names = []string{w}
		}
		for _, n := range names {
			if neg {
				delete(fs, n)
			} else {
				fs[n] = true
			}
		}
	}
	return fs, nil
}

func (fs FaultSet) String() string {
	var on []string
	for _, f := range AllFaults {
		if fs[f] {
			on = append(on, f)
		}
	}
	if len(on) == 0 {
		return "none"
	}
	return strings.Join(on, ",")
}

// Params shape a history.
type Params struct {
	Executors   int
	Concurrency int
	TTL         time.Duration // executor_ttl
	Span        time.Duration // when operations are scheduled: [0, Span)
	Tasks       int           // tasks per history (a range is drawn around it)
	Faults      FaultSet
	// Fleet runs the executors dispatched, registered in etcd with tubes
	// and labels, behind a pair of dispatcher processes (fleet.go).
	Fleet bool
	// Netns, if set, names a network namespace per executor, which
	// reaches Redis and etcd through proxies on BridgeIP (scale.go).
	Netns    []string
	BridgeIP string
	// DoneWait replaces doneDeadline (a backlog of thousands of tasks).
	DoneWait time.Duration
	// Kafka runs the history over the Kafka transport on an in-process
	// broker (kafkabroker.go): no tubes, no fleet, no network faults.
	Kafka bool
}

// kafkaless are the classes a Kafka history cannot inject: its clients
// dial the address the broker advertises, past any proxy (kafkabroker.go).
var kafkaless = map[string]bool{FaultCut: true, FaultDelay: true, FaultPartition: true}

// taskSpec is one task the workload submits.
type taskSpec struct {
	ID      string
	Lines   int           // numbered output lines it prints
	Sleep   time.Duration // between lines
	Exit    int           // its exit status when it reaches its end
	Timeout int           // task.timeout, seconds; 0 = none
	Invalid bool          // a cmdline the jail refuses: must end rejected, never run
	// Fleet histories only: the task's tube and constraints, and whether
	// it is pushed to the untubed list all the same (an old client; the
	// dispatcher sends it on to its tube's list).
	Tube        string
	Constraints map[string]string
	ViaQ        bool
}

// runtime is how long the script takes if nothing interrupts it.
func (s taskSpec) runtime() time.Duration { return time.Duration(s.Lines) * s.Sleep }

// op is one scheduled operation of the workload.
type op struct {
	At   time.Duration
	Kind string // submit, kill, sigkill, start, stop, cont, term, redis-stop, redis-kill, redis-start, cut, delay, partition, heal
	Task int    // index into plan.Tasks, for submit and kill
	Exec int    // executor index
	Arg  time.Duration
	Note string // phase of a kill, or why
}

// plan is everything a seed decides.
type plan struct {
	Seed      int64
	Executors int // 1..Params.Executors: one executor alone is where two copies of a task meet
	Tasks     []taskSpec
	Ops       []op
	Fleet     *fleetPlan // nil unless Params.Fleet
}

// makePlan draws the workload and faults for seed. The executors' state is
// modelled so that every stop has its start and no two faults overlap on
// one executor; the plan always ends with everything healed and running.
func makePlan(seed int64, prefix string, p Params) plan {
	rng := rand.New(rand.NewSource(seed))
	pl := plan{Seed: seed, Executors: 1 + rng.Intn(p.Executors)}
	span := p.Span
	dur := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(rng.Int63n(int64(hi-lo)+1))
	}
	if p.Fleet {
		pl.Fleet = drawFleet(rng, pl.Executors)
	}
	n := p.Tasks/2 + rng.Intn(p.Tasks+1)
	bursts := []time.Duration{dur(0, span), dur(0, span), dur(0, span)}
	for i := 0; i < n; i++ {
		s := taskSpec{
			ID:    fmt.Sprintf("%s-t%02d", prefix, i),
			Lines: 1 + rng.Intn(8),
			Sleep: time.Duration(20+rng.Intn(30)) * 10 * time.Millisecond / 2,
		}
		switch r := rng.Intn(20); {
		case r == 0:
			s.Invalid = true
		case r <= 2:
			s.Exit = 3
		case r == 3:
			s.Timeout = 1
			s.Lines, s.Sleep = 8, 300*time.Millisecond
		}
		if pl.Fleet != nil {
			pl.Fleet.route(rng, &s)
		}
		pl.Tasks = append(pl.Tasks, s)
		ti := len(pl.Tasks) - 1
		// Half the tasks come in bursts, so slots fill and tasks queue.
		at := dur(0, span)
		if rng.Intn(2) == 0 {
			at = bursts[rng.Intn(len(bursts))] + dur(0, 100*time.Millisecond)
		}
		if at < time.Millisecond {
			at = time.Millisecond
		}
		pl.Ops = append(pl.Ops, op{At: at, Kind: "submit", Task: ti})
		if p.Faults[FaultDup] && rng.Intn(3) == 0 {
			switch rng.Intn(4) {
			case 3:
				// A longer task just before it and a copy just after: on an
				// executor with two free slots the copy waits at the head of
				// the queue and is taken the moment the first copy ends.
				long := taskSpec{ID: s.ID + "-long", Lines: 10, Sleep: 300 * time.Millisecond, Tube: s.Tube, Constraints: s.Constraints}
				pl.Tasks = append(pl.Tasks, long)
				pl.Ops = append(pl.Ops,
					op{At: at - time.Millisecond, Kind: "submit", Task: len(pl.Tasks) - 1, Note: "a longer task beside " + s.ID},
					op{At: at + 5*time.Millisecond, Kind: "submit", Task: ti, Note: "duplicate, queued behind a longer task"})
			case 0:
				pl.Ops = append(pl.Ops, op{At: at, Kind: "submit", Task: ti, Note: "duplicate, back to back"})
			case 1:
				// Queued behind a busy executor, a copy may be taken the
				// moment the first copy's slot frees; up to three copies.
				for c := 1 + rng.Intn(3); c > 0; c-- {
					pl.Ops = append(pl.Ops, op{At: at + dur(10*time.Millisecond, s.runtime()+50*time.Millisecond), Kind: "submit", Task: ti, Note: "duplicate, while the first may run"})
				}
			default:
				pl.Ops = append(pl.Ops, op{At: at + s.runtime() + dur(100*time.Millisecond, 4*time.Second), Kind: "submit", Task: ti, Note: "duplicate, after the first may have ended"})
			}
		}
		if p.Faults[FaultKill] && rng.Intn(10) < 3 {
			var k time.Duration
			var phase string
			switch rng.Intn(5) {
			case 0:
				k, phase = -dur(50*time.Millisecond, time.Second), "before its submit"
			case 1:
				k, phase = 0, "right after its submit (queued)"
			case 2:
				k, phase = dur(time.Millisecond, 40*time.Millisecond), "while it is taken"
			case 3:
				k, phase = dur(100*time.Millisecond, 100*time.Millisecond+s.runtime()), "while it runs"
			case 4:
				k, phase = s.runtime()+dur(300*time.Millisecond, 2*time.Second), "after it ended"
			}
			if at+k < 0 {
				k = -at
			}
			pl.Ops = append(pl.Ops, op{At: at + k, Kind: "kill", Task: ti, Note: phase})
		}
	}

	// Faults on executors and Redis. busyUntil keeps faults on one target
	// apart, so each stop is followed by its own start.
	var classes []string
	for _, f := range AllFaults {
		if p.Faults[f] && f != FaultDup && f != FaultKill && (p.Fleet || !fleetOnly[f]) && !(p.Kafka && kafkaless[f]) {
			classes = append(classes, f)
		}
	}
	busyUntil := make([]time.Duration, pl.Executors+2) // then Redis, then the dispatcher leader
	if len(classes) > 0 {
		nf := 2 + rng.Intn(4)
		for i := 0; i < nf; i++ {
			c := classes[rng.Intn(len(classes))]
			e := rng.Intn(pl.Executors)
			switch c {
			case FaultRedis:
				e = pl.Executors
			case FaultLeaderKill, FaultLeaderPause:
				e = pl.Executors + 1
			}
			at := dur(0, span)
			if at < busyUntil[e] {
				at = busyUntil[e]
			}
			var end time.Duration
			switch c {
			case FaultSIGKILL:
				end = at + dur(300*time.Millisecond, 2*time.Second)
				pl.Ops = append(pl.Ops, op{At: at, Kind: "sigkill", Exec: e}, op{At: end, Kind: "start", Exec: e, Note: "restart after SIGKILL"})
			case FaultPause:
				// Half the pauses outlast the liveness window (peers declare
				// the executor dead), half do not.
				d := dur(p.TTL/4, p.TTL/2)
				note := "shorter than executor_ttl"
				if rng.Intn(2) == 0 {
					d, note = dur(3*p.TTL, 5*p.TTL), "past executor_ttl"
				}
				end = at + d
				pl.Ops = append(pl.Ops, op{At: at, Kind: "stop", Exec: e, Arg: d, Note: note}, op{At: end, Kind: "cont", Exec: e})
			case FaultTerm:
				end = at + dur(500*time.Millisecond, 2*time.Second)
				pl.Ops = append(pl.Ops, op{At: at, Kind: "term", Exec: e}, op{At: end, Kind: "start", Exec: e, Note: "restart after SIGTERM"})
			case FaultRedis:
				kind, start := "redis-stop", "redis-start"
				if rng.Intn(2) == 0 {
					kind = "redis-kill"
				}
				if p.Kafka {
					// The in-process broker closes and a new one starts on its
					// data directory, at the same address.
					kind, start = "broker-stop", "broker-start"
				}
				end = at + dur(300*time.Millisecond, 2500*time.Millisecond)
				pl.Ops = append(pl.Ops, op{At: at, Kind: kind}, op{At: end, Kind: start})
			case FaultCut:
				end = at + 100*time.Millisecond
				pl.Ops = append(pl.Ops, op{At: at, Kind: "cut", Exec: e})
			case FaultDelay:
				d := dur(50*time.Millisecond, 300*time.Millisecond)
				end = at + dur(500*time.Millisecond, 3*time.Second)
				pl.Ops = append(pl.Ops, op{At: at, Kind: "delay", Exec: e, Arg: d}, op{At: end, Kind: "heal", Exec: e})
			case FaultLeaderKill:
				end = at + dur(300*time.Millisecond, 2*time.Second)
				pl.Ops = append(pl.Ops, op{At: at, Kind: "leader-kill"}, op{At: end, Kind: "dispatcher-start", Note: "restart after SIGKILL"})
			case FaultLeaderPause:
				// Past the leader's lease: the other replica leads, and the
				// resumed one's writes must be fenced.
				d := dur(registryTTL+registryTTL/2, 2*registryTTL+registryTTL/2)
				end = at + d
				pl.Ops = append(pl.Ops, op{At: at, Kind: "leader-stop", Arg: d, Note: "past its lease"}, op{At: end, Kind: "dispatcher-cont"})
			case FaultPartition:
				d := dur(p.TTL/4, p.TTL/2)
				if rng.Intn(2) == 0 {
					d = dur(3*p.TTL, 5*p.TTL)
				}
				end = at + d
				pl.Ops = append(pl.Ops, op{At: at, Kind: "partition", Exec: e, Arg: d}, op{At: end, Kind: "heal", Exec: e})
			}
			busyUntil[e] = end + 200*time.Millisecond
		}
	}
	sort.SliceStable(pl.Ops, func(i, j int) bool { return pl.Ops[i].At < pl.Ops[j].At })
	return pl
}
