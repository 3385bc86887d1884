// Package queue defines how an executor talks to the transport that brings
// tasks and carries results: small interfaces per role, with no transport
// types in their signatures. The Redis implementation lives in
// queue/redisqueue; later transports sit beside it and implement the same
// interfaces.
package queue

import (
	"context"
	"errors"
	"time"

	"github.com/taskjob/task-job/task"
)

// ErrClosed is returned once the broker has been closed.
var ErrClosed = errors.New("queue: closed")

// ErrIdentityTaken: another live process holds this executor id. The error
// names the holder.
var ErrIdentityTaken = errors.New("queue: executor id taken")

// ErrLivenessLost is returned by a Heartbeat that found this executor's
// liveness expired (it was paused or cut off past its TTL, or the
// transport lost its state). It is registered again, but peers may have
// declared it dead and reported its tasks lost meanwhile: before it
// publishes anything more it must ask Owned which tasks are still its own
// and stop the others.
var ErrLivenessLost = errors.New("queue: this executor's liveness had expired")

// ErrRecovering is returned by Owned while a peer is recovering this
// executor's work: ask again shortly.
var ErrRecovering = errors.New("queue: a peer is recovering this executor's work")

// ErrFenced is a dispatcher's move refused because its fencing token is
// older than one already used: a newer leader has taken over, and nothing
// was moved.
var ErrFenced = errors.New("queue: fenced: a newer dispatcher leader has taken over")

// Defaults of the transports' options, shared by every transport, the
// executor and the management API, and referred to by config's keys
// status_retention, executor_ttl and max_task_bytes.
const (
	// DefaultRetention is how long a task's status stays queryable.
	DefaultRetention = 24 * time.Hour
	// DefaultTTL is the liveness window of an executor's heartbeat.
	DefaultTTL = 5 * time.Second
	// DefaultMaxTaskBytes is the largest task message accepted.
	DefaultMaxTaskBytes = 1 << 20
)

// What a dispatcher's move of a list's head did.
const (
	Moved   = "moved"   // the head moved
	Empty   = "empty"   // the list was empty
	Changed = "changed" // the head's placement is no longer the one expected: look again
)

// MoveOp is one of the moves a dispatcher asks for in one round trip:
// the task at Index (counted in the list as the moves before it left it)
// goes to the end of Dst if its placement key is still Expect ("*": any),
// with Note as its waiting reason ("" clears it).
type MoveOp struct {
	Index             int
	Dst, Expect, Note string
}

// Head is what a dispatcher knows of the task at the head of a list:
// what placing it depends on, read where the list is (nothing else of the
// message is sent).
type Head struct {
	Tube        string
	Constraints map[string]string // nil: none
	// Key stands for Tube and Constraints together; a move that expects
	// it moves only a head that still has it.
	Key string
}

// Note is a dispatcher's waiting reason for the task at Index of a list,
// written only if the task there still has the placement Key.
type Note struct {
	Index     int
	Key, Text string
}

// Delivery is one task message taken from the task list. Until it is
// finished or dropped it stays in this executor's processing list, so a
// crash cannot lose it.
type Delivery struct {
	Raw []byte
	// Taken is when this executor took it.
	Taken time.Time
	// Queued is when the task entered the queue, where the transport knows
	// it (a submit through the API, a Kafka record's timestamp); zero when
	// it does not (a plain RPUSH carries no time).
	Queued time.Time
	// Size is non-zero for a message over max_task_bytes: the transport
	// removed it without reading it whole, Raw holds only its first
	// task.PeekBytes, and Size its full length. It is in no processing
	// list; Drop and a done finish it, Requeue discards it.
	Size int
	// Digest identifies an oversized message for the audit log (the
	// transport's hash of the whole message, "sha1:<hex>"); "" otherwise.
	Digest string
	// Token is unique per take. A claim is made for one delivery, not for
	// the executor: a retried claim of the same delivery answers Claimed
	// again, while a second copy of the id (another delivery, even on the
	// same executor) is a Duplicate. The finish of a claimed delivery
	// carries the token, so only the delivery that owns the id can end it.
	Token string
	// Tube is the tube whose list it was taken from; "" for the untubed
	// task list. Requeue puts it back there.
	Tube string
}

