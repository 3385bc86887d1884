package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/config"
	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/queue/kafkaqueue"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/signature"
	"github.com/taskjob/task-job/task"
)

// The client commands speak the same protocol as any container: what they
// do over Redis a shell with redis-cli can do too, and over Kafka any
// producer and consumer of the topics.

type clientFlags struct {
	config, redisAddr, queue string
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", "", "config.json to read the Redis address and list names from")
	fs.StringVar(&c.redisAddr, "redis_addr", "", "Redis address, overriding the config (host:port, redis:// URL or sentinel://MASTER@host:port,...)")
	fs.StringVar(&c.queue, "queue", "", "queue_name, overriding the config (the control and logs names follow it unless the config sets them)")
}

type client struct {
	cfg *config.Config
	// tr is the transport's client side: what submit, kill, status and
	// logs need, over Redis or Kafka.
	tr queue.Client
	// rdb and q are set over Redis only: the other commands, and the
	// descriptions of where a task waits, read Redis keys.
	rdb redis.UniversalClient
	q   *redisqueue.Queue
	// kq is set over Kafka only.
	kq *kafkaqueue.Client
	// addrFrom says where the Redis address (or the Kafka brokers) came
	// from, for error messages.
	addrFrom string
}

// close closes the transport's connections.
func (c *client) close() { _ = c.tr.Close() }

// quietRedisOnce silences the Redis client's own log once per process: the
// setting is global to the client library.
var quietRedisOnce sync.Once

// pingTimeout bounds the first contact with Redis (or the Kafka brokers).
const pingTimeout = 3 * time.Second

