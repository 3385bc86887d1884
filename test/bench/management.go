package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/api"
	"github.com/taskjob/task-job/executor"
	"github.com/taskjob/task-job/queue/redisqueue"
	"github.com/taskjob/task-job/task"
)

// The management API's rows: what a browser following a task's output
// waits for a line, what listing tasks costs with a full recent index, and
// what serving the API (with a page open) costs the executor's task rate.

// apiOverheadTarget is the most serving the API may take off the task rate.
const apiOverheadTarget = 0.02

// managementServer serves the management API for the lists of phase, as an
// executor with server_port does, in this process.
type managementServer struct {
	q      *redisqueue.Queue
	http   *httptest.Server
	cancel context.CancelFunc
}

func (b *bench) startManagement(phase string) (*managementServer, error) {
	rdb := redis.NewClient(&redis.Options{Addr: b.redis.addr, PoolSize: 16})
	q := redisqueue.New(rdb, redisqueue.Options{Names: names(phase), ExecutorID: "bench-api", Retention: time.Hour})
	s, err := api.New(api.Options{Queue: q, Logger: b.log.Named("api")})
	if err != nil {
		q.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = s.Run(ctx) }()
	select {
	case <-s.Ready():
	case <-time.After(10 * time.Second):
		cancel()
		q.Close()
		return nil, fmt.Errorf("the API's logs feed never subscribed")
	}
	return &managementServer{q: q, http: httptest.NewServer(s.Handler()), cancel: cancel}, nil
}

func (m *managementServer) stop() {
	m.http.CloseClientConnections()
	m.http.Close()
	m.cancel()
	m.q.Close()
}

// sseEvents reads the server-sent events of url and hands each event's
// name, data and the time it was read to f until f returns false or ctx
// ends. lastID, when not "", is sent as Last-Event-ID (a reconnect), and
// is set to each event's id as it comes.
func sseEvents(ctx context.Context, url string, lastID *string, f func(name, data string, at time.Time) bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastID != nil && *lastID != "" {
		req.Header.Set("Last-Event-ID", *lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	var name string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: ") && lastID != nil:
			*lastID = line[len("id: "):]
		case strings.HasPrefix(line, "event: "):
			name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			if !f(name, line[len("data: "):], time.Now()) {
				return nil
			}
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

// sseLatency runs one task that prints a wall-clock stamp every 10 ms and
// follows it as the task page does (GET /api/v1/tasks/{id}/logs): each
// sample is the time from the line's stamp to the event in the client's
// hands — the task's write, the executor's shipping, Redis, the API's feed
// and HTTP. It also returns the lines per second the stream carries when
// the task floods.
func (b *bench) sseLatency(ctx context.Context, iters, flood int) (samples, int, float64, error) {
	const phase = "api-sse"
	// The flood must not meet the per-task output caps (see taskJobLines).
	ex, err := b.startExecutor(phase, 1, b.runner, func(o *executor.Options) {
		o.MaxOutputRate, o.MaxOutputMessages, o.MaxOutputBytes = 1<<30, 1<<30, 1<<40
	})
	if err != nil {
		return nil, 0, 0, err
	}
	defer ex.stop()
	m, err := b.startManagement(phase)
	if err != nil {
		return nil, 0, 0, err
	}
	defer m.stop()

	// follow reads a task's stream as a browser's EventSource does: a
	// stream the server ends early (a client too slow for the live feed)
	// is reopened with Last-Event-ID, and goes on from there.
	follow := func(id string, each func(l task.Log, at time.Time)) (reconnects int, err error) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		var done bool
		var lastID string
		for !done {
			err := sseEvents(cctx, m.http.URL+"/api/v1/tasks/"+id+"/logs", &lastID, func(name, data string, at time.Time) bool {
				var l task.Log
				if json.Unmarshal([]byte(data), &l) != nil {
					return true
				}
				if l.MsgType == task.MsgDone {
					done = true
					return false
				}
				each(l, at)
				return true
			})
			switch {
			case err != nil:
				return reconnects, err
			case cctx.Err() != nil:
				return reconnects, fmt.Errorf("the stream of %s never reached its done", id)
			case !done:
				reconnects++
			}
		}
		return reconnects, nil
	}

	id := "api-sse-ticks"
	if err := b.submit(ctx, ex.names.Tasks, id, tickerScript, strconv.Itoa(iters+warmup)); err != nil {
		return nil, 0, 0, err
	}
	var lat samples
	n := 0
	_, err = follow(id, func(l task.Log, at time.Time) {
		ns, perr := strconv.ParseInt(strings.TrimSpace(l.Data), 10, 64)
		if perr != nil || l.MsgType != task.MsgStdout {
			return
		}
		if n++; n > warmup {
			lat = append(lat, at.Sub(time.Unix(0, ns)))
		}
	})
	if err != nil {
		return nil, 0, 0, err
	}
	if len(lat) < iters/2 {
		return nil, 0, 0, fmt.Errorf("only %d of %d stamped lines reached the stream", len(lat), iters)
	}
	slices.Sort(lat)

	id = "api-sse-flood"
	if err := b.submit(ctx, ex.names.Tasks, id, chattyScript, strconv.Itoa(flood)); err != nil {
		return nil, 0, 0, err
	}
	var first, last time.Time
	lines := 0
	reconnects, err := follow(id, func(l task.Log, at time.Time) {
		if l.MsgType != task.MsgStdout {
			return
		}
		if lines == 0 {
			first = at
		}
		lines++
		last = at
	})
	if err != nil {
		return nil, 0, 0, err
	}
	if lines != flood {
		return nil, 0, 0, fmt.Errorf("the stream carried %d of %d lines (%d reconnects)", lines, flood, reconnects)
	}
	return lat, reconnects, float64(lines) / last.Sub(first).Seconds(), nil
}

// pubsubLatency is the baseline of sseLatency: a PUBLISH of a stamp to a
// subscriber on this Redis, stamp to receipt.
func (b *bench) pubsubLatency(ctx context.Context, iters int) (samples, error) {
	sub := b.rdb.Subscribe(ctx, "bench:pubsub")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		return nil, err
	}
	ch := sub.Channel()
	var lat samples
	for i := range iters + warmup {
		t0 := time.Now()
		if err := b.rdb.Publish(ctx, "bench:pubsub", strconv.FormatInt(t0.UnixNano(), 10)).Err(); err != nil {
			return nil, err
		}
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			return nil, fmt.Errorf("a PUBLISH never arrived")
		}
		if i >= warmup {
			lat = append(lat, time.Since(t0))
		}
		time.Sleep(time.Millisecond)
	}
	slices.Sort(lat)
	return lat, nil
}