// Claim is the outcome of claiming a task id.
type Claim int

const (
	// Claimed: this executor now owns the id and must run it and finish it.
	Claimed Claim = iota + 1
	// Duplicate: the id was already seen (running, or ended within the
	// retention time). The delivery must be dropped with no done: a second
	// done would mislead whoever waits on the first.
	Duplicate
	// CancelledWhileQueued: a kill arrived before any executor claimed the
	// task. The claim still makes this delivery the owner of the id (so its
	// finish publishes), and it must be finished as killed without running.
	CancelledWhileQueued
)

func (c Claim) String() string {
	switch c {
	case Claimed:
		return "claimed"
	case Duplicate:
		return "duplicate"
	case CancelledWhileQueued:
		return "cancelled-while-queued"
	}
	return "unknown"
}

// Finish ends a task: it records the terminal state, publishes the done
// message and removes the delivery. It takes effect at most once per id,
// however often it is retried, so every task gets exactly one done.
type Finish struct {
	ID    string     `json:"id"`
	State task.State `json:"state"`
	// Done is the done message, as published.
	Done []byte `json:"done"`
	// Raw is the delivery this finish ends.
	Raw []byte `json:"raw"`
	// Claimed is true when the caller had claimed the id (so the record must
	// still say running for this very delivery); false for a task finished
	// without a claim (killed while queued).
	Claimed bool `json:"claimed"`
	// Token is the claimed delivery's Token.
	Token string `json:"token,omitempty"`
}

// Message is one entry of the ordered outbox: an output line or a finish.
type Message struct {
	Log    []byte
	Finish *Finish
}

// Tasks hands tasks to an executor, reliably.
type Tasks interface {
	// Take blocks until a task arrives or about a second passes (then it
	// returns nil, nil), or ctx ends.
	Take(ctx context.Context) (*Delivery, error)
	// Claim makes this executor the owner of id, unless the id was already
	// seen or killed.
	Claim(ctx context.Context, d *Delivery, id string) (Claim, error)
	// Drop removes a delivery that gets no done (no readable id, or a
	// duplicate).
	Drop(ctx context.Context, d *Delivery) error
	// Requeue puts a delivery this executor will not run back at the head of
	// the task list (on shutdown, before it started).
	Requeue(ctx context.Context, d *Delivery) error
	// Taken lists what this executor's processing list holds: every
	// delivery taken and not yet finished, dropped or put back.
	Taken(ctx context.Context) ([][]byte, error)
}

// Publisher delivers the outbox.
type Publisher interface {
	// Publish applies msgs in order, all or none. A retried batch may
	// deliver its output lines twice while their task runs (their seq
	// numbers tell); a Finish never takes effect twice.
	//
	// It reports, for each message, whether it took effect. An output line
	// takes effect only while its task runs on this executor (its record
	// says so, or there is none): once the task ended — its done is out,
	// or a peer reported it lost — its lines are refused in the same
	// atomic step that would publish them, so no line follows the done,
	// however long this executor was paused and however often a batch is
	// retried. A Finish takes effect only while its delivery
	// still owns the id: false means the done was NOT published because
	// the id is no longer this delivery's — a peer reported it lost while
	// this executor was paused or cut off past its TTL (the executor is
	// fenced), or it had ended otherwise. A retry of a Finish that took
	// effect reports true again.
	Publish(ctx context.Context, msgs []Message) ([]bool, error)
}

// Route says where a kill must go.
type Route struct {
	// Executor runs the task; empty when it is not running.
	Executor string
	// Queued is true when the task has not started: it was marked so that
	// whoever takes it finishes it as killed.
	Queued bool
	// Ended is the terminal state when the task had already ended.
	Ended task.State
}

// ControlDelivery is one control message taken from the shared control
// list; it is kept until acknowledged, so a crash cannot lose it.
type ControlDelivery struct {
	Raw []byte
	// Size, when not 0, is the length of a message longer than
	// task.MaxControlBytes: the transport dropped it unread, Raw is empty.
	Size int
	// Forwarded is true for a message another executor routed to this one.
	Forwarded bool
}

