package history

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"
)

// The fleet at scale: five executors, each in a network namespace of its
// own (reaching Redis and etcd over a veth pair and a bridge, through the
// harness's proxies), one dispatcher pair, 10,000 trivial tasks across 4
// tubes and 2 label sets, with faults; the history's invariants are the
// fleet history's.

// scaleFleet is the scale run's fixed topology: every tube is served in
// both zones, so every task can be placed.
var scaleFleet = fleetPlan{
	Tubes: [][]string{{"", "build"}, {"deploy", "gpu"}, {"", "deploy"}, {"build", "gpu"}, {"gpu", "build", "deploy", ""}},
	Labels: []map[string]string{
		{"zone": "a"}, {"zone": "a"}, {"zone": "b"}, {"zone": "b"}, {"zone": "a"},
	},
}

// makeScalePlan draws n one-line tasks pushed over span, some duplicated
// and some killed, and faults on the executors and the dispatcher leader.
func makeScalePlan(seed int64, prefix string, n int, span time.Duration) plan {
	rng := rand.New(rand.NewSource(seed))
	fp := scaleFleet
	pl := plan{Seed: seed, Executors: len(fp.Tubes), Fleet: &fp}
	dur := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int63n(int64(hi-lo)+1)) }
	for i := 0; i < n; i++ {
		s := taskSpec{ID: fmt.Sprintf("%s-t%05d", prefix, i), Lines: 1, Tube: fleetTubes[i%len(fleetTubes)]}
		switch rng.Intn(3) {
		case 1:
			s.Constraints = map[string]string{"zone": "a"}
		case 2:
			s.Constraints = map[string]string{"zone": "b"}
		}
		s.ViaQ = s.Tube != "" && rng.Intn(10) == 0
		pl.Tasks = append(pl.Tasks, s)
		at := time.Millisecond + span*time.Duration(i)/time.Duration(n)
		pl.Ops = append(pl.Ops, op{At: at, Kind: "submit", Task: i})
		switch rng.Intn(100) {
		case 0:
			pl.Ops = append(pl.Ops, op{At: at + dur(0, 2*time.Second), Kind: "submit", Task: i, Note: "duplicate"})
		case 1:
			pl.Ops = append(pl.Ops, op{At: at + dur(0, time.Second), Kind: "kill", Task: i, Note: "while it is queued, moved or run"})
		}
	}
	// Faults spread over the span, one at a time per target.
	faults := []op{
		{Kind: "sigkill", Exec: 0}, {Kind: "leader-kill"}, {Kind: "stop", Exec: 1, Arg: 3 * time.Second, Note: "past executor_ttl"},
		{Kind: "cut", Exec: 2}, {Kind: "leader-stop", Arg: 2*registryTTL + registryTTL/2, Note: "past its lease"},
		{Kind: "sigkill", Exec: 3}, {Kind: "term", Exec: 4}, {Kind: "delay", Exec: 2, Arg: 100 * time.Millisecond},
	}
	for k, f := range faults {
		f.At = span * time.Duration(k+1) / time.Duration(len(faults)+1)
		pl.Ops = append(pl.Ops, f)
		switch f.Kind {
		case "sigkill", "term":
			pl.Ops = append(pl.Ops, op{At: f.At + dur(500*time.Millisecond, 1500*time.Millisecond), Kind: "start", Exec: f.Exec, Note: "restart"})
		case "leader-kill":
			pl.Ops = append(pl.Ops, op{At: f.At + time.Second, Kind: "dispatcher-start", Note: "restart after SIGKILL"})
		case "leader-stop":
			pl.Ops = append(pl.Ops, op{At: f.At + f.Arg, Kind: "dispatcher-cont"})
		case "stop":
			pl.Ops = append(pl.Ops, op{At: f.At + f.Arg, Kind: "cont", Exec: f.Exec})
		case "delay":
			pl.Ops = append(pl.Ops, op{At: f.At + 2*time.Second, Kind: "heal", Exec: f.Exec})
		}
	}
	sort.SliceStable(pl.Ops, func(i, j int) bool { return pl.Ops[i].At < pl.Ops[j].At })
	return pl
}

// netnsSet is the network namespaces, veth pairs and bridge one test
// made, removed by name when it ends.
type netnsSet struct {
	names    []string
	bridgeIP string
}

func ip(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// makeNetns creates n namespaces, each with a veth pair onto one bridge;
// the bridge's address is where the harness's proxies listen. Names and
// the /24 are derived from the PID, so runs beside each other do not meet.
func makeNetns(t testing.TB, n int) netnsSet {
	pid := os.Getpid()
	tag := fmt.Sprintf("tjh%d", pid%100000)
	subnet := fmt.Sprintf("10.213.%d", pid%250)
	set := netnsSet{bridgeIP: subnet + ".1"}
	br := tag + "b"
	t.Cleanup(func() {
		for i, ns := range set.names {
			_ = exec.Command("ip", "netns", "del", ns).Run()
			_ = exec.Command("ip", "link", "del", fmt.Sprintf("%sh%d", tag, i)).Run()
		}
		_ = exec.Command("ip", "link", "del", br).Run()
	})
	ip(t, "link", "add", br, "type", "bridge")
	ip(t, "addr", "add", set.bridgeIP+"/24", "dev", br)
	ip(t, "link", "set", br, "up")
	for i := 0; i < n; i++ {
		ns, host, peer := fmt.Sprintf("%s-%d", tag, i), fmt.Sprintf("%sh%d", tag, i), fmt.Sprintf("%sn%d", tag, i)
		ip(t, "netns", "add", ns)
		set.names = append(set.names, ns)
		ip(t, "link", "add", host, "type", "veth", "peer", "name", peer)
		ip(t, "link", "set", peer, "netns", ns)
		ip(t, "link", "set", host, "master", br, "up")
		ip(t, "-n", ns, "addr", "add", fmt.Sprintf("%s.%d/24", subnet, 10+i), "dev", peer)
		ip(t, "-n", ns, "link", "set", peer, "up")
		ip(t, "-n", ns, "link", "set", "lo", "up")
	}
	return set
}
