package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/audit"
	"github.com/taskjob/task-job/audit/kafkamirror"
	"github.com/taskjob/task-job/audit/redismirror"
	"github.com/taskjob/task-job/config"
	"github.com/taskjob/task-job/queue/kafkaqueue"
	"github.com/taskjob/task-job/queue/redisqueue"
)

// auditMirrorTimeout bounds the comparison with the Redis stream, so that
// -verify against an unreachable or huge mirror still ends.
const auditMirrorTimeout = 2 * time.Minute

// runAudit reviews the audit log: filtered records as a table or JSON
// lines, or -verify to check the hash chain (and the Redis mirror when one
// is reachable). Exit status: 0 fine, 1 broken or unreadable, 2 usage.
func runAudit(args []string, stdout, stderr io.Writer) int {
	fs := quietFlagSet("task-job audit")
	var (
		configPath = fs.String("config", "", "config.json naming the audit_file (and the mirror for -verify: the Redis stream, or the Kafka audit topic)")
		file       = fs.String("file", "", "the audit log file, overriding the config's audit_file")
		redisAddr  = fs.String("redis_addr", "", "Redis address for comparing with the mirror stream, overriding the config")
		stream     = fs.String("stream", "", "mirror stream name, overriding the config's audit_stream")
		id         = fs.String("id", "", "only records of this task id")
		status     = fs.String("status", "", "only tasks that ended with this status (all their records)")
		rule       = fs.String("rule", "", "only tasks this policy rule decided (all their records)")
		key        = fs.String("key", "", "only tasks signed with this key id (all their records)")
		kind       = fs.String("kind", "", "only records of this kind: received, decision, start, control, end, executor, rotate")
		since      = fs.String("since", "", "only records at or after this time: RFC 3339, or a duration meaning that long ago (2h)")
		until      = fs.String("until", "", "only records before this time: RFC 3339, or a duration meaning that long ago")
		asJSON     = fs.Bool("json", false, "print records as JSON lines, exactly as stored")
		verify     = fs.Bool("verify", false, "check the hash chain; exit 1 naming the first bad record")
	)
	if ok, code := parseFlags(fs, "audit", args, stdout, stderr); !ok {
		return code
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "task-job audit: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q (filters are flags, e.g. -id=%s)", fs.Arg(0), fs.Arg(0))
	}
	path, mirrorAddr, mirrorStream, password, db := *file, *redisAddr, *stream, "", 0
	var kafkaCfg *config.Config // the config, when its transport is Kafka
	if *configPath != "" {
		cfg, err := loadConfig(*configPath, hclog.New(&hclog.LoggerOptions{Output: stderr, Level: hclog.Error}))
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		if path == "" {
			path = cfg.AuditFile
		}
		if mirrorAddr == "" {
			mirrorAddr = cfg.RedisAddr
		}
		if mirrorStream == "" {
			mirrorStream = cfg.AuditStream
		}
		password, db = cfg.RedisPassword, cfg.RedisDB
		if cfg.Transport == config.TransportKafka && *redisAddr == "" {
			kafkaCfg = cfg
		}
		if path == "" {
			return usageErr("%s sets no audit_file; give -file=PATH", *configPath)
		}
	}
	if path == "" {
		return usageErr("which audit log? give -file=PATH or -config=FILE")
	}
	if *verify {
		if *id != "" || *status != "" || *rule != "" || *key != "" || *kind != "" || *since != "" || *until != "" || *asJSON {
			return usageErr("-verify checks the whole chain and takes no filters or -json")
		}
		if mirrorAddr != "" && mirrorStream == "" {
			mirrorStream = defaultAuditStream()
		}
		m := redisAuditMirror(mirrorAddr, mirrorStream, password, db)
		if kafkaCfg != nil {
			m = kafkaAuditMirror(kafkaCfg)
		}
		return auditVerify(path, m, stdout, stderr)
	}
	f := audit.Filter{ID: *id, Status: *status, Rule: *rule, KeyID: *key, Kind: *kind}
	if f.Kind != "" && !validKind(f.Kind) {
		return usageErr("-kind=%q: use one of received, decision, start, control, end, executor, rotate", f.Kind)
	}
	now := time.Now()
	var err error
	if f.Since, err = parseWhen(*since, now); err != nil {
		return usageErr("-since: %v", err)
	}
	if f.Until, err = parseWhen(*until, now); err != nil {
		return usageErr("-until: %v", err)
	}
	return auditList(path, f, *asJSON, stdout, stderr)
}

