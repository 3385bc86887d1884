package executor

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/taskjob/task-job/queue"
	"github.com/taskjob/task-job/spool"
	"github.com/taskjob/task-job/task"
)

const (
	kindLine   byte = 'L'
	kindFinish byte = 'F'

	batchRecords = 1024
	batchBytes   = 4 << 20
)

// outbox is the one ordered path from tasks to the transport. Lines and
// finishes are pushed to a spool (memory, spilling to disk while Redis is
// unreachable) and a single publisher delivers them in batches, in order:
// a task's done can never overtake its output.
type outbox struct {
	sp     *spool.Spool
	pub    queue.Publisher
	log    hclog.Logger
	http   *httpSink
	idle   chan struct{} // signalled whenever the spool was seen empty
	closed atomic.Bool
	// applied is told of every finish the transport has handled, and
	// whether its done was published.
	applied func(f *queue.Finish, published bool)
	// lease, when set, is waited on before every batch: an executor whose
	// liveness may have lapsed publishes nothing until it has fenced itself.
	lease *lease
}

func newOutbox(sp *spool.Spool, pub queue.Publisher, logsHTTP string, log hclog.Logger, applied func(*queue.Finish, bool)) *outbox {
	o := &outbox{sp: sp, pub: pub, log: log, idle: make(chan struct{}, 1), applied: applied}
	if logsHTTP != "" {
		o.http = newHTTPSink(logsHTTP, log)
	}
	return o
}

// line queues an output line; it may be dropped (and counted) only when
// memory and disk budgets are both exhausted.
func (o *outbox) line(b []byte) {
	if !o.sp.Push(spool.Record{Kind: kindLine, Data: b}, true) {
		o.log.Trace("output line dropped: spool full")
	}
}

// finish queues a done; it is never dropped.
func (o *outbox) finish(f *queue.Finish) {
	o.sp.Push(spool.Record{Kind: kindFinish, Data: encodeFinish(f)}, false)
}

// encodeFinish lays a finish out as length-prefixed fields. It is read back
// only by this process (the spool is not kept across restarts), so a plain
// layout beats JSON, which would base64 the done and the raw task.
func encodeFinish(f *queue.Finish) []byte {
	b := make([]byte, 0, 1+5*binary.MaxVarintLen32+len(f.ID)+len(f.State)+len(f.Done)+len(f.Raw)+len(f.Token))
	claimed := byte(0)
	if f.Claimed {
		claimed = 1
	}
	b = append(b, claimed)
	for _, field := range [][]byte{[]byte(f.ID), []byte(f.State), f.Done, f.Raw, []byte(f.Token)} {
		b = binary.AppendUvarint(b, uint64(len(field)))
		b = append(b, field...)
	}
	return b
}

func decodeFinish(b []byte) (*queue.Finish, error) {
	if len(b) < 1 {
		return nil, errors.New("executor: empty finish record")
	}
	f := &queue.Finish{Claimed: b[0] == 1}
	b = b[1:]
	var fields [5][]byte
	for i := range fields {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, errors.New("executor: truncated finish record")
		}
		fields[i], b = b[k:k+int(n)], b[k+int(n):]
	}
	f.ID, f.State, f.Done, f.Raw, f.Token = string(fields[0]), task.State(fields[1]), fields[2], fields[3], string(fields[4])
	return f, nil
}

func (o *outbox) pending() int { return o.sp.Len() }

