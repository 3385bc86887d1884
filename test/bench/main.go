// Command bench measures task-job on this machine against raw baselines
// taken in the same run, and prints a Markdown table. Run it from the
// repository root as root (tasks are only isolated for root):
//
//	go run ./test/bench            # full run, a few minutes
//	go run ./test/bench -quick     # smoke run for CI, under a minute
//	go run ./test/bench -out bench.md
//
// Everything runs in this process against a private redis-server: the
// executor (as the task-job binary wires it), the clients that submit
// tasks, and the consumers that read results. The baselines are what the
// same machine does with no task-job in the way — a bare fork/exec, a bare
// BLPOP wake-up, a bare BLMOVE/exec/RPUSH loop, bare multi-value RPUSHes,
// and the other sandboxes installed here (unshare, bwrap, runc, crun) —
// so the ratios say what task-job costs, whatever the machine's speed.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/sandbox"
	"github.com/taskjob/task-job/sandbox/nsinit"
)

// config is how much to measure.
type config struct {
	quick        bool
	out          string
	latencyIters int             // one-at-a-time tasks per latency series
	floodTasks   int             // tasks per throughput measurement
	lines        int             // lines the chatty task prints
	isoIters     int             // start+wait runs per isolation series
	admitIters   int             // policy+signature+audit rounds
	only         map[string]bool // sections to run; empty: all
}

// sections are the parts of the run that -only can pick.
var sections = []string{"latency", "throughput", "lines", "kafka", "isolation", "api", "fleet", "admission"}

// want reports whether section is to be measured.
func (c config) want(section string) bool { return len(c.only) == 0 || c.only[section] }

// Targets the product sets itself.
const (
	dispatchTarget  = 2 * time.Millisecond // dispatch p50, RPUSH to the task's first instruction
	throughputShare = 0.80                 // of raw exec.Command throughput
	linesPerSec     = 300_000
	// doneOverDispatch is the most RPUSH → done may exceed the dispatch
	// of a task that exits at once, at p50, with the sandbox.
	doneOverDispatch = 500 * time.Microsecond
	sandboxShare     = 0.7 // tasks/s with the sandbox, of without, at concurrency 2 and 4
)

func main() {
	// The self re-exec fallback the benchmark measures starts this binary
	// as the sandbox helper: it must do the helper's work and nothing else.
	if filepath.Base(os.Args[0]) == sandbox.InitName {
		nsinit.Main()
	}
	var cfg config
	flag.BoolVar(&cfg.quick, "quick", false, "fewer iterations: a smoke run for CI (under a minute)")
	flag.StringVar(&cfg.out, "out", "", "also write the report to this file")
	only := flag.String("only", "", "measure only these comma-separated sections ("+strings.Join(sections, ", ")+"); default all")
	flag.Parse()
	if *only != "" {
		cfg.only = map[string]bool{}
		for _, s := range strings.Split(*only, ",") {
			if !slices.Contains(sections, s) {
				fmt.Fprintf(os.Stderr, "bench: -only: no section %q; there are %s\n", s, strings.Join(sections, ", "))
				os.Exit(2)
			}
			cfg.only[s] = true
		}
	}
	cfg.latencyIters, cfg.floodTasks, cfg.lines, cfg.isoIters, cfg.admitIters = 300, 2000, 1_000_000, 300, 5000
	if cfg.quick {
		cfg.latencyIters, cfg.floodTasks, cfg.lines, cfg.isoIters, cfg.admitIters = 60, 300, 200_000, 60, 1000
	}
	os.Exit(run(cfg))
}

// cleanup runs registered functions once, in reverse order, either at the
// end of run or when the benchmark is interrupted.
type cleanup struct {
	mu  sync.Mutex
	fns []func()
}

func (c *cleanup) add(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, f)
}

func (c *cleanup) run() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.fns) - 1; i >= 0; i-- {
		c.fns[i]()
	}
	c.fns = nil
}

