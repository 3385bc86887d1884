package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/taskjob/task-job/executor"
	"github.com/taskjob/task-job/sandbox"
)

// row is one line of the table.
type row struct{ what, taskJob, baseline, ratio, target string }

// report collects rows; a measurement that fails becomes a row saying why
// and makes the run exit non-zero, but does not stop the others.
type report struct {
	rows   []row
	notes  []string
	failed bool
}

func (r *report) add(x row) { r.rows = append(r.rows, x) }

func (r *report) fail(what string, err error) {
	r.failed = true
	fmt.Fprintf(os.Stderr, "bench: %s: %v\n", what, err)
	// The message goes in a table cell: no pipes, no line breaks.
	msg := strings.NewReplacer("|", "/", "\n", " ").Replace(err.Error())
	r.add(row{what: what, taskJob: "error: " + msg, target: "MISSED"})
}

func (r *report) write(w io.Writer) {
	fmt.Fprintln(w, "| what | task-job | raw baseline | ratio | target |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, x := range r.rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", x.what, x.taskJob, x.baseline, x.ratio, x.target)
	}
	if len(r.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.notes {
			fmt.Fprintln(w, "- "+n)
		}
	}
}

// variant is one way task-job runs its tasks.
type variant struct {
	label  string // appended to the row's name
	suffix string // keeps list names and task ids of variants apart
	runner *sandbox.Runner
	// configure adds to the executor's options, encode writes a task's
	// message (default: unsigned, see taskJSON) and close releases what
	// the variant opened; all may be nil.
	configure func(*executor.Options)
	encode    func(id string) string
	close     func()
}

// variants returns task-job as configured by default (isolated where the
// host allows) and, when that differs, with isolation off: the gap between
// the two is the sandbox's share, the rest is the executor's own.
func (b *bench) variants() []variant {
	if !b.runner.Isolated() {
		return []variant{{runner: b.runner}}
	}
	return []variant{
		{label: ", sandbox on", runner: b.runner},
		{label: ", sandbox off (process group)", suffix: "-pg", runner: b.group},
	}
}