func defaultAuditStream() string { return config.Default().AuditStream }

func validKind(k string) bool {
	switch k {
	case audit.KindReceived, audit.KindDecision, audit.KindStart, audit.KindControl,
		audit.KindEnd, audit.KindExecutor, audit.KindRotate:
		return true
	}
	return false
}

// parseWhen reads an RFC 3339 time, or a duration meaning that long ago.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-11-24T10:00:00Z) nor a duration ago (2h, 30m)", s)
	}
	return now.Add(-d), nil
}

func auditList(path string, f audit.Filter, asJSON bool, stdout, stderr io.Writer) int {
	var tw *tabwriter.Writer
	if !asJSON {
		tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tSEQ\tKIND\tID\tDETAILS")
	}
	enc := json.NewEncoder(stdout)
	n := 0
	err := audit.Read(path, f, func(r audit.Record) error {
		n++
		if asJSON {
			return enc.Encode(r)
		}
		id := r.ID
		if id == "" {
			id = "-"
		}
		_, err := fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", r.Time.UTC().Format("2006-01-02T15:04:05.000Z"), r.Seq, r.Kind, oneLine(id), details(r))
		return err
	})
	if tw != nil {
		tw.Flush()
	}
	if err != nil {
		fmt.Fprintln(stderr, "task-job audit:", err)
		return 1
	}
	if n == 0 && !asJSON {
		fmt.Fprintln(stderr, "task-job audit: no records match")
	}
	return 0
}

// details is the kind-specific part of a table row.
func details(r audit.Record) string {
	var b []string
	add := func(k, v string) {
		if v != "" {
			b = append(b, k+"="+quoteIfNeeded(v))
		}
	}
	addInt := func(k string, v int64) {
		if v != 0 {
			b = append(b, k+"="+strconv.FormatInt(v, 10))
		}
	}
	switch r.Kind {
	case audit.KindReceived:
		add("type", r.Type)
		addInt("size", int64(r.Size))
		add("digest", r.Digest)
		add("key", r.KeyID)
	case audit.KindDecision:
		b = append(b, r.Decision)
		add("rule", r.Rule)
	case audit.KindStart:
		add("user", r.User)
		addInt("pid", int64(r.PID))
		add("cgroup", r.Cgroup)
		if l := r.Limits; l != nil {
			addInt("mem", l.MemoryBytes)
			if l.CPUs != 0 {
				add("cpus", strconv.FormatFloat(l.CPUs, 'g', -1, 64))
			}
			addInt("pids", l.Pids)
			addInt("timeout", l.TimeoutSec)
			if l.Network {
				add("network", "yes")
			}
		}
	case audit.KindControl:
		b = append(b, r.Action)
		add("by", r.By)
	case audit.KindEnd:
		b = append(b, r.Status)
		if r.ExitCode != nil {
			b = append(b, "exit="+strconv.Itoa(*r.ExitCode))
		}
		add("signal", r.Signal)
		addInt("cpu_ms", r.CPUMs)
		addInt("peak_mem", r.PeakMemoryBytes)
		addInt("output", r.OutputBytes)
	case audit.KindExecutor:
		b = append(b, r.Event)
		add("version", r.Version)
		add("policy", r.PolicyDigest)
		for _, k := range sortedKeys(r.Config) {
			add(k, r.Config[k])
		}
	case audit.KindRotate:
		add("continues", r.PrevFile)
	}
	add("reason", r.Reason)
	return strings.Join(b, " ")
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// quoteIfNeeded keeps a value one token in the table: a task id or reason
// written by a client must not be able to forge columns or lines.
func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n\r\"=") || strconv.Quote(s) != `"`+s+`"` {
		return strconv.Quote(s)
	}
	return s
}