func run(cfg config) int {
	var clean cleanup
	defer clean.run()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "bench: %v: stopping redis-server and removing temporary files\n", s)
		clean.run()
		os.Exit(130)
	}()

	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "bench", Level: hclog.Warn, Output: os.Stderr})
	// The Redis client's own per-attempt messages go to debug, i.e. nowhere.
	redisqueue.RouteClientLog(log.Named("redis"))

	tmp, err := os.MkdirTemp("", "task-job-bench-")
	if err != nil {
		return fail(err)
	}
	clean.add(func() { _ = os.RemoveAll(tmp) })

	b := &bench{cfg: cfg, tmp: tmp, log: log, loadStart: loadAvg()}
	progress("building stamp and preparing cmd_dir")
	if err := b.prepareCmdDir(); err != nil {
		return fail(err)
	}
	if b.redis, err = startRedis(tmp); err != nil {
		return fail(err)
	}
	clean.add(b.redis.stop)
	b.rdb = redis.NewClient(&redis.Options{Addr: b.redis.addr, PoolSize: 8})
	clean.add(func() { b.rdb.Close() })
	// Tasks run as "nobody" in the sandbox: it must be able to reach cmd_dir.
	if err := os.Chmod(tmp, 0o711); err != nil {
		return fail(err)
	}
	progress("building " + sandbox.InitName)
	if b.initPath, err = buildInit(tmp); err != nil {
		return fail(err)
	}
	// Each runner gets a cgroup parent of its own: New removes whatever
	// runs in groups it finds under its parent (a previous run's), and must
	// not reach another runner's tasks or those of a real executor.
	if b.runner, err = sandbox.New(sandbox.Options{Isolate: true, InitPath: b.initPath, CgroupName: "task-job-bench", Logger: log}); err != nil {
		return fail(err)
	}
	clean.add(func() { _ = b.runner.Close() })
	// No InitPath and no helper next to this binary: the runner re-executes
	// this binary (see main), which is what installing the helper saves.
	if b.reexec, err = sandbox.New(sandbox.Options{Isolate: true, CgroupName: "task-job-bench-reexec", Logger: log}); err != nil {
		return fail(err)
	}
	clean.add(func() { _ = b.reexec.Close() })
	if b.group, err = sandbox.New(sandbox.Options{Isolate: false, Logger: log}); err != nil {
		return fail(err)
	}

	ctx := context.Background()
	rep := &report{}
	b.measure(ctx, rep)

	var out strings.Builder
	b.header(ctx, &out)
	rep.write(&out)
	fmt.Print(out.String())
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(out.String()), 0o644); err != nil {
			return fail(err)
		}
	}
	if rep.failed {
		return 1
	}
	return 0
}

func progress(what string) { fmt.Fprintf(os.Stderr, "bench: %s…\n", what) }

// header says what machine and what isolation the figures are for.
func (b *bench) header(ctx context.Context, w io.Writer) {
	mode := "full"
	if b.cfg.quick {
		mode = "quick"
	}
	isolated := "no"
	if b.runner.Isolated() {
		isolated = "yes"
	}
	fmt.Fprintf(w, "## task-job benchmark (%s run, %s)\n\n", mode, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "- Machine: %s, %s\n", cpuInfo(), kernel())
	fmt.Fprintf(w, "- Go %s, redis-server %s (private, no persistence, loopback)\n", goVersion(), b.redis.version(ctx, b.rdb))
	fmt.Fprintf(w, "- Tasks isolated: %s. %s\n", isolated, b.runner.Describe())
	fmt.Fprintf(w, "- Load average (1, 5, 15 min): %s at the start, %s at the end (the machine is shared)\n", b.loadStart, loadAvg())
	fmt.Fprintf(w, "- Samples: %d per latency series (after %d warm-up), %d tasks per throughput run, %d log lines, %d sandbox runs, %d policy+audit rounds\n\n",
		b.cfg.latencyIters, warmup, b.cfg.floodTasks, b.cfg.lines, b.cfg.isoIters, b.cfg.admitIters)
}