// measure runs every measurement in turn and fills rep. The baseline of each
// row is taken right next to it, so slow drift of this shared machine
// affects both sides of a ratio alike.
func (b *bench) measure(ctx context.Context, rep *report) {
	cfg := b.cfg

	if cfg.want("latency") {
		// Rows 1 and 2: dispatch and done latency, one task at a time.
		progress("dispatch latency: bare BLPOP wake-up")
		wake, errWake := b.blpopWake(ctx, cfg.latencyIters)
		progress("dispatch latency: bare fork/exec of stamp")
		execStamp, errExec := b.rawExecStamp(cfg.latencyIters)
		progress("done latency: bare BLMOVE → exec → RPUSH loop")
		bare, errBare := b.bareLoopDone(ctx, cfg.latencyIters)
		lats := make([]latencies, len(b.variants()))
		errLats := make([]error, len(lats))
		for i, v := range b.variants() {
			progress("dispatch and done latency: task-job" + v.label)
			lats[i], errLats[i] = b.taskJobLatency(ctx, v, cfg.latencyIters)
		}
		if last := len(lats) - 1; errLats[last] == nil {
			b.redisDispatch = lats[last].dispatch // transportVariant's
		}
		for i, v := range b.variants() {
			what := "Dispatch: RPUSH → task running (p50 / p99)" + v.label
			lat, errLat := lats[i], errLats[i]
			switch {
			case errWake != nil:
				rep.fail(what, fmt.Errorf("BLPOP baseline: %w", errWake))
			case errExec != nil:
				rep.fail(what, fmt.Errorf("fork/exec baseline: %w", errExec))
			case errLat != nil:
				rep.fail(what, errLat)
			default:
				over := lat.dispatch.p50() - execStamp.p50()
				rep.add(row{
					what:     what,
					taskJob:  lat.dispatch.String(),
					baseline: fmt.Sprintf("fork/exec %s; BLPOP wake-up %s", execStamp, wake),
					ratio:    ratio(float64(lat.dispatch.p50()), float64(execStamp.p50())),
					target: fmt.Sprintf("p50 ≤ %s ms: %s (+%s ms over fork/exec)%s",
						ms(dispatchTarget), verdict(lat.dispatch.p50() <= dispatchTarget), ms(over), sandboxTail(i, lat.dispatch)),
				})
			}
		}
		for i, v := range b.variants() {
			what := "RPUSH → done in client's hands (p50 / p99)" + v.label
			lat, errLat := lats[i], errLats[i]
			switch {
			case errBare != nil:
				rep.fail(what, fmt.Errorf("bare loop baseline: %w", errBare))
			case errLat != nil:
				rep.fail(what, errLat)
			default:
				rep.add(row{
					what:     what,
					taskJob:  lat.done.String(),
					baseline: "bare BLMOVE→exec→RPUSH loop " + bare.String(),
					ratio:    ratio(float64(lat.done.p50()), float64(bare.p50())),
					target:   doneTarget(i, lat, bare),
				})
			}
		}
	}

	var rateC1, rateC4 float64 // the default runner, checks off: for the admission row
	if cfg.want("throughput") {
		// Row 3: throughput, with the sandbox on and off, and at the highest
		// concurrency also with every check a locked-down host adds.
		for _, c := range []int{1, 2, 4} {
			progress(fmt.Sprintf("throughput at concurrency %d: raw exec", c))
			raw, errRaw := b.rawThroughput(c, cfg.floodTasks)
			progress(fmt.Sprintf("throughput at concurrency %d: bare Redis loop", c))
			bareRate, errBareRate := b.bareThroughput(ctx, c, cfg.floodTasks)
			if errRaw == nil && errBareRate != nil {
				errRaw = errBareRate
			}
			vs := b.variants()
			rates := make([]float64, len(vs))
			errs := make([]error, len(vs))
			for i, v := range vs {
				if errRaw != nil {
					break
				}
				progress(fmt.Sprintf("throughput at concurrency %d: task-job%s", c, v.label))
				rates[i], errs[i] = b.taskJobThroughput(ctx, v, c, cfg.floodTasks)
			}
			if errs[0] == nil {
				switch c {
				case 1:
					rateC1 = rates[0]
				case 4:
					rateC4 = rates[0]
				}
			}
			if last := len(vs) - 1; c == 4 && errs[last] == nil {
				b.redisRateC4 = rates[last] // transportVariant's
			}
			for i, v := range vs {
				what := fmt.Sprintf("Tasks/s, concurrency %d (%d × `exit 0`)%s", c, cfg.floodTasks, v.label)
				if errRaw != nil {
					rep.fail(what, fmt.Errorf("raw exec baseline: %w", errRaw))
					continue
				}
				if errs[i] != nil {
					rep.fail(what, errs[i])
					continue
				}
				tj := rates[i]
				baseline := fmt.Sprintf("exec.Command.Run %s; bare BLMOVE→exec→RPUSH loops %s (task-job %s of it)",
					rate(raw, "tasks"), rate(bareRate, "tasks"), ratio(tj, bareRate))
				if i == 0 && len(vs) > 1 && errs[1] == nil {
					baseline += fmt.Sprintf("; sandbox off %s (on ÷ off %s)", rate(rates[1], "tasks"), ratio(tj, rates[1]))
				}
				rep.add(row{
					what:     what,
					taskJob:  rate(tj, "tasks"),
					baseline: baseline,
					ratio:    ratio(tj, raw),
					target:   throughputTarget(c, i, len(vs), tj, raw, rates, errs),
				})
			}
			if c == 4 && errRaw == nil && cfg.want("admission") {
				b.admitThroughputRow(ctx, rep, vs[0], c, rates[0], errs[0])
			}
		}
	}

	if cfg.want("lines") {
		// Row 4: log lines.
		linesWhat := fmt.Sprintf("Log lines/s (`seq 1 %d`, RPUSH → done)", cfg.lines)
		progress("log lines: bare multi-value RPUSH")
		rawL, errRaw := b.rawLines(ctx, cfg.lines)
		progress("log lines: task-job")
		tjL, errTJ := b.taskJobLines(ctx, cfg.lines)
		switch {
		case errRaw != nil:
			rep.fail(linesWhat, fmt.Errorf("RPUSH baseline: %w", errRaw))
		case errTJ != nil:
			rep.fail(linesWhat, errTJ)
		default:
			b.redisLines = tjL.perSec()
			rep.add(row{
				what:     linesWhat,
				taskJob:  fmt.Sprintf("%s (%d/%d in order, %.2f s)", rate(tjL.perSec(), "lines"), tjL.lines, cfg.lines, tjL.elapsed.Seconds()),
				baseline: fmt.Sprintf("RPUSH ×%d %s", rawBatch, rate(rawL.perSec(), "lines")),
				ratio:    ratio(tjL.perSec(), rawL.perSec()),
				target:   fmt.Sprintf("≥ %dk/s, none lost: %s", linesPerSec/1000, verdict(tjL.perSec() >= linesPerSec && tjL.lines == cfg.lines)),
			})
		}
	}

	if cfg.want("kafka") {
		// The same three measurements on the Kafka transport, beside the
		// Redis rows above.
		b.kafkaRows(ctx, rep)
	}

	if cfg.want("isolation") {
		// Rows 5 and on: what the sandbox alone costs, and its peers.
		progress("sandbox start+wait of /bin/true: plain exec, the sandbox (helper and re-exec), process group, peers")
		iso, err := b.isolationOverhead(cfg.isoIters)
		if err != nil {
			rep.fail("Sandbox start+wait `/bin/true`", err)
		} else {
			b.isolationRows(rep, iso)
		}
	}

	if cfg.want("api") {
		b.managementRows(ctx, rep)
	}

	if cfg.want("fleet") {
		b.fleetRows(ctx, rep)
	}

	if cfg.want("admission") && cfg.want("throughput") {
		// Last: what the checks before a start cost, against the task rate
		// measured above with them off.
		progress("policy decision + signature check + 4 audit records")
		b.admitRow(rep, rateC1, rateC4)
	}

	rep.notes = append(rep.notes,
		"Ratios are task-job ÷ baseline: for latencies lower is better, for rates higher is better. Dispatch's ratio is against the fork/exec baseline.",
		"Dispatch is timed by the task itself: `stamp` prints its wall clock as its first instruction; both sides include the Go runtime's start-up.",
		"task-job rows run the executor in-process with `Logs: true`, the sandbox above, and the same `cmd_dir`; one-at-a-time submissions are "+gap.String()+" apart.",
	)
}