// Controls carries kill messages to whichever executor runs the task.
type Controls interface {
	// TakeControl blocks until a control message arrives on the shared
	// list, or about a second passes (nil, nil), or ctx ends.
	TakeControl(ctx context.Context) (*ControlDelivery, error)
	// TakeForwarded is TakeControl for messages other executors routed to
	// this one.
	TakeForwarded(ctx context.Context) (*ControlDelivery, error)
	// AckControl removes a handled control message.
	AckControl(ctx context.Context, c *ControlDelivery) error
	// RouteKill looks up who runs id; a task not yet running is marked
	// cancelled so it never starts.
	RouteKill(ctx context.Context, id string) (Route, error)
	// Forward hands a control message to the executor that runs the task.
	Forward(ctx context.Context, executor string, raw []byte) error
	// RemoveQueued looks for id in the task list (a bounded scan) and, if it
	// is there and marked cancelled, removes it and applies f. It reports
	// whether it did.
	RemoveQueued(ctx context.Context, id string, f func(raw []byte) *Finish) (bool, error)
}

// Membership tracks which executors are alive and recovers the work of
// those that died.
type Membership interface {
	// Join registers this executor. It waits (bounded) for a previous
	// instance with the same id to expire, and fails if one is still alive.
	Join(ctx context.Context) error
	// Heartbeat renews this executor's liveness; call it every TTL/3. It
	// returns ErrLivenessLost when the liveness had expired (see there), and
	// an error wrapping ErrIdentityTaken when another process holds the id.
	Heartbeat(ctx context.Context) error
	// Owned reports, for claims (task id → delivery token) this executor
	// made, which it still owns. A claim is lost once a peer reported the
	// task lost (the executor was declared dead); the executor must then
	// stop that task and publish nothing more for it. Missing records
	// (the transport lost its data) count as owned: nobody reported them.
	// It returns ErrRecovering while a peer is recovering this executor.
	Owned(ctx context.Context, claims map[string]string) (map[string]bool, error)
	// Leave deregisters this executor after a clean shutdown.
	Leave(ctx context.Context) error
	// Executors lists registered executors and whether each looks alive now.
	Executors(ctx context.Context) (map[string]bool, error)
	// Recover handles the work a dead executor left: tasks it had started
	// are finished as lost by this executor, tasks it had not started go
	// back to the head of the task list, its unhandled control messages go
	// back to the control list. Safe to race with other executors.
	Recover(ctx context.Context, executor string) (Recovered, error)
}

// Recovered counts what Recover did.
type Recovered struct {
	Lost, Requeued, Controls int
	// Republished counts dones that the dead executor decided and did not
	// publish before it died, published now (transports whose decision and
	// publication are two steps).
	Republished int
}

// Status is what is known about a task id.
type Status struct {
	ID       string     `json:"id"`
	State    task.State `json:"state"`
	Executor string     `json:"executor,omitempty"`
	Updated  string     `json:"updated,omitempty"`
	// Waiting is why a dispatcher has not assigned the task yet, while it
	// is queued; cleared when it is assigned or claimed.
	Waiting string `json:"waiting,omitempty"`
	// Done is the done message once the task has ended.
	Done []byte `json:"-"`
}

// Statuses answers status queries by id.
type Statuses interface {
	// Status returns nil, nil for an id never seen (or past retention).
	Status(ctx context.Context, id string) (*Status, error)
}

// RuleNoter is an optional part of a Broker: it records in a running
// task's status which policy rule allowed it, so that whoever reads the
// status (the management API) sees the rule before the done, which carries
// it too, and the env the rule gave the task ("NAME=value", secret values
// already masked by the caller: see policy.MaskEnv). It takes effect only
// while the delivery still owns the id.
type RuleNoter interface {
	NoteRule(ctx context.Context, d *Delivery, id, rule string, env []string) error
}

// Broker is everything an executor needs from its transport.
type Broker interface {
	Tasks
	Publisher
	Controls
	Membership
	Statuses
	Close() error
}