// listLatency seeds the recent-task index with n ended tasks and times GET
// /api/v1/tasks (the first page, newest first, and a filtered one), each
// against a raw Redis round trip.
func (b *bench) listLatency(ctx context.Context, n, iters int) (page, filtered, ping samples, err error) {
	const phase = "api-list"
	m, err := b.startManagement(phase)
	if err != nil {
		return nil, nil, nil, err
	}
	defer m.stop()
	now := time.Now().UnixMilli()
	for start := 0; start < n; start += 5000 {
		_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := start; i < min(start+5000, n); i++ {
				id := fmt.Sprintf("list-%06d", i)
				state := task.Succeeded
				if i%10 == 0 {
					state = task.Failed
				}
				done, _ := json.Marshal(task.Log{ID: id, MsgType: task.MsgDone, Seq: 3, Result: &task.Result{Status: state, Reason: "exited"}})
				raw, _ := json.Marshal(task.Task{ID: id, Type: "bench", Task: task.Spec{Cmdline: "x.sh", CmdArgs: []string{"a"}}})
				p.ZAdd(ctx, m.q.RecentKey(), redis.Z{Score: float64(now - int64(n-i)), Member: id})
				p.HSet(ctx, m.q.StatusKey(id), "state", string(state), "executor", "ex", "updated", now, "done", done)
				p.Set(ctx, m.q.TaskKey(id), raw, time.Hour)
			}
			return nil
		})
		if err != nil {
			return nil, nil, nil, err
		}
	}
	get := func(query string) (samples, error) {
		var s samples
		for i := range iters + warmup {
			t0 := time.Now()
			resp, err := http.Get(m.http.URL + "/api/v1/tasks" + query)
			if err != nil {
				return nil, err
			}
			var body struct {
				Tasks []json.RawMessage `json:"tasks"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || len(body.Tasks) == 0 {
				return nil, fmt.Errorf("GET /api/v1/tasks%s: %s, %d tasks, %v", query, resp.Status, len(body.Tasks), err)
			}
			if i >= warmup {
				s = append(s, time.Since(t0))
			}
		}
		slices.Sort(s)
		return s, nil
	}
	if page, err = get(""); err != nil {
		return nil, nil, nil, err
	}
	if filtered, err = get("?state=failed"); err != nil {
		return nil, nil, nil, err
	}
	for i := range iters + warmup {
		t0 := time.Now()
		if err := b.rdb.Ping(ctx).Err(); err != nil {
			return nil, nil, nil, err
		}
		if i >= warmup {
			ping = append(ping, time.Since(t0))
		}
	}
	slices.Sort(ping)
	return page, filtered, ping, nil
}

// apiOverhead measures the task rate at concurrency 2 with and without a
// management server following the same executor's feed with a page's
// event stream open, alternating the two runs so that drift of this shared
// machine falls on both. It returns the rates and the share the API took.
func (b *bench) apiOverhead(ctx context.Context, n int) (without, with float64, err error) {
	base := b.variants()[0]
	var offs, ons []float64
	for round := range 2 {
		// Every run its own lists (and so its own ids).
		v := base
		v.suffix = fmt.Sprintf("%s-api-off%d", base.suffix, round)
		rate, err := b.taskJobThroughput(ctx, v, 2, n)
		if err != nil {
			return 0, 0, err
		}
		offs = append(offs, rate)
		v.suffix = fmt.Sprintf("%s-api-on%d", base.suffix, round)
		m, err := b.startManagement("flood-c2" + v.suffix)
		if err != nil {
			return 0, 0, err
		}
		ectx, cancel := context.WithCancel(ctx)
		events := make(chan error, 1)
		go func() {
			events <- sseEvents(ectx, m.http.URL+"/api/v1/events", nil, func(string, string, time.Time) bool { return true })
		}()
		rate, err = b.taskJobThroughput(ctx, v, 2, n)
		cancel()
		if eerr := <-events; err == nil && eerr != nil {
			err = fmt.Errorf("the page's event stream: %w", eerr)
		}
		m.stop()
		if err != nil {
			return 0, 0, err
		}
		ons = append(ons, rate)
	}
	mean := func(xs []float64) float64 {
		var s float64
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	return mean(offs), mean(ons), nil
}

// managementRows adds the three rows of the management API.
func (b *bench) managementRows(ctx context.Context, rep *report) {
	cfg := b.cfg
	progress("management: a line into a task page's event stream")
	sse, reconnects, sseRate, errSSE := b.sseLatency(ctx, cfg.latencyIters, cfg.lines/10)
	progress("management: PUBLISH → subscriber baseline")
	pub, errPub := b.pubsubLatency(ctx, cfg.latencyIters)
	what := "Management: a task's line → its page's event stream (SSE, p50 / p99)"
	switch {
	case errPub != nil:
		rep.fail(what, fmt.Errorf("pub/sub baseline: %w", errPub))
	case errSSE != nil:
		rep.fail(what, errSSE)
	default:
		rep.add(row{
			what: what, taskJob: fmt.Sprintf("%s; %s through one stream (%d reconnects)", sse, rate(sseRate, "lines"), reconnects),
			baseline: "PUBLISH → subscriber " + pub.String(),
			ratio:    ratio(float64(sse.p50()), float64(pub.p50())),
			target:   "– (the line's write, shipping, Redis, the API's feed and HTTP)",
		})
	}

	recent := 100_000
	if cfg.quick {
		recent = 20_000
	}
	progress(fmt.Sprintf("management: GET /api/v1/tasks with %d recent tasks", recent))
	page, filtered, ping, errList := b.listLatency(ctx, recent, cfg.latencyIters)
	what = fmt.Sprintf("Management: GET /api/v1/tasks, %d recent tasks, first page / `?state=failed` (p50 / p99)", recent)
	if errList != nil {
		rep.fail(what, errList)
	} else {
		rep.add(row{
			what: what, taskJob: page.String() + "; " + filtered.String(),
			baseline: "Redis PING " + ping.String(),
			ratio:    ratio(float64(page.p50()), float64(ping.p50())),
			target:   "– (a bounded index: no SCAN, cost independent of the keyspace)",
		})
	}

	progress("management: task rate with and without the API serving a page")
	off, on, errOver := b.apiOverhead(ctx, cfg.floodTasks)
	what = "Management: tasks/s at concurrency 2 with the API serving an open page, of without"
	if errOver != nil {
		rep.fail(what, errOver)
	} else {
		share := 1 - on/off
		rep.add(row{
			what: what, taskJob: rate(on, "tasks"), baseline: "without the API " + rate(off, "tasks"),
			ratio:  ratio(on, off),
			target: fmt.Sprintf("cost < %.0f %%: %s (%.1f %%, mean of 2 alternated runs each)", 100*apiOverheadTarget, verdict(share < apiOverheadTarget), 100*share),
		})
	}
}