// run publishes until ctx ends.
func (o *outbox) run(ctx context.Context) {
	var b backoff
	msgs := make([]queue.Message, 0, batchRecords)
	for {
		recs, err := o.sp.Batch(ctx, batchRecords, batchBytes)
		if err != nil {
			return
		}
		var applied []bool
		for {
			// Each attempt waits for a valid lease and rebuilds the batch:
			// a task fenced meanwhile loses its lines.
			if o.lease != nil && o.lease.wait(ctx) != nil {
				return
			}
			msgs = o.messages(recs, msgs[:0])
			var err error
			applied, err = o.pub.Publish(ctx, msgs)
			if err == nil {
				b.ok(o.log, "delivering messages again")
				break
			}
			if ctx.Err() != nil {
				return
			}
			b.fail(ctx, o.log, "cannot deliver messages (kept in order until Redis is back)", err)
		}
		for i, m := range msgs {
			if m.Finish != nil {
				o.applied(m.Finish, i < len(applied) && applied[i])
			}
		}
		if o.http != nil {
			for i, m := range msgs {
				if m.Finish != nil {
					if i < len(applied) && applied[i] {
						o.http.send(m.Finish.Done)
					}
				} else {
					o.http.send(m.Log)
				}
			}
		}
		o.sp.Ack(len(recs))
		if o.sp.Len() == 0 {
			select {
			case o.idle <- struct{}{}:
			default:
			}
		}
	}
}

// messages decodes a batch of spool records into msgs.
func (o *outbox) messages(recs []spool.Record, msgs []queue.Message) []queue.Message {
	for _, r := range recs {
		if r.Kind == kindFinish {
			f, err := decodeFinish(r.Data)
			if err != nil {
				o.log.Error("corrupt result record in the outbox; skipped", "error", err)
				continue
			}
			msgs = append(msgs, queue.Message{Finish: f})
			continue
		}
		if o.lease != nil && o.lease.isFenced(r.Data) {
			continue // a peer reported its task lost: nothing more of it
		}
		msgs = append(msgs, queue.Message{Log: r.Data})
	}
	return msgs
}

// drain waits until everything queued so far is delivered, or timeout.
func (o *outbox) drain(timeout time.Duration) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for o.sp.Len() > 0 {
		select {
		case <-o.idle:
		case <-deadline.C:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (o *outbox) close() {
	if o.closed.Swap(true) {
		return
	}
	if o.http != nil {
		o.http.close()
	}
	if err := o.sp.Close(); err != nil {
		o.log.Warn("could not remove spool files", "error", err)
	}
}

// httpSink POSTs every message to logs_http, one message per request as the
// original tool did. It is best effort and bounded: a slow or dead endpoint
// never slows tasks or the Redis path; what cannot be queued is dropped and
// counted.
type httpSink struct {
	url     string
	client  *http.Client
	ch      chan []byte
	done    chan struct{}
	log     hclog.Logger
	dropped atomic.Int64
}

const (
	httpQueue    = 10000
	httpAttempts = 4
)

func newHTTPSink(url string, log hclog.Logger) *httpSink {
	s := &httpSink{url: url, client: &http.Client{Timeout: 5 * time.Second},
		ch: make(chan []byte, httpQueue), done: make(chan struct{}), log: log}
	go s.loop()
	return s
}

func (s *httpSink) send(b []byte) {
	select {
	case s.ch <- b:
	default:
		if s.dropped.Add(1)%1000 == 1 {
			s.log.Warn("logs_http is not keeping up; messages dropped", "dropped_total", s.dropped.Load())
		}
	}
}

func (s *httpSink) loop() {
	defer close(s.done)
	for b := range s.ch {
		delay := 100 * time.Millisecond
		for attempt := 1; ; attempt++ {
			err := s.post(b)
			if err == nil {
				break
			}
			if attempt == httpAttempts {
				s.dropped.Add(1)
				s.log.Warn("logs_http: message dropped after retries", "error", err, "attempts", attempt)
				break
			}
			time.Sleep(delay) // a retry pause on a sink goroutine, not a wait for an event
			delay *= 2
		}
	}
}

func (s *httpSink) post(b []byte) error {
	resp, err := s.client.Post(s.url, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return &httpStatusError{resp.StatusCode}
	}
	return nil
}

type httpStatusError struct{ code int }

func (e *httpStatusError) Error() string { return "logs_http answered " + http.StatusText(e.code) }

// close delivers what is queued (bounded by the client timeout per message)
// and stops.
func (s *httpSink) close() {
	close(s.ch)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
}
