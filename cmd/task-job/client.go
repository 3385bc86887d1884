package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/config"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/signature"
	"github.com/taskjob/task-job/task"
)

// The client commands speak the same Redis protocol as any container: what
// they do, a shell with redis-cli can do too.

type clientFlags struct {
	config, redisAddr string
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", "", "config.json to read the Redis address and list names from")
	fs.StringVar(&c.redisAddr, "redis_addr", "", "Redis address, overriding the config (host:port, redis:// URL or sentinel://MASTER@host:port,...)")
}

type client struct {
	cfg *config.Config
	rdb redis.UniversalClient
	q   *redisqueue.Queue
}

func (c *clientFlags) connect(stderr io.Writer) (*client, error) {
	cfg, err := loadConfig(c.config, hclog.New(&hclog.LoggerOptions{Output: stderr, Level: hclog.Error}))
	if err != nil {
		return nil, err
	}
	if c.redisAddr != "" {
		cfg.RedisAddr = c.redisAddr
	}
	rdb, err := redisqueue.Dial(redisqueue.DialOptions{Addr: cfg.RedisAddr, Password: cfg.RedisPassword, DB: cfg.RedisDB, PoolSize: 4})
	if err != nil {
		return nil, err
	}
	q := redisqueue.New(rdb, redisqueue.Options{
		Names:     redisqueue.Names{Tasks: cfg.QueueName, Control: cfg.QueueControlName, Logs: cfg.LogsChannel},
		Retention: cfg.StatusRetention,
	})
	return &client{cfg: cfg, rdb: rdb, q: q}, nil
}

// clientCommand is the shared shape of the client subcommands: a flag set
// with -config and -redis_addr, a check of the positional arguments, and a
// connection.
type clientCommand struct {
	fs    *flag.FlagSet
	flags clientFlags
}

func newClientCommand(name, usage string, stderr io.Writer) *clientCommand {
	cc := &clientCommand{fs: flag.NewFlagSet("task-job "+name, flag.ContinueOnError)}
	cc.fs.SetOutput(stderr)
	cc.flags.register(cc.fs)
	cc.fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: "+usage)
		cc.fs.PrintDefaults()
	}
	return cc
}