// connect reads the config and connects to its transport: Redis, or
// Kafka when the config says so and no -redis_addr overrides it.
func (c *clientFlags) connect(stderr io.Writer) (*client, error) {
	cfg, err := loadConfig(c.config, hclog.New(&hclog.LoggerOptions{Output: stderr, Level: hclog.Error}))
	if err != nil {
		return nil, err
	}
	from := "the default redis_addr (no -config or -redis_addr given)"
	if c.config != "" {
		from = "redis_addr in " + c.config
	}
	if c.redisAddr != "" {
		cfg.RedisAddr, from = c.redisAddr, "-redis_addr"
	}
	if c.queue != "" {
		cfg.SetQueueName(c.queue)
	}
	if cfg.Cluster() && config.HashTag(cfg.QueueName) == "" {
		return nil, fmt.Errorf("queue %q has no hash tag, and on Redis Cluster (%s) a deployment's keys share one: give the queue as {%s}, as its executors' queue_name is written", cfg.QueueName, from, cfg.QueueName)
	}
	if cfg.Transport == config.TransportKafka && c.redisAddr == "" {
		return connectKafka(cfg, "kafka_brokers in "+c.config)
	}
	// The client's own per-attempt lines would bury the one message that
	// says what to fix.
	quietRedisOnce.Do(func() { redisqueue.RouteClientLog(hclog.NewNullLogger()) })
	rdb, err := redisqueue.Dial(redisqueue.DialOptions{Addr: cfg.RedisAddr, Password: cfg.RedisPassword, DB: cfg.RedisDB, PoolSize: 4})
	if err != nil {
		return nil, fmt.Errorf("%w (from %s)", err, from)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	if err := redisqueue.Ping(ctx, rdb); err != nil {
		rdb.Close()
		if fix := redisFix(err); fix != "" {
			if c.config == "" && !strings.Contains(cfg.RedisAddr, "://") {
				// A bare host:port carries no password, user or database.
				fix += "; those settings are read from the config given with -config=FILE, and none was given"
			}
			//lint:ignore ST1005 the message is printed whole and starts with the name Redis
			return nil, fmt.Errorf("Redis at %s (%s) answers but refuses this connection: %w\n  %s", redactAddr(cfg.RedisAddr), from, errors.Unwrap(err), fix)
		}
		return nil, fmt.Errorf("cannot reach Redis at %s (%s): %w\n"+
			"  start Redis there, or give the right address with -redis_addr=HOST:PORT (or redis_addr in the config)", redactAddr(cfg.RedisAddr), from, err)
	}
	q := redisqueue.New(rdb, redisqueue.Options{
		Names:     redisqueue.Names{Tasks: cfg.QueueName, Control: cfg.QueueControlName, Logs: cfg.LogsChannel},
		Retention: cfg.StatusRetention,
	})
	return &client{cfg: cfg, tr: q, rdb: rdb, q: q, addrFrom: from}, nil
}

// connectKafka connects the client side of the Kafka transport and checks
// its topics exist.
func connectKafka(cfg *config.Config, from string) (*client, error) {
	k := cfg.Kafka
	copts, err := kafkaDialOptions(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	kq, err := kafkaqueue.NewClient(ctx, k.Brokers, copts, kafkaqueue.ClientConfig{
		Names:     kafkaNames(cfg),
		Retention: cfg.StatusRetention, TTL: cfg.ExecutorTTL, MaxTaskBytes: cfg.MaxTaskBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot use Kafka at %s (%s): %w", strings.Join(k.Brokers, ","), from, err)
	}
	return &client{cfg: cfg, tr: kq, kq: kq, addrFrom: from}, nil
}

// clientCommand is the shared shape of the client subcommands: a flag set
// with -config, -redis_addr and -queue, a check of the positional
// arguments, and a connection.
type clientCommand struct {
	name  string
	fs    *flag.FlagSet
	flags clientFlags
	// interspersed lets flags follow the positional arguments
	// ("status 101 -json"); not for submit, whose words after CMDLINE are
	// the task's.
	interspersed bool
	// checkArgs, if set, looks at the parsed words before any connection;
	// a non-zero code ends the command.
	checkArgs func(args []string) int
	stdout    io.Writer
	stderr    io.Writer
}

func newClientCommand(name string, stdout, stderr io.Writer) *clientCommand {
	cc := &clientCommand{name: name, fs: quietFlagSet("task-job " + name), stdout: stdout, stderr: stderr}
	cc.flags.register(cc.fs)
	return cc
}

// connect parses args, checks there are between min and max positional
// arguments (max < 0: no limit) and connects. A nil client means: exit with
// code.
func (cc *clientCommand) connect(args []string, min, max int, what string) (c *client, code int) {
	var err error
	if cc.interspersed {
		var pos []string
		if pos, err = parseInterspersed(cc.fs, args); err == nil {
			// Put the positional words where fs.Args finds them.
			_ = cc.fs.Parse(append([]string{"--"}, pos...))
		}
	} else {
		err = cc.fs.Parse(args)
	}
	if ok, code := handleParseError(err, cc.fs, cc.name, cc.stdout, cc.stderr); !ok {
		return nil, code
	}
	if n := cc.fs.NArg(); n < min || max >= 0 && n > max {
		if n < min {
			return nil, usageError(cc.stderr, cc.name, "missing %s", what)
		}
		return nil, usageError(cc.stderr, cc.name, "want one %s, got %d words: %s", what, n, shellJoin(cc.fs.Args()))
	}
	if cc.checkArgs != nil {
		if code := cc.checkArgs(args); code != 0 {
			return nil, code
		}
	}
	c, err = cc.flags.connect(cc.stderr)
	if err != nil {
		fmt.Fprintf(cc.stderr, "task-job %s: %v\n", cc.name, err)
		return nil, exitFailed
	}
	return c, 0
}

// parseInterspersed lets flags come after positional arguments too, which
// is how people type them; "--" still ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func runSubmit(args []string, stdout, stderr io.Writer) int {
	cc := newClientCommand("submit", stdout, stderr)
	id := cc.fs.String("id", "", "task id (default: a random one); an id already used is refused")
	typ := cc.fs.String("type", "", "task type (free text, echoed back)")
	tube := cc.fs.String("tube", "", "tube (routing name)")
	timeout := cc.fs.Float64("timeout", 0, "the task's timeout in seconds (0 = none)")
	wait := cc.fs.Bool("wait", false, "wait for the done, print the output (escaped as logs prints it), exit 0 only if the task succeeded")
	waitTimeout := cc.fs.Duration("wait_timeout", 0, "with -wait, give up waiting after this long (e.g. 30s; 0 = wait for the done), exit 3")
	asJSON := cc.fs.Bool("json", false, "print {\"id\":...} instead of the id; with -wait, the task's TaskLog messages as JSON lines")
	keyFile := cc.fs.String("key", "", "sign the task with the secret in this file; its name is the key id (as in signing_keys_dir)")
	cc.checkArgs = func(args []string) int {
		pos := cc.fs.Args()
		if n := len(args) - len(pos); n > 0 && args[n-1] == "--" {
			return 0 // "--" before CMDLINE: every word after it is the task's
		}
		for _, w := range pos[1:] {
			name, _, _ := strings.Cut(strings.TrimLeft(w, "-"), "=")
			if strings.HasPrefix(w, "-") && name != "" && cc.fs.Lookup(name) != nil {
				// It would silently become the task's argument, and the
				// submit would not do what the flag says.
				return usageError(stderr, "submit", "%s after CMDLINE %s is the task's argument, not submit's flag: put it before %s, "+
					"or write -- before CMDLINE to pass it to the task", w, pos[0], pos[0])
			}
		}
		return 0
	}
	c, code := cc.connect(args, 1, -1, "CMDLINE")
	if c == nil {
		return code
	}
	defer c.close()
	if *id == "" {
		*id = newID()
	}
	t := task.Task{ID: *id, Type: *typ, Tube: *tube, Task: task.Spec{Cmdline: cc.fs.Arg(0), CmdArgs: cc.fs.Args()[1:], Timeout: task.Seconds(*timeout)}}
	if t.Task.CmdArgs == nil {
		t.Task.CmdArgs = []string{}
	}
	if err := t.Validate(); err != nil {
		fmt.Fprintln(stderr, "task-job submit:", err)
		return exitUsage
	}
	if *keyFile != "" {
		key, err := signature.LoadKeyFile(*keyFile)
		if err != nil {
			fmt.Fprintln(stderr, "task-job submit:", err)
			return exitUsage
		}
		signature.Sign(&t, key.ID, key.Secret, time.Now())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	raw, _ := json.Marshal(t)
	// A task with a tube goes to that tube's list, which only executors
	// serving the tube take from. Kafka has one tasks topic.
	var list string
	if c.q != nil {
		list = c.q.TubeKey(t.Tube)
	} else {
		list = c.kq.Topics().Tasks
	}
	// A second task with a known id is never run (and gets no done of its
	// own): waiting would show the first task's result as if it were this
	// one's. Over Redis the check covers an id still queued (reserved by
	// an earlier submit, not claimed yet), and it is one step with the
	// push: of two submits of one id, one is refused. Over Kafka it sees
	// only ids already claimed or cancelled, which the note says.
	// A kill sent for the id before any executor took it cancels the task
	// at its claim. The kill said so, to whoever sent it; the submit is
	// where it would surprise. Looked up before the push, since the claim
	// that honours the kill also clears it.
	var killAhead time.Time
	if c.q != nil {
		killAhead, _ = c.q.KillAheadUntil(ctx, *id)
	}
	res, err := c.tr.SubmitTask(ctx, *id, t.Tube, raw)
	if err != nil {
		if c.q != nil && strings.Contains(err.Error(), "NOPERM") {
			fmt.Fprintf(stderr, "task-job submit: Redis at %s (%s) refused the submit: %v\n"+
				"  the Redis user needs EVAL and EVALSHA, and keys %s, %s and %s (README, Redis keys)\n",
				redactAddr(c.cfg.RedisAddr), c.addrFrom, err, list, c.q.StatusKey("*"), c.q.SubmittedKey("*"))
			return exitFailed
		}
		fmt.Fprintln(stderr, "task-job submit:", c.redisError(err))
		return exitFailed
	}
	switch res {
	case redisqueue.Pushed:
	case redisqueue.IDUsed, redisqueue.IDReserved:
		first := c.describeTask(ctx, *id)
		if st, err := c.tr.Status(ctx, *id); err == nil && st != nil && st.Executor != "" {
			first += ", on executor " + st.Executor
		}
		fmt.Fprintf(stderr, "task-job submit: id %q is a duplicate: a task with it was already submitted, and a second one would not run; nothing was queued.\n"+
			"  the first: %s\n"+
			"  choose another -id (or none, for a random one); see the first with: task-job status %s\n", *id, first, *id)
		return exitFailed
	default:
		fmt.Fprintf(stderr, "task-job submit: unexpected answer from %s: %v\n", c.transportName(), res)
		return exitFailed
	}
	if !killAhead.IsZero() {
		fmt.Fprintf(stderr, "note: a kill for id %q was sent before this submit and holds until %s: the task is cancelled, not run, when an executor takes it\n",
			*id, killAhead.UTC().Format(time.RFC3339))
	}
	if c.kq != nil {
		fmt.Fprintf(stderr, "note: over Kafka the id was checked against the status topic only: a task with id %q still waiting in %s, "+
			"or submitted at the same moment, cannot be seen; if there was one, only the first runs, and this one gets no done of its own\n", *id, list)
		if t.Tube != "" {
			fmt.Fprintf(stderr, "note: over Kafka a tube routes nothing: any executor of %s may take the task\n", list)
		}
	}
	if !*wait {
		if *asJSON {
			b, _ := json.Marshal(map[string]string{"id": *id, "queue": list})
			fmt.Fprintln(stdout, string(b))
		} else {
			fmt.Fprintln(stdout, *id)
		}
		return exitOK
	}
	if !*asJSON {
		// The task's output, as logs prints it: escape sequences made visible.
		stdout, stderr = escaping{stdout}, escaping{stderr}
	}
	f := &follower{c: c, cmd: "submit", id: *id, timeout: *waitTimeout, json: *asJSON, stdout: stdout, stderr: stderr, timeoutFlag: "-wait_timeout"}
	return f.run(ctx, true)
}

// killReport is what kill -json prints.
type killReport struct {
	ID       string `json:"id"`
	Sent     bool   `json:"sent"`
	State    string `json:"state"` // as looked up before sending: unknown, cancelled, running, or a final state
	Executor string `json:"executor,omitempty"`
	Message  string `json:"message"`
}

func runKill(args []string, stdout, stderr io.Writer) int {
	cc := newClientCommand("kill", stdout, stderr)
	cc.interspersed = true
	queuedOnly := cc.fs.Bool("queued-only", false, "cancel the task only if it has not started; a running task is left alone (exit 1)")
	keyFile := cc.fs.String("key", "", "sign the kill with the secret in this file; its name is the key id (needed with require_signatures)")
	force := cc.fs.Bool("force", false, "send the kill without looking the task up first (for a Redis user that may only RPUSH)")
	asJSON := cc.fs.Bool("json", false, "print what was done as one JSON object")
	c, code := cc.connect(args, 1, 1, "ID")
	if c == nil {
		return code
	}
	defer c.close()
	ctx := context.Background()
	id := cc.fs.Arg(0)
	rep := killReport{ID: id, State: "not looked up"}
	send := true
	if !*force {
		state, executor, err := c.tr.State(ctx, id)
		if err != nil {
			fmt.Fprintln(stderr, "task-job kill:", c.redisError(err))
			return exitFailed
		}
		rep.Executor = executor
		rep.State = state
		switch {
		case state == "" || state == string(task.Queued):
			rep.State = "unknown"
			rep.Message = fmt.Sprintf("task %q is not known yet: no executor has taken it (it may still be queued, or not be submitted yet). "+
				"It is cancelled if it arrives within status_retention (%s in this config; the executor's own setting decides)", id, c.cfg.StatusRetention)
			if c.q != nil {
				rep.Message += fmt.Sprintf(", unless more than %d kills for ids not taken yet are sent meanwhile (Redis keeps the newest)", redisqueue.DefaultMaxKillsAhead)
			}
			rep.Message += "."
		case state == "cancelled":
			send = false
			rep.Message = fmt.Sprintf("task %q is already cancelled: a kill reached it before it ran; nothing more to do", id)
		case state == string(task.Running) && *queuedOnly:
			rep.Message = fmt.Sprintf("task %q is already running on executor %s; not killed (-queued-only)", id, rep.Executor)
			return c.reportKill(rep, false, *asJSON, stdout, stderr)
		case state == string(task.Running):
			rep.Message = fmt.Sprintf("kill sent for %s, running on executor %s", id, rep.Executor)
		default:
			rep.Message = fmt.Sprintf("task %q already ended (%s); nothing to kill", id, state)
			return c.reportKill(rep, false, *asJSON, stdout, stderr)
		}
	} else {
		rep.Message = fmt.Sprintf("kill sent for %s (-force: not looked up)", id)
	}
	if send {
		ctl := task.Control{ID: cc.fs.Arg(0), Type: task.ControlKill}
		if *keyFile != "" {
			key, err := signature.LoadKeyFile(*keyFile)
			if err != nil {
				fmt.Fprintln(stderr, "task-job kill:", err)
				return 2
			}
			signature.SignKill(&ctl, key.ID, key.Secret, time.Now())
		}
		raw, _ := json.Marshal(ctl)
		if err := c.tr.SendControl(context.Background(), raw); err != nil {
			fmt.Fprintln(stderr, "task-job kill:", err)
			return 1
		}
	}
	rep.Sent = send
	return c.reportKill(rep, true, *asJSON, stdout, stderr)
}

// reportKill prints what kill did; ok false exits 1, on stderr.
func (c *client) reportKill(rep killReport, ok, asJSON bool, stdout, stderr io.Writer) int {
	if asJSON {
		b, _ := json.Marshal(rep)
		fmt.Fprintln(stdout, string(b))
	} else if ok {
		fmt.Fprintln(stdout, rep.Message)
	} else {
		fmt.Fprintln(stderr, "task-job kill: "+rep.Message)
	}
	if !ok {
		return exitFailed
	}
	return exitOK
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	cc := newClientCommand("status", stdout, stderr)
	cc.interspersed = true
	asJSON := cc.fs.Bool("json", false, "print the status record (and the done message) as JSON")
	c, code := cc.connect(args, 1, 1, "ID")
	if c == nil {
		return code
	}
	defer c.close()
	ctx := context.Background()
	id := cc.fs.Arg(0)
	st, err := c.tr.Status(ctx, id)
	if err != nil {
		fmt.Fprintln(stderr, "task-job status:", c.redisError(err))
		return exitFailed
	}
	if st == nil {
		fmt.Fprintf(stderr, "task-job status: not known: %s\n", c.describeTask(ctx, id))
		return exitFailed
	}
	if *asJSON {
		out := map[string]any{"id": st.ID, "state": st.State, "executor": st.Executor, "updated": st.Updated}
		if st.Waiting != "" {
			out["waiting"] = st.Waiting
		}
		if len(st.Done) > 0 {
			out["done"] = json.RawMessage(st.Done)
		}
		b, _ := json.Marshal(out)
		fmt.Fprintln(stdout, string(b))
		return exitOK
	}
	fmt.Fprintf(stdout, "id:       %s\nstate:    %s\nexecutor: %s\n", st.ID, st.State, st.Executor)
	if st.Waiting != "" {
		// The dispatcher's reason for not placing it yet.
		fmt.Fprintf(stdout, "waiting:  %s\n", st.Waiting)
	}
	if len(st.Done) > 0 {
		var d task.Log
		if json.Unmarshal(st.Done, &d) == nil && d.Result != nil {
			fmt.Fprintf(stdout, "exit:     %s\nreason:   %s\nduration: %d ms\n", strings.TrimSpace(fmt.Sprint(d.ExitCode, " ", d.Signal)), d.Reason, d.DurationMS)
		}
	}
	return exitOK
}

func runLogs(args []string, stdout, stderr io.Writer) int {
	cc := newClientCommand("logs", stdout, stderr)
	cc.interspersed = true
	followFlag := cc.fs.Bool("f", false, "follow: print output as it comes, until the task's done")
	timeout := cc.fs.Duration("timeout", 0, "with -f, give up after this long (e.g. 5m; 0 = until the done), exit 3")
	asJSON := cc.fs.Bool("json", false, "print the task's TaskLog messages as JSON lines, as shipped")
	rawFlag := cc.fs.Bool("raw", false, "print output exactly as the task wrote it, terminal escape sequences included (unsafe on a terminal: a task could retitle, rewrite or hide what it shows)")
	c, code := cc.connect(args, 1, 1, "ID")
	if c == nil {
		return code
	}
	defer c.close()
	if !*rawFlag && !*asJSON {
		stdout, stderr = escaping{stdout}, escaping{stderr}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	f := &follower{c: c, cmd: "logs", id: cc.fs.Arg(0), timeout: *timeout, json: *asJSON, stdout: stdout, stderr: stderr, timeoutFlag: "-timeout"}
	return f.run(ctx, *followFlag)
}

// redisError says which setting to look at when the transport fails
// mid-command.
func (c *client) redisError(err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	if c.kq != nil {
		return fmt.Errorf("lost Kafka at %s (%s): %w", strings.Join(c.cfg.Kafka.Brokers, ","), c.addrFrom, err)
	}
	return fmt.Errorf("lost Redis at %s (%s): %w", redactAddr(c.cfg.RedisAddr), c.addrFrom, err)
}

func (c *client) transportName() string {
	if c.kq != nil {
		return "Kafka"
	}
	return "Redis"
}

// printLine prints one TaskLog message of id: stdout lines to stdout,
// stderr lines to stderr, the done as a summary. It skips messages of other
// tasks and repeats (by seq).
func printLine(raw []byte, id string, lastSeq *uint64, stdout, stderr io.Writer) (done bool, code int) {
	var l task.Log
	if json.Unmarshal(raw, &l) != nil || l.ID != id {
		return false, 0
	}
	if l.Seq != 0 && l.Seq <= *lastSeq {
		return false, 0
	}
	if l.Seq != 0 {
		*lastSeq = l.Seq
	}
	switch l.MsgType {
	case task.MsgStdout:
		fmt.Fprintln(stdout, l.Data)
	case task.MsgStderr:
		fmt.Fprintln(stderr, l.Data)
	case task.MsgDone:
		if l.Result == nil {
			fmt.Fprintln(stderr, "done:", l.Data)
			return true, 1
		}
		fmt.Fprintf(stderr, "done: %s (exit %d) %s\n", l.Status, l.ExitCode, l.Reason)
		if l.Status == task.Succeeded {
			return true, 0
		}
		return true, 1
	}
	return false, 0
}

// escaping writes task output with what a terminal would act on made
// visible: C0 and C1 control characters (ESC, BEL, CSI…) other than tab
// and newline, DEL, invalid UTF-8 and bidirectional controls are written
// as \xNN or \uNNNN. `task-job logs` and `submit -wait` always write
// through it, to a terminal or not (a file is often cat'ed to one later);
// logs -raw opts out.
type escaping struct{ w io.Writer }

func (e escaping) Write(p []byte) (int, error) {
	if _, err := e.w.Write(escapeTerminal(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func escapeTerminal(p []byte) []byte {
	out := make([]byte, 0, len(p))
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRune(p[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			out = fmt.Appendf(out, `\x%02x`, p[i])
		case r == '\t' || r == '\n':
			out = append(out, byte(r))
		case r < 0x20 || r == 0x7f:
			out = fmt.Appendf(out, `\x%02x`, r)
		case r >= 0x80 && r <= 0x9f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			out = append(out, p[i:i+size]...)
		}
		i += size
	}
	return out
}
