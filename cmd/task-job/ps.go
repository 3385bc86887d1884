package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/taskjob/task-job/api"
	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/registry"
	"github.com/taskjob/task-job/registry/etcdreg"
	"github.com/taskjob/task-job/task"
)

// ps and executors read the transport directly, as the other client commands do,
// through the management server's own functions (api.Server's ListTasks
// and Executors; over Kafka, executors reads the heartbeats): the same lists the API and the page show, with no
// server to run, no token to hold and no second way of reading the keys.

// cliIdentity is who the management functions see: whoever can read the
// deployment's Redis can read all of it anyway.
var cliIdentity = &api.Identity{Name: "cli", Role: api.RoleRead}

func (c *client) management() (*api.Server, error) {
	if c.kq != nil {
		return api.New(api.Options{Tasks: c.kq, Version: version})
	}
	return api.New(api.Options{Queue: c.q, Version: version})
}

func runPs(args []string, stdout, stderr io.Writer) int {
	cc := newClientCommand("ps", stdout, stderr)
	q := url.Values{}
	for _, f := range []struct{ name, usage string }{
		{"state", "only tasks in this `STATE`: queued (the task list), running, succeeded, failed, timeout, killed, lost, rejected"},
		{"tube", "only tasks of this `TUBE` (- = the default tube)"},
		{"rule", "only tasks the policy allowed by this `RULE`"},
		{"key", "only tasks signed with this key `ID`"},
		{"executor", "only tasks taken by this executor `ID`"},
		{"since", "only tasks claimed since `WHEN`: an RFC 3339 time or a duration back from now (1h)"},
		{"until", "only tasks claimed before `WHEN`: an RFC 3339 time or a duration back from now"},
	} {
		cc.fs.Func(f.name, f.usage, func(v string) error { q.Set(f.name, v); return nil })
	}
	limit := cc.fs.Int("limit", 20, "show at most this many tasks, newest first (1 to 1000)")
	asJSON := cc.fs.Bool("json", false, "print the API's task list as JSON (as GET /api/v1/tasks answers)")
	var f api.TaskFilter
	c, code := cc.connectFlagsOnly(args, func() (err error) {
		q.Set("limit", strconv.Itoa(*limit))
		f, err = api.ParseTaskFilter(q)
		return err
	})
	if c == nil {
		return code
	}
	defer c.close()
	s, err := c.management()
	if err != nil {
		fmt.Fprintln(stderr, "task-job ps:", err)
		return exitFailed
	}
	list, err := s.ListTasks(context.Background(), f, cliIdentity)
	if api.IsRequestError(err) {
		return usageError(stderr, "ps", "%v", err)
	}
	if err != nil {
		fmt.Fprintln(stderr, "task-job ps:", c.redisError(err))
		return exitFailed
	}
	if *asJSON {
		b, _ := json.Marshal(list)
		fmt.Fprintln(stdout, string(b))
		return exitOK
	}
	if len(list.Tasks) == 0 {
		fmt.Fprintln(stderr, "task-job ps: no tasks (claimed within status_retention, matching the filters)")
		return exitOK
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tTUBE\tEXECUTOR\tCLAIMED\tRULE\tCMDLINE\tREASON")
	for _, t := range list.Tasks {
		cmd := append([]string{t.Cmdline}, t.Args...)
		reason := ""
		if r := t.Result(); r != nil {
			reason = r.Reason
		}
		tube := t.Tube
		if tube == "" {
			tube = "-"
		}
		cmdline := shellJoin(cmd)
		if t.Cmdline == "" {
			cmdline = "-" // over Kafka: the status does not record it
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(t.ID), t.State, cell(tube), cell(orDash(t.Executor)),
			ago(t.Claimed, now), cell(orDash(t.Rule)), cell(cmdline), cell(reason))
	}
	tw.Flush()
	if list.Next != "" {
		fmt.Fprintf(stderr, "task-job ps: more tasks match; raise -limit (at most 1000) or narrow the filters\n")
	}
	return exitOK
}

func runExecutors(args []string, stdout, stderr io.Writer) int {
	cc := newClientCommand("executors", stdout, stderr)
	asJSON := cc.fs.Bool("json", false, "print the API's executor list as JSON (as GET /api/v1/executors answers)")
	c, code := cc.connectFlagsOnly(args, nil)
	if c == nil {
		return code
	}
	defer c.close()
	if c.kq != nil {
		return kafkaExecutors(c, *asJSON, stdout, stderr)
	}
	s, err := c.management()
	if err != nil {
		fmt.Fprintln(stderr, "task-job executors:", err)
		return exitFailed
	}
	exs, err := s.Executors(context.Background())
	if err != nil {
		fmt.Fprintln(stderr, "task-job executors:", c.redisError(err))
		return exitFailed
	}
	cordons, fleetNote := fleetCordons(c)
	if *asJSON {
		rows := make([]executorRow, len(exs))
		for i, e := range exs {
			rows[i] = executorRow{ExecutorView: e}
			if cd, ok := cordons[e.ID]; ok {
				rows[i].Cordon = &cd
			}
		}
		b, _ := json.Marshal(map[string]any{"executors": rows})
		fmt.Fprintln(stdout, string(b))
		return exitOK
	}
	if fleetNote != "" {
		fmt.Fprintln(stderr, "task-job executors: "+fleetNote)
	}
	if len(exs) == 0 {
		fmt.Fprintf(stderr, "task-job executors: none registered on queue %s\n", c.cfg.QueueName)
		return exitOK
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	head := "ID\tALIVE\tTASKS\tHOST\tPID\tVERSION\tSTARTED\tSERVES\tSANDBOX"
	if cordons != nil {
		head += "\tDISPATCH"
	}
	fmt.Fprintln(tw, head)
	for _, e := range exs {
		alive := "yes"
		if !e.Alive {
			alive = "NO"
		}
		slots, pid := "?", "-"
		if e.Slots > 0 {
			slots = strconv.Itoa(e.Slots)
		}
		if e.PID > 0 {
			pid = strconv.Itoa(e.PID)
		}
		row := fmt.Sprintf("%s\t%s\t%d/%s\t%s\t%s\t%s\t%s\t%s\t%s", cell(e.ID), alive, e.Running, slots, cell(orDash(e.Host)), pid,
			cell(orDash(e.Version)), ago(e.Started, now), cell(orDash(e.Serves)), cell(orDash(summary(e.Sandbox))))
		if cordons != nil {
			row += "\t" + cordonState(cordons, e.ID)
		}
		fmt.Fprintln(tw, row)
	}
	tw.Flush()
	return exitOK
}

// kafkaExecutors is executors over Kafka: each executor that has not left,
// alive while its heartbeats are younger than executor_ttl, with the tasks
// the status topic says run on it. Its version, slots and sandbox are
// not in its heartbeats, so those columns are left out.
func kafkaExecutors(c *client, asJSON bool, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	beats, err := c.kq.Beats(ctx)
	var sts []queue.Status
	if err == nil {
		sts, err = c.kq.List(ctx)
	}
	if err != nil {
		fmt.Fprintln(stderr, "task-job executors:", c.redisError(err))
		return exitFailed
	}
	running := map[string]int64{}
	for _, st := range sts {
		if st.State == task.Running {
			running[st.Executor]++
		}
	}
	rows := make([]executorRow, len(beats))
	for i, b := range beats {
		rows[i] = executorRow{ExecutorView: api.ExecutorView{ID: b.ID, Alive: b.Alive, Running: running[b.ID]}, LastBeat: b.Last.UTC().Format(time.RFC3339Nano)}
		// The holder is "host H pid P, <random>" (kafkaqueue).
		if _, rest, ok := strings.Cut(b.Holder, "host "); ok {
			host, rest, _ := strings.Cut(rest, " pid ")
			pid, _, _ := strings.Cut(rest, ",")
			rows[i].Host = host
			rows[i].PID, _ = strconv.Atoi(pid)
		}
	}
	if asJSON {
		b, _ := json.Marshal(map[string]any{"executors": rows})
		fmt.Fprintln(stdout, string(b))
		return exitOK
	}
	if len(rows) == 0 {
		fmt.Fprintf(stderr, "task-job executors: no heartbeats on queue %s\n", c.cfg.QueueName)
		return exitOK
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tALIVE\tRUNNING\tHOST\tPID\tLAST BEAT")
	for i, r := range rows {
		alive, pid := "yes", "-"
		if !r.Alive {
			alive = "NO"
		}
		if r.PID > 0 {
			pid = strconv.Itoa(r.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", cell(r.ID), alive, r.Running, cell(orDash(r.Host)), pid, ago(beats[i].Last.UTC().Format(time.RFC3339Nano), now))
	}
	tw.Flush()
	return exitOK
}

// executorRow is one executor of executors -json: the API's view, and
// its cordon when the fleet registry holds one.
type executorRow struct {
	api.ExecutorView
	Cordon *registry.Cordon `json:"cordon,omitempty"`
	// LastBeat is its newest heartbeat's time, over Kafka only.
	LastBeat string `json:"last_beat,omitempty"`
}

// fleetCordons reads the cordons of the config's registry: nil when it
// names none (or cannot be read, which note says).
func fleetCordons(c *client) (cordons map[string]registry.Cordon, note string) {
	if c.cfg.Registry == "" {
		return nil, ""
	}
	reg, err := etcdreg.New(etcdreg.Options{Endpoints: c.cfg.RegistryEndpoints(), Prefix: registryPrefix(c.cfg), DialTimeout: pingTimeout})
	if err == nil {
		defer reg.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cordons, err = reg.Cordons(ctx)
	}
	if err != nil {
		return nil, fmt.Sprintf("cordons not shown: the registry %s cannot be read: %v", c.cfg.Registry, err)
	}
	return cordons, ""
}

// cordonState is the DISPATCH column: whether the dispatcher gives the
// executor work.
func cordonState(cordons map[string]registry.Cordon, id string) string {
	cd, ok := cordons[id]
	switch {
	case !ok:
		return "ok"
	case cd.Drain:
		return "draining since " + cell(cd.Since) + " by " + cell(orDash(cd.By))
	}
	return "cordoned since " + cell(cd.Since) + " by " + cell(orDash(cd.By))
}

// connectFlagsOnly is connect for a command that takes no positional
// argument; check, if set, checks the flags before anything connects.
func (cc *clientCommand) connectFlagsOnly(args []string, check func() error) (*client, int) {
	if ok, code := handleParseError(cc.fs.Parse(args), cc.fs, cc.name, cc.stdout, cc.stderr); !ok {
		return nil, code
	}
	if cc.fs.NArg() > 0 {
		return nil, usageError(cc.stderr, cc.name, "unexpected argument %q: %s takes only flags", cc.fs.Arg(0), cc.name)
	}
	if check != nil {
		if err := check(); err != nil {
			return nil, usageError(cc.stderr, cc.name, "%v", err)
		}
	}
	c, err := cc.flags.connect(cc.stderr)
	if err != nil {
		fmt.Fprintf(cc.stderr, "task-job %s: %v\n", cc.name, err)
		return nil, exitFailed
	}
	return c, 0
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// summary is the start of the sandbox's description, up to its first
// semicolon: what confines the tasks; -json has the whole.
func summary(s string) string {
	if i := strings.IndexByte(s, ';'); i > 0 {
		return s[:i]
	}
	return s
}

// cell makes a table cell of text a task or an executor wrote: one line,
// no tab, no terminal escape.
func cell(s string) string {
	s = strings.NewReplacer("\t", `\t`, "\n", `\n`, "\r", `\r`).Replace(s)
	return string(escapeTerminal([]byte(s)))
}

// ago turns an RFC 3339 time into "12s ago", "-" when there is none.
func ago(ts string, now time.Time) string {
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}