// cpuInfo names the CPU and how many this process may use.
func cpuInfo() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = " × " + strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs%s", runtime.NumCPU(), model)
}

// kernel returns the OS and kernel release.
func kernel() string {
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		return runtime.GOOS + " " + strings.TrimSpace(string(b))
	}
	return runtime.GOOS
}

func goVersion() string { return strings.TrimPrefix(runtime.Version(), "go") }

// sandboxTail adds the tail target to the rows of the sandboxed variant
// (variant 0 when there are two).
func sandboxTail(variant int, s samples) string {
	if variant != 0 {
		return ""
	}
	return "; " + tail(s)
}

// doneTarget: with the sandbox, the done follows the task's exit by at most
// doneOverDispatch more than the dispatch took.
func doneTarget(variant int, lat latencies, bare samples) string {
	over := fmt.Sprintf("+%s ms p50 over the bare loop", ms(lat.done.p50()-bare.p50()))
	if variant != 0 {
		return "– (" + over + ")"
	}
	gap := lat.done.p50() - lat.dispatch.p50()
	return fmt.Sprintf("p50 ≤ dispatch + %s ms: %s (%+.2f ms; %s); %s", ms(doneOverDispatch),
		verdict(gap <= doneOverDispatch), float64(gap)/float64(time.Millisecond), over, tail(lat.done))
}

// throughputTarget: every row against raw exec; the sandboxed one also
// against the same executor without the sandbox at concurrency 2 and 4.
func throughputTarget(c, variant, variants int, tj, raw float64, rates []float64, errs []error) string {
	t := fmt.Sprintf("≥ %.2f× of raw exec: %s", throughputShare, verdict(tj >= throughputShare*raw))
	if variant == 0 && variants > 1 && c >= 2 && errs[1] == nil {
		t += fmt.Sprintf("; sandbox on ≥ %.1f× of off: %s", sandboxShare, verdict(tj >= sandboxShare*rates[1]))
	}
	return t
}