// connect parses args, checks there are between min and max positional
// arguments (max < 0: no limit) and connects. A nil client means: exit with
// code.
func (cc *clientCommand) connect(args []string, min, max int, stderr io.Writer) (c *client, code int) {
	if err := cc.fs.Parse(args); err != nil {
		return nil, 2
	}
	if n := cc.fs.NArg(); n < min || max >= 0 && n > max {
		cc.fs.Usage()
		return nil, 2
	}
	c, err := cc.flags.connect(stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, 1
	}
	return c, 0
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func runSubmit(args []string, stdout, stderr io.Writer) int {
	cc := newClientCommand("submit", "task-job submit [flags] CMDLINE [ARG...]\n\n"+
		"CMDLINE is one word or a quoted command line; each ARG becomes one cmd_args entry.", stderr)
	id := cc.fs.String("id", "", "task id (default: a random one)")
	typ := cc.fs.String("type", "", "task type (free text, echoed back)")
	tube := cc.fs.String("tube", "", "tube (routing name)")
	timeout := cc.fs.Float64("timeout", 0, "timeout in seconds (0 = none)")
	wait := cc.fs.Bool("wait", false, "wait for the done, print the output, exit 0 only if the task succeeded")
	keyFile := cc.fs.String("key", "", "sign the task with the secret in this file; its name is the key id (as in signing_keys_dir)")
	c, code := cc.connect(args, 1, -1, stderr)
	if c == nil {
		return code
	}
	defer c.rdb.Close()
	if *id == "" {
		*id = newID()
	}
	t := task.Task{ID: *id, Type: *typ, Tube: *tube, Task: task.Spec{Cmdline: cc.fs.Arg(0), CmdArgs: cc.fs.Args()[1:], Timeout: task.Seconds(*timeout)}}
	if t.Task.CmdArgs == nil {
		t.Task.CmdArgs = []string{}
	}
	if err := t.Validate(); err != nil {
		fmt.Fprintln(stderr, "task-job submit:", err)
		return 2
	}
	if *keyFile != "" {
		key, err := signature.LoadKeyFile(*keyFile)
		if err != nil {
			fmt.Fprintln(stderr, "task-job submit:", err)
			return 2
		}
		signature.Sign(&t, key.ID, key.Secret, time.Now())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	raw, _ := json.Marshal(t)
	var sub *redis.PubSub
	if *wait {
		sub = c.rdb.Subscribe(ctx, c.cfg.LogsChannel)
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil {
			fmt.Fprintln(stderr, "task-job submit:", err)
			return 1
		}
	}
	if err := c.rdb.RPush(ctx, c.cfg.QueueName, raw).Err(); err != nil {
		fmt.Fprintln(stderr, "task-job submit:", err)
		return 1
	}
	if !*wait {
		fmt.Fprintln(stdout, *id)
		return 0
	}
	return follow(ctx, c, sub, *id, stdout, stderr)
}

func runKill(args []string, stdout, stderr io.Writer) int {
	cc := newClientCommand("kill", "task-job kill [flags] ID", stderr)
	keyFile := cc.fs.String("key", "", "sign the kill with the secret in this file; its name is the key id (needed with require_signatures)")
	c, code := cc.connect(args, 1, 1, stderr)
	if c == nil {
		return code
	}
	defer c.rdb.Close()
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
	if err := c.rdb.RPush(context.Background(), c.cfg.QueueControlName, raw).Err(); err != nil {
		fmt.Fprintln(stderr, "task-job kill:", err)
		return 1
	}
	fmt.Fprintln(stdout, "kill sent for", cc.fs.Arg(0))
	return 0
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	cc := newClientCommand("status", "task-job status [flags] ID", stderr)
	asJSON := cc.fs.Bool("json", false, "print the status record (and the done message) as JSON")
	c, code := cc.connect(args, 1, 1, stderr)
	if c == nil {
		return code
	}
	defer c.rdb.Close()
	id := cc.fs.Arg(0)
	st, err := c.q.Status(context.Background(), id)
	if err != nil {
		fmt.Fprintln(stderr, "task-job status:", err)
		return 1
	}
	if st == nil {
		fmt.Fprintf(stderr, "task-job status: no task %q known (never taken, or ended more than status_retention ago)\n", id)
		return 1
	}
	if *asJSON {
		out := map[string]any{"id": st.ID, "state": st.State, "executor": st.Executor, "updated": st.Updated}
		if len(st.Done) > 0 {
			out["done"] = json.RawMessage(st.Done)
		}
		b, _ := json.Marshal(out)
		fmt.Fprintln(stdout, string(b))
		return 0
	}
	fmt.Fprintf(stdout, "id:       %s\nstate:    %s\nexecutor: %s\n", st.ID, st.State, st.Executor)
	if len(st.Done) > 0 {
		var d task.Log
		if json.Unmarshal(st.Done, &d) == nil && d.Result != nil {
			fmt.Fprintf(stdout, "exit:     %d %s\nreason:   %s\nduration: %d ms\n", d.ExitCode, d.Signal, d.Reason, d.DurationMS)
		}
	}
	return 0
}

func runLogs(args []string, stdout, stderr io.Writer) int {
	cc := newClientCommand("logs", "task-job logs [-f] [flags] ID", stderr)
	followFlag := cc.fs.Bool("f", false, "follow: print output as it comes, until the task's done")
	rawFlag := cc.fs.Bool("raw", false, "print output exactly as the task wrote it, terminal escape sequences included (unsafe on a terminal: a task could retitle, rewrite or hide what it shows)")
	c, code := cc.connect(args, 1, 1, stderr)
	if c == nil {
		return code
	}
	defer c.rdb.Close()
	id := cc.fs.Arg(0)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if !*rawFlag {
		stdout, stderr = escaping{stdout}, escaping{stderr}
	}
	var sub *redis.PubSub
	if *followFlag {
		sub = c.rdb.Subscribe(ctx, c.cfg.LogsChannel)
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil {
			fmt.Fprintln(stderr, "task-job logs:", err)
			return 1
		}
	}
	// What is still on the logs list (a consumer may have taken some).
	items, err := c.rdb.LRange(ctx, c.cfg.LogsChannel, 0, -1).Result()
	if err != nil {
		fmt.Fprintln(stderr, "task-job logs:", err)
		return 1
	}
	var lastSeq uint64
	for _, it := range items {
		if done, code := printLine([]byte(it), id, &lastSeq, stdout, stderr); done {
			return code
		}
	}
	if !*followFlag {
		return 0
	}
	return follow(ctx, c, sub, id, stdout, stderr)
}

// follow prints id's messages from the logs channel's feed until its done.
func follow(ctx context.Context, c *client, sub *redis.PubSub, id string, stdout, stderr io.Writer) int {
	var lastSeq uint64
	ch := sub.Channel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return 130
		case <-tick.C:
			// The done may have been published before we subscribed.
			if st, err := c.q.Status(ctx, id); err == nil && st != nil && st.State.Terminal() && len(st.Done) > 0 {
				_, code := printLine(st.Done, id, &lastSeq, stdout, stderr)
				return code
			}
		case m, ok := <-ch:
			if !ok {
				return 1
			}
			for _, line := range strings.Split(m.Payload, "\n") {
				if done, code := printLine([]byte(line), id, &lastSeq, stdout, stderr); done {
					return code
				}
			}
		}
	}
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
// as \xNN or \uNNNN. `task-job logs` always writes through it, to a
// terminal or not (a file is often cat'ed to one later); -raw opts out.
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