func oneLine(s string) string {
	if strings.ContainsAny(s, " \t\n\r\"") || strconv.Quote(s) != `"`+s+`"` {
		return strconv.Quote(s)
	}
	return s
}

// auditMirror is the copy -verify compares the log with: the Redis
// stream or the Kafka audit topic; compare is nil when none is named.
type auditMirror struct {
	what    string // "the mirror stream audit", "the mirror topic Q_audit (executor e1)"
	none    string // why nothing is compared, when compare is nil
	compare func(ctx context.Context, path string) (audit.MirrorReport, error)
}

func redisAuditMirror(addr, stream, password string, db int) auditMirror {
	if addr == "" {
		return auditMirror{none: "no Redis address (give -config or -redis_addr)"}
	}
	return auditMirror{what: "the mirror stream " + stream, compare: func(ctx context.Context, path string) (audit.MirrorReport, error) {
		rdb, err := redisqueue.Dial(redisqueue.DialOptions{Addr: addr, Password: password, DB: db, PoolSize: 2})
		if err != nil {
			return audit.MirrorReport{}, err
		}
		defer rdb.Close()
		return redismirror.Verify(ctx, path, rdb, stream)
	}}
}

// kafkaAuditMirror is the executor's records in the Kafka audit topic
// (README, Kafka: Q_audit), keyed by its executor_id.
func kafkaAuditMirror(cfg *config.Config) auditMirror {
	topic := kafkaqueue.TopicsFor(kafkaNames(cfg)).Audit
	what := fmt.Sprintf("the mirror topic %s (executor %s)", topic, cfg.ExecutorID)
	return auditMirror{what: what, compare: func(ctx context.Context, path string) (audit.MirrorReport, error) {
		copts, err := kafkaDialOptions(cfg)
		if err != nil {
			return audit.MirrorReport{}, err
		}
		return kafkamirror.Verify(ctx, path, append(copts, kgo.SeedBrokers(cfg.Kafka.Brokers...)), topic, cfg.ExecutorID)
	}}
}

func auditVerify(path string, m auditMirror, stdout, stderr io.Writer) int {
	rep, err := audit.Verify(path)
	if err != nil {
		fmt.Fprintln(stderr, "task-job audit:", err)
		return 1
	}
	for _, w := range rep.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	if !rep.OK() {
		fmt.Fprintf(stdout, "BROKEN: %v\n(%d records in %d file(s) verified before it)\n", rep.Break, rep.Records, rep.Files)
		return 1
	}
	fmt.Fprintf(stdout, "intact: %d records in %d file(s), seq %d..%d, last hash %s\n", rep.Records, rep.Files, rep.FirstSeq, rep.LastSeq, rep.LastHash)
	if m.compare == nil {
		fmt.Fprintf(stdout, "mirror not compared: %s; a rewritten tail is only caught by that comparison\n", m.none)
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), auditMirrorTimeout)
	defer cancel()
	mrep, err := m.compare(ctx, path)
	if err != nil {
		fmt.Fprintf(stdout, "mirror not compared: %v\n", err)
		return 0
	}
	if !mrep.OK() {
		fmt.Fprintf(stdout, "BROKEN: %v (compared with %s)\n", mrep.Break, m.what)
		return 1
	}
	if mrep.CopyLast == 0 {
		fmt.Fprintf(stdout, "%s is empty: nothing to compare\n", m.what)
		return 0
	}
	fmt.Fprintf(stdout, "%s agrees: %d records identical (it holds seq %d..%d; %d older trimmed, %d not yet mirrored, %d missing from it)\n",
		m.what, mrep.Compared, mrep.CopyFirst, mrep.CopyLast, mrep.Trimmed, mrep.NotMirrored, mrep.Missing)
	return 0
}
